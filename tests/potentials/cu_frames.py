"""EMT-labeled Cu frames and small training configs for the potential tests."""

from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from elt.config.train import DeepPotModel, TrainConfig
from elt.data.frames import attach_labels


def emt_label(atoms):
    a = atoms.copy()
    a.calc = EMT()
    stress = a.get_stress() if a.pbc.all() else None
    return attach_labels(a, a.get_potential_energy(), a.get_forces(), stress)


def rattled_cu(n: int, size=(2, 2, 2), amplitude=0.08, seed=0, a=3.61):
    base = bulk("Cu", "fcc", a=a, cubic=True) * size
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        at = base.copy()
        at.positions += rng.normal(0, amplitude, at.positions.shape)
        out.append(emt_label(at))
    return out


SMALL_MODEL = DeepPotModel(rcut=4.0, rcut_smth=2.0, embedding=[8, 16], axis_neuron=4, fitting=[16, 16])


def small_config(**kw) -> TrainConfig:
    base = dict(model=SMALL_MODEL, epochs=3, warm_epochs=2, min_steps=1, warm_min_steps=1, batch_size=2, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def md_cu(n: int, temperature: float, seed: int, size=(2, 2, 2), every: int = 10, a: float = 3.61):
    """EMT-labeled frames from Langevin MD of Cu fcc (2 fs steps, a frame every ``every`` steps)."""
    from ase import units
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = bulk("Cu", "fcc", a=a, cubic=True) * size
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=rng, fixcm=False)
    dyn.run(50)
    out = []
    for _ in range(n):
        dyn.run(every)
        out.append(attach_labels(atoms, atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
    return out


def fd_force(energies, atoms, i: int, c: int, h: float = 1e-5) -> np.ndarray:
    """-dE/dx of atom ``i``, component ``c``, by central differences; ``energies(atoms) -> (k,)`` eV."""
    plus, minus = atoms.copy(), atoms.copy()
    plus.positions[i, c] += h
    minus.positions[i, c] -= h
    return -(energies(plus) - energies(minus)) / (2 * h)


def fd_stress(energies, atoms, a: int, b: int, h: float = 1e-6) -> np.ndarray:
    """ASE's stress component (a, b), (1/V) dE/dε_ab (eV/Å³), by central differences under the
    symmetric strain ε_ab = ε_ba (positions scaled with the cell)."""
    eps = np.zeros((3, 3))
    eps[a, b] = eps[b, a] = h / (2 if a != b else 1)
    e = []
    for sign in (1, -1):
        x = atoms.copy()
        x.set_cell(atoms.cell.array @ (np.eye(3) + sign * eps), scale_atoms=True)
        e.append(energies(x))
    return (e[0] - e[1]) / (2 * h) / atoms.get_volume()
