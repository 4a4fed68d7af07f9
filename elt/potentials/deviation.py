"""Model deviation of an ensemble, pure numpy (DP-GEN's definitions).

Shapes: k members, N atoms.
- force deviation of atom i: ``sqrt(mean_m |F_m,i - <F_i>|^2)``, the std over members of the force
  vector (eV/Å); per frame its max, min and mean over atoms are DP-GEN's ``max_devi_f``,
  ``min_devi_f`` and ``avg_devi_f``.
- energy deviation per atom: the std over members of the total energy divided by N (eV/atom).
- virial deviation: the std over members of each virial component, divided by N (eV/atom);
  max/min/mean over the 9 components.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class FrameDeviation:
    max_devi_f: float
    min_devi_f: float
    avg_devi_f: float
    devi_e: float
    max_devi_v: float = 0.0
    min_devi_v: float = 0.0
    avg_devi_v: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


def atomic_force_deviation(forces: np.ndarray) -> np.ndarray:
    """forces (k, N, 3) -> per-atom force deviation (N,)."""
    f = np.asarray(forces, dtype=np.float64)
    if f.ndim != 3 or f.shape[-1] != 3 or f.shape[0] < 2:
        raise ValueError(f"forces must have shape (k>=2, N, 3), got {f.shape}")
    mean = f.mean(axis=0, keepdims=True)
    return np.sqrt(((f - mean) ** 2).sum(axis=-1).mean(axis=0))


def force_deviation(forces: np.ndarray) -> tuple[float, float, float]:
    """forces (k, N, 3) -> (max, min, mean) over atoms of the per-atom force deviation (eV/Å)."""
    d = atomic_force_deviation(forces)
    return float(d.max()), float(d.min()), float(d.mean())


def energy_deviation_per_atom(energies: np.ndarray, n_atoms: int) -> float:
    """energies (k,) -> std over members / N (eV/atom)."""
    e = np.asarray(energies, dtype=np.float64)
    return float(e.std() / max(n_atoms, 1))


def virial_deviation(virials: np.ndarray, n_atoms: int) -> tuple[float, float, float]:
    """virials (k, 3, 3) in eV -> (max, min, mean) over components of std over members / N."""
    v = np.asarray(virials, dtype=np.float64).reshape(len(virials), 9)
    d = v.std(axis=0) / max(n_atoms, 1)
    return float(d.max()), float(d.min()), float(d.mean())


def frame_deviation(energies: np.ndarray, forces: np.ndarray, virials: np.ndarray | None = None) -> FrameDeviation:
    """All deviations of one frame from the members' energies (k,), forces (k,N,3), virials (k,3,3)."""
    n = np.asarray(forces).shape[1]
    fmax, fmin, favg = force_deviation(forces)
    vmax = vmin = vavg = 0.0
    if virials is not None:
        vmax, vmin, vavg = virial_deviation(virials, n)
    return FrameDeviation(fmax, fmin, favg, energy_deviation_per_atom(energies, n), vmax, vmin, vavg)


def batch_max_force_deviation(forces: np.ndarray) -> np.ndarray:
    """forces (T, k, N, 3) for T frames -> max_devi_f per frame (T,)."""
    f = np.asarray(forces, dtype=np.float64)
    mean = f.mean(axis=1, keepdims=True)
    per_atom = np.sqrt(((f - mean) ** 2).sum(axis=-1).mean(axis=1))
    return per_atom.max(axis=-1)
