"""Geometry checks shared by the DFT labelers: what kind of system a frame is, and whether its
atoms are too close to be worth a DFT calculation."""

from __future__ import annotations

import numpy as np
from ase import Atoms

from elt.errors import CalculationError

MIN_DISTANCE = 0.3  # Å; closer atoms are a broken frame, not chemistry


def is_periodic(atoms: Atoms) -> bool:
    """True for a 3D periodic cell, False for a molecule (no periodic direction).

    Slabs and wires (some directions periodic) are not supported by the built-in DFT labelers;
    they raise a physics failure that names the frame's pbc."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.all():
        if atoms.cell.rank != 3:
            raise CalculationError(
                f"frame is periodic in all directions but its cell has rank {atoms.cell.rank}",
                reason="bad_geometry", physics=True,
                hint="give periodic frames a full 3x3 cell, or set pbc to False for a molecule")
        return True
    if not pbc.any():
        return False
    raise CalculationError(
        f"frame has pbc={pbc.tolist()}: partly periodic systems (slabs, wires) are not supported by this labeler",
        reason="unsupported_pbc", physics=True,
        hint="make the frame fully periodic (a slab with vacuum and pbc=True) or a molecule (pbc=False)")


def check_distances(atoms: Atoms, periodic: bool, min_distance: float = MIN_DISTANCE) -> None:
    """Raise a physics failure when two atoms are closer than ``min_distance`` (Å)."""
    n = len(atoms)
    if n == 0:
        raise CalculationError("frame has no atoms", reason="bad_geometry", physics=True)
    if not np.all(np.isfinite(atoms.positions)):
        raise CalculationError("frame has non-finite positions", reason="bad_geometry", physics=True)
    if n < 2:
        return
    d = atoms.get_all_distances(mic=periodic)
    d[np.diag_indices(n)] = np.inf
    i, j = np.unravel_index(np.argmin(d), d.shape)
    if d[i, j] < min_distance:
        raise CalculationError(
            f"atoms {i} ({atoms[i].symbol}) and {j} ({atoms[j].symbol}) are {d[i, j]:.3f} Å apart "
            f"(below {min_distance} Å): the frame is broken",
            reason="bad_geometry", physics=True)


def tail(text: str, lines: int = 25) -> str:
    """The last ``lines`` lines of ``text``, for error messages."""
    parts = text.rstrip().splitlines()
    return "\n".join(parts[-lines:])
