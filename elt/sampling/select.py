"""Selection by model deviation, DP-GEN semantics.

A frame's max force deviation ``f`` (eV/Å) puts it in one of three classes:
``accurate`` if f < lo, ``candidate`` if lo ≤ f < hi, ``failed`` if f ≥ hi. With the optional
energy criterion (deviation per atom ``e`` with levels elo/ehi) a frame is accurate only when both
are below their lower levels, failed when either reaches its upper level, a candidate otherwise.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"


def classify(max_devi_f: np.ndarray, lo: float, hi: float,
             devi_e: Optional[np.ndarray] = None, elo: Optional[float] = None,
             ehi: Optional[float] = None) -> np.ndarray:
    """Class of each frame as an array of strings (accurate, candidate, failed)."""
    f = np.asarray(max_devi_f, dtype=np.float64)
    acc = f < lo
    fail = ~(f < hi)  # NaN counts as failed
    if devi_e is not None and elo is not None and ehi is not None:
        e = np.asarray(devi_e, dtype=np.float64)
        acc &= e < elo
        fail |= ~(e < ehi)
    out = np.full(f.shape, CANDIDATE, dtype=object)
    out[acc] = ACCURATE
    out[fail] = FAILED
    return out


def counts(classes: Sequence[str]) -> dict[str, int]:
    c = {ACCURATE: 0, CANDIDATE: 0, FAILED: 0}
    for x in classes:
        c[x] += 1
    return c


def choose(devi: np.ndarray, k: int, strategy: str, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``k`` candidates: the ``k`` highest deviations, or ``k`` at random.
    The result is sorted, so that it does not depend on the order of ties."""
    devi = np.asarray(devi, dtype=np.float64)
    n = len(devi)
    if k >= n:
        return np.arange(n)
    if k <= 0:
        return np.arange(0)
    if strategy == "highest":
        idx = np.argsort(-devi, kind="stable")[:k]
    elif strategy == "random":
        idx = rng.choice(n, size=k, replace=False)
    else:
        raise ValueError(f"unknown selection strategy {strategy!r}")
    return np.sort(idx)
