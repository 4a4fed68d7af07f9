"""Neighbour graphs for the Deep Potential: frames -> pair vectors + padded neighbour index (numpy).

A :class:`Graph` holds one or more frames concatenated. Pairs (center i, neighbour j) come from
``vesin`` (full list) and are laid out per atom in S neighbour slots, grouped in one block of
columns per neighbour type, so each type's embedding network runs on one contiguous block.
Empty slots hold a displacement longer than the cutoff, where s(r) and its gradient are exactly
zero, so the padding width never changes the result.
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
    vec: np.ndarray          # (N, S, 3) float64 r_j - r_i (+ periodic shift) per neighbour slot, Å;
                             #   empty slots hold a vector longer than rcut (so s(r) = 0 there)
    neighbor: np.ndarray     # (N, S) j per slot (the center itself for empty slots)
    reverse: np.ndarray | None  # (N*S,) flat slot of the reverse pair (j -> i, -shift); empty slots
                                #   map to themselves (an involution); None if pairs could not be matched
    blocks: np.ndarray       # (T+1,) slot columns per neighbour type: type t in blocks[t]:blocks[t+1]
    atoms_by_type: list      # T arrays of atom indices, one per center type
    n_pairs: int = 0

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


def frame_pairs(atoms: Atoms, rcut: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list of one frame: (i, j, S, vec) with vec = r_j - r_i + S·cell, float64."""
    pos = np.asarray(atoms.positions, dtype=np.float64)
    if len(pos) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 3), np.int64), np.zeros((0, 3))
    cell, pbc = _box(atoms)
    nl = NeighborList(cutoff=float(rcut), full_list=True)
    i, j, s = nl.compute(pos, cell, pbc if pbc.any() else False, quantities="ijS")
    i = i.astype(np.int64)
    j = j.astype(np.int64)
    s = s.astype(np.int64)
    vec = pos[j] - pos[i] + s @ cell
    return i, j, s, vec


def _reverse_slots(center, neighbor, shifts, slot, n: int, width: int) -> np.ndarray | None:
    """For each flat slot, the flat slot of the reverse pair; None when the list is not symmetric."""
    if len(center) == 0:
        return np.arange(n * width, dtype=np.int64)
    if n >= 2_000_000 or np.abs(shifts).max(initial=0) >= 64:
        return None
    code = ((shifts[:, 0] + 64) * 128 + shifts[:, 1] + 64) * 128 + shifts[:, 2] + 64
    inv = ((-shifts[:, 0] + 64) * 128 - shifts[:, 1] + 64) * 128 - shifts[:, 2] + 64
    fwd = (center * n + neighbor) * (1 << 21) + code
    back = (neighbor * n + center) * (1 << 21) + inv
    # the reverse keys are the forward keys permuted: sorting both lines each pair up with its reverse
    order_f, order_b = np.argsort(fwd, kind="stable"), np.argsort(back, kind="stable")
    if not np.array_equal(fwd[order_f], back[order_b]):
        return None
    match = np.empty_like(order_f)
    match[order_b] = order_f
    rev = np.arange(n * width, dtype=np.int64)
    rev[slot] = slot[match]
    return rev


def build_graph(frames: Sequence[Atoms], typemap: TypeMap, rcut: float,
                pairs: Sequence[tuple] | None = None) -> Graph:
    """Concatenate frames into one padded graph. ``pairs`` may hold precomputed :func:`frame_pairs`."""
    types_l, frame_l, i_l, j_l, s_l, v_l = [], [], [], [], [], []
    offset = 0
    for f, atoms in enumerate(frames):
        t = typemap(atoms)
        i, j, shifts, vec = pairs[f] if pairs is not None else frame_pairs(atoms, rcut)
        types_l.append(t)
        frame_l.append(np.full(len(t), f, dtype=np.int64))
        i_l.append(i + offset)
        j_l.append(j + offset)
        s_l.append(shifts)
        v_l.append(vec)
        offset += len(t)
    cat = lambda xs, empty: np.concatenate(xs) if xs else empty  # noqa: E731
    types = cat(types_l, np.zeros(0, np.int64))
    center = cat(i_l, np.zeros(0, np.int64))
    neighbor = cat(j_l, np.zeros(0, np.int64))
    vec = cat(v_l, np.zeros((0, 3)))
    shifts = cat(s_l, np.zeros((0, 3), np.int64))
    n_types, n, p = len(typemap.elements), len(types), len(center)

    # group pairs by (center, neighbour type); each type gets a block of columns as wide as its
    # largest count, and a pair's column is its rank inside its group
    key = center * n_types + types[neighbor]
    order = np.argsort(key, kind="stable")
    key, center, neighbor, vec, shifts = key[order], center[order], neighbor[order], vec[order], shifts[order]
    counts = np.bincount(key, minlength=n * n_types).reshape(n, n_types)
    widths = counts.max(axis=0) if n else np.zeros(n_types, np.int64)
    blocks = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
    starts = np.cumsum(counts.ravel()) - counts.ravel()
    col = blocks[key % n_types] + np.arange(p) - starts[key]
    width = max(int(blocks[-1]), 1)
    vec_pad = np.zeros((n, width, 3))
    vec_pad[..., 0] = float(rcut) + 1.0
    vec_pad[center, col] = vec
    nbr_pad = np.repeat(np.arange(n, dtype=np.int64)[:, None], width, axis=1)
    nbr_pad[center, col] = neighbor
    reverse = _reverse_slots(center, neighbor, shifts, center * width + col, n, width)
    atoms_by_type = [np.flatnonzero(types == t) for t in range(n_types)]
    return Graph(len(frames), types, cat(frame_l, np.zeros(0, np.int64)), vec_pad, nbr_pad, reverse,
                 blocks, atoms_by_type, p)
