"""What every potential needs of a frame before its model runs: the element -> type index map
and the full neighbour list within a cutoff (``vesin``), independent of the model family (the Deep
Potential's padded graph, elt.potentials.deepmd.graph, and MACE's edges build on them)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms
from vesin import NeighborList

from elt.errors import SetupError


class TypeMap:
    """Atomic number -> model type index, with a clear error for elements the model lacks."""

    def __init__(self, elements: Sequence[str]):
        from ase.data import atomic_numbers

        self.elements = tuple(elements)
        self.table = np.full(130, -1, dtype=np.int64)
        for t, el in enumerate(self.elements):
            self.table[atomic_numbers[el]] = t

    def __call__(self, atoms: Atoms) -> np.ndarray:
        numbers = np.asarray(atoms.numbers)
        types = self.table[numbers]
        if (types < 0).any():
            unknown = sorted(set(np.asarray(atoms.get_chemical_symbols())[types < 0]))
            raise SetupError(
                f"frame contains element(s) {', '.join(unknown)} that the potential does not know "
                f"(it was trained for {', '.join(self.elements)})",
                hint="add frames with these elements to the training data and retrain, "
                     "or remove them from the structure")
        return types


def box(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """The cell vesin is given (Å) and the periodic axes: a non-periodic axis with a zero cell vector
    gets a perpendicular one longer than the frame; a degenerate periodic cell is refused."""
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.array(atoms.cell.array, dtype=np.float64)
    if not pbc.any():
        return cell if atoms.cell.rank == 3 else np.zeros((3, 3)), pbc
    # a non-periodic axis may have a zero cell vector (e.g. a slab): give it a perpendicular one
    for ax in np.flatnonzero(~pbc):
        if np.linalg.norm(cell[ax]) < 1e-8:
            a, b = cell[(ax + 1) % 3], cell[(ax + 2) % 3]
            n = np.cross(a, b)
            if np.linalg.norm(n) < 1e-8:
                break
            pos = atoms.positions
            extent = np.ptp(pos @ (n / np.linalg.norm(n))) if len(pos) else 0.0
            cell[ax] = n / np.linalg.norm(n) * (extent + 100.0)
    if abs(np.linalg.det(cell)) < 1e-8:
        raise SetupError(
            f"periodic frame (pbc={pbc.tolist()}) has a degenerate cell {cell.tolist()}",
            hint="give the structure three linearly independent cell vectors, or set pbc=False")
    return cell, pbc


def frame_pairs(atoms: Atoms, rcut: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list of one frame: (i, j, S, vec) with vec = r_j - r_i + S·cell, float64."""
    pos = np.asarray(atoms.positions, dtype=np.float64)
    if len(pos) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3), np.int64), np.zeros((0, 3))
    cell, pbc = box(atoms)
    nl = NeighborList(cutoff=float(rcut), full_list=True)
    i, j, s = nl.compute(pos, cell, pbc if pbc.any() else False, quantities="ijS")
    i = i.astype(np.int64)
    j = j.astype(np.int64)
    s = s.astype(np.int64)
    vec = pos[j] - pos[i] + s @ cell
    return i, j, s, vec
