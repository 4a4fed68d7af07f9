"""Units: elt works in eV, Å, eV/Å, fs and K everywhere. Conversions to and from the atomic units
of the DFT codes live here and are applied at the boundary of each backend.

Values are CODATA 2018, the same ones ASE uses (``ase.units``).
"""

from __future__ import annotations

from ase import units as _u

HARTREE_TO_EV: float = float(_u.Hartree)  # 27.211386...
BOHR_TO_ANGSTROM: float = float(_u.Bohr)  # 0.529177...
ANGSTROM_TO_BOHR: float = 1.0 / BOHR_TO_ANGSTROM
HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM: float = HARTREE_TO_EV / BOHR_TO_ANGSTROM
HARTREE_PER_BOHR3_TO_EV_PER_ANGSTROM3: float = HARTREE_TO_EV / BOHR_TO_ANGSTROM**3
GPA_TO_EV_PER_ANGSTROM3: float = 1.0 / 160.21766208
FS: float = float(_u.fs)  # ASE's internal time unit per femtosecond
KB_EV_PER_K: float = float(_u.kB)


def hartree_to_ev(x):
    return x * HARTREE_TO_EV


def hartree_per_bohr_to_ev_per_angstrom(x):
    return x * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM
