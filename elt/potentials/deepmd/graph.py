"""Neighbour graphs for the Deep Potential: frames -> pair vectors + padded neighbour index (numpy).

A :class:`Graph` holds one or more frames concatenated. Pairs (center i, neighbour j) come from
``vesin`` (full list) and are sorted by the neighbour's type so each type's embedding network
runs on one contiguous slice. ``pad`` (N, S) maps each atom's neighbour slots to pair indices;
empty slots point at index P (a zero row appended in the model), so the padding width never
changes the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms
from vesin import NeighborList

from elt.errors import SetupError


@dataclass
class Graph:
    n_frames: int
    types: np.ndarray        # (N,) model type index of each atom
    atom_frame: np.ndarray   # (N,) frame of each atom
    vec: np.ndarray          # (P, 3) float64 displacement r_j - r_i (+ periodic shift), Å
    center: np.ndarray       # (P,) i
    neighbor: np.ndarray     # (P,) j
    pair_frame: np.ndarray   # (P,) frame of each pair
    type_offsets: np.ndarray  # (T+1,) pair ranges per neighbour type
    pad: np.ndarray          # (N, S) pair index per neighbour slot, P for empty
    atoms_by_type: list      # T arrays of atom indices, one per center type

    @property
    def n_atoms(self) -> int:
        return int(self.types.shape[0])


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


def _box(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
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


def frame_pairs(atoms: Atoms, rcut: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list of one frame: (i, j, vec) with vec = r_j - r_i + S·cell, float64."""
    pos = np.asarray(atoms.positions, dtype=np.float64)
    if len(pos) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3))
    cell, pbc = _box(atoms)
    nl = NeighborList(cutoff=float(rcut), full_list=True)
    i, j, s = nl.compute(pos, cell, pbc if pbc.any() else False, quantities="ijS")
    i = i.astype(np.int64)
    j = j.astype(np.int64)
    vec = pos[j] - pos[i] + s.astype(np.float64) @ cell
    return i, j, vec


def build_graph(frames: Sequence[Atoms], typemap: TypeMap, rcut: float,
                pairs: Sequence[tuple] | None = None) -> Graph:
    """Concatenate frames into one graph. ``pairs`` may hold precomputed :func:`frame_pairs` results."""
    types_l, frame_l, i_l, j_l, v_l, pf_l = [], [], [], [], [], []
    offset = 0
    for f, atoms in enumerate(frames):
        t = typemap(atoms)
        i, j, vec = pairs[f] if pairs is not None else frame_pairs(atoms, rcut)
        types_l.append(t)
        frame_l.append(np.full(len(t), f, dtype=np.int64))
        i_l.append(i + offset)
        j_l.append(j + offset)
        v_l.append(vec)
        pf_l.append(np.full(len(i), f, dtype=np.int64))
        offset += len(t)
    types = np.concatenate(types_l) if types_l else np.zeros(0, np.int64)
    center = np.concatenate(i_l) if i_l else np.zeros(0, np.int64)
    neighbor = np.concatenate(j_l) if j_l else np.zeros(0, np.int64)
    vec = np.concatenate(v_l) if v_l else np.zeros((0, 3))
    pair_frame = np.concatenate(pf_l) if pf_l else np.zeros(0, np.int64)
    n_types = len(typemap.elements)
    n = len(types)

    # sort pairs by neighbour type (stable: keeps center order inside a type)
    ntype = types[neighbor]
    order = np.argsort(ntype, kind="stable")
    center, neighbor, vec, pair_frame, ntype = center[order], neighbor[order], vec[order], pair_frame[order], ntype[order]
    type_offsets = np.searchsorted(ntype, np.arange(n_types + 1)).astype(np.int64)

    # slot of each pair inside its center's row
    p = len(center)
    counts = np.bincount(center, minlength=n)
    by_center = np.argsort(center, kind="stable")
    starts = np.cumsum(counts) - counts
    slot = np.empty(p, dtype=np.int64)
    slot[by_center] = np.arange(p) - starts[center[by_center]]
    width = int(counts.max()) if n and p else 0
    pad = np.full((n, max(width, 1)), p, dtype=np.int64)
    pad[center, slot] = np.arange(p)
    atoms_by_type = [np.flatnonzero(types == t) for t in range(n_types)]
    return Graph(len(frames), types, np.concatenate(frame_l) if frame_l else np.zeros(0, np.int64),
                 vec, center, neighbor, pair_frame, type_offsets, pad, atoms_by_type)
