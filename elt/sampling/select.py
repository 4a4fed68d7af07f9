"""Selection by model deviation, DP-GEN semantics (the classes accurate / candidate / failed are
defined, once, in :mod:`elt.data.modeldevi`).

Adaptive lower level (dpgen2's adaptive-lower): among the frames below hi, the ``max(candidates,
int(fraction·n))`` highest deviations become the candidates and lo is the lowest of them
(:func:`adaptive_lo`). Diversity: strategy ``fps`` keeps candidates by farthest-point sampling on
per-frame descriptor vectors, starting from the highest deviation (:mod:`elt.sampling.fps`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

def choose(devi: np.ndarray, k: int, strategy: str, rng: np.random.Generator,
           features: Optional[np.ndarray] = None) -> np.ndarray:
    """Indices of at most ``k`` candidates: the ``k`` highest deviations, ``k`` at random, or ``k``
    by farthest-point sampling on ``features`` (n, D) (strategy ``fps``). The result is sorted, so
    that it does not depend on the order of ties."""
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
    elif strategy == "fps":
        from elt.sampling.fps import farthest_point_sampling

        if features is None or len(features) != n:
            raise ValueError(f"strategy fps needs one descriptor vector per candidate ({n}), "
                             f"got {None if features is None else len(features)}")
        idx = farthest_point_sampling(features, k, first=int(np.argmax(np.nan_to_num(devi, nan=-np.inf))))
    else:
        raise ValueError(f"unknown selection strategy {strategy!r}")
    return np.sort(idx)


def adaptive_lo(devi_below_hi: np.ndarray, candidates: Optional[int] = None, fraction: Optional[float] = None,
                lo_min: Optional[float] = None, hi: float = float("inf")) -> tuple[float, np.ndarray]:
    """dpgen2's adaptive lower level on the max force deviations of all frames below hi.

    The ``max(candidates, int(fraction * n))`` highest deviations (at most n) become candidates and
    lo is the lowest of them; with ``lo_min``, lo is at least ``lo_min`` (frames below it stay
    accurate). Returns (lo, sorted indices of the candidates); with no candidates lo is ``hi``.
    """
    d = np.asarray(devi_below_hi, dtype=np.float64)
    n = len(d)
    want = max(int(candidates or 0), int(fraction * n) if fraction else 0)
    want = min(want, n)
    if want == 0:
        return (float(hi), np.zeros(0, dtype=np.int64))
    pick = np.argsort(-d, kind="stable")[:want]
    lo = float(d[pick[-1]])
    if lo_min is not None and lo < lo_min:
        pick = pick[d[pick] >= lo_min]
        lo = float(lo_min)
    return lo, np.sort(pick)


def cap_per_group(groups: Sequence, devi: np.ndarray, cap: Optional[int], strategy: str,
                  rng: np.random.Generator, features: Optional[np.ndarray] = None) -> np.ndarray:
    """Sorted indices that keep at most ``cap`` entries of each group (e.g. per walker), chosen
    within a group by :func:`choose`; ``cap`` None keeps all."""
    groups = np.asarray(groups)
    if cap is None:
        return np.arange(len(groups))
    keep = []
    for g in dict.fromkeys(groups.tolist()):
        idx = np.flatnonzero(groups == g)
        if len(idx) > cap:
            idx = idx[choose(np.asarray(devi)[idx], cap, strategy, rng,
                             None if features is None else np.asarray(features)[idx])]
        keep.extend(idx.tolist())
    return np.sort(np.asarray(keep, dtype=np.int64))
