"""ASE's EMT as a labeler: instant, deterministic; the oracle for tests and demos. An instance of
the ``ase`` labeler (:mod:`elt.labeling.ase_calculator`) with the calculator fixed."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from elt.config.label import AseLabel
from elt.labeling.ase_calculator import AseLabeler
from elt.registry import register

EMT_ELEMENTS = {"Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt", "H", "C", "N", "O"}
EMT_CALCULATOR = AseLabel(kind="ase", calculator="ase.calculators.emt:EMT")


@register("labeler", "emt")
class EMTLabeler(AseLabeler):
    """The ``ase`` labeler with ASE's EMT (config :class:`elt.config.label.EMTLabel`: no settings
    but the failure policy)."""

    @property
    def calculator_config(self) -> AseLabel:
        return EMT_CALCULATOR

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
