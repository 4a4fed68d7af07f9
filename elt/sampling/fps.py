"""Farthest-point sampling on per-frame descriptor vectors (diversity selection).

A frame's vector is the mean of the ensemble's per-atom descriptors over the atoms of each element,
the element blocks concatenated (zeros for an element the frame lacks), so frames of different
compositions stay comparable. Before sampling each feature is standardised over the candidate set,
so no single descriptor channel dominates the Euclidean distance.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np


def frame_vector(desc: np.ndarray, symbols: Sequence[str], elements: Sequence[str]) -> np.ndarray:
    """Per-atom descriptors (N, D) of one frame -> (len(elements) * D,) per-element means."""
    desc = np.asarray(desc, dtype=np.float64)
    sym = np.asarray(symbols)
    out = np.zeros((len(elements), desc.shape[1]))
    for t, el in enumerate(elements):
        sel = sym == el
        if sel.any():
            out[t] = desc[sel].mean(axis=0)
    return out.ravel()


def farthest_point_sampling(x: np.ndarray, k: int, first: Optional[int] = None,
                            standardize: bool = True) -> np.ndarray:
    """Indices of ``k`` rows of ``x`` (n, D) in the order FPS picks them: ``first`` (default row 0),
    then each time the row farthest (Euclidean) from all rows picked so far; ties go to the lower
    index. ``k >= n`` returns every row."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = len(x)
    k = min(int(k), n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if standardize and n > 1:
        std = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(std > 1e-12, std, 1.0)
    picked = [0 if first is None else int(first)]
    dist = np.linalg.norm(x - x[picked[0]], axis=1)
    dist[picked[0]] = -1.0  # picked rows are never picked again, even among exact duplicates
    while len(picked) < k:
        nxt = int(np.argmax(dist))
        picked.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
        dist[picked] = -1.0
    return np.asarray(picked, dtype=np.int64)


def frame_vectors(potential, frames: Sequence) -> np.ndarray:
    """Per-frame descriptor vectors (n, T*D) from ``potential.descriptors(atoms) -> (N, D)``."""
    if not hasattr(potential, "descriptors"):
        raise ValueError(f"select.strategy fps needs per-atom descriptors, which the potential "
                         f"{type(potential).__name__} does not provide (a descriptors(atoms) method)")
    elements = list(potential.elements)
    rows = [frame_vector(potential.descriptors(a), a.get_chemical_symbols(), elements) for a in frames]
    if not rows:
        return np.zeros((0, 0))
    return np.asarray(rows, dtype=np.float64)
