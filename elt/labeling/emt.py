"""ASE's EMT as a labeler: instant, deterministic; the oracle for tests and demos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms

from elt.errors import CalculationError
from elt.labeling.base import Labeler, Labels
from elt.registry import register

EMT_ELEMENTS = {"Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt", "H", "C", "N", "O"}


@register("labeler", "emt")
class EMTLabeler(Labeler):
    def compute(self, atoms: Atoms, workdir: Path) -> Labels:
        from ase.calculators.emt import EMT

        a = atoms.copy()
        a.calc = EMT()
        energy = a.get_potential_energy()
        forces = a.get_forces()
        stress = a.get_stress() if (a.pbc.all() and a.cell.rank == 3) else None
        if not np.isfinite(energy) or not np.all(np.isfinite(forces)):
            raise CalculationError("EMT returned a non-finite energy or force", reason="non_finite", physics=True)
        return Labels(float(energy), forces, stress)

    def check(self, elements, periodic=None):
        bad = sorted(set(elements) - EMT_ELEMENTS)
        if bad:
            return [f"EMT has no parameters for {', '.join(bad)}; it covers {', '.join(sorted(EMT_ELEMENTS))}. "
                    "Use label.kind: pyscf or cp2k for these elements."]
        return []


def emt_md_frames(start: Atoms, n: int, temperature: float, every: int = 20, equilibrate: int = 100,
                  seed: int = 0, timestep: float = 2.0, friction: float = 0.02) -> list[Atoms]:
    """``n`` frames of Langevin MD with EMT itself (reference trajectories for benchmarks and tests):
    ``equilibrate`` steps from Maxwell-Boltzmann velocities at ``temperature`` (K), then a frame every
    ``every`` steps; timestep in fs, friction in 1/fs. The frames are copies without calculator."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    a = start.copy()
    a.calc = EMT()
    rng = np.random.RandomState(seed)
    MaxwellBoltzmannDistribution(a, temperature_K=temperature, rng=rng)
    dyn = Langevin(a, timestep * units.fs, temperature_K=temperature, friction=friction / units.fs, rng=rng)
    dyn.run(equilibrate)
    out = []
    for _ in range(n):
        dyn.run(every)
        f = a.copy()
        f.calc = None
        out.append(f)
    return out
