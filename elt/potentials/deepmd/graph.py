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

from elt.potentials.neighbors import TypeMap, frame_pairs


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
