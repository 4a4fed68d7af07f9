"""Small statistics for reports, numpy only: rank correlation and force errors."""

from __future__ import annotations

from typing import Optional

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties get their average rank."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(1, len(x) + 1)
    uniq, inv, cnt = np.unique(x, return_inverse=True, return_counts=True)
    if len(uniq) < len(x):
        sums = np.bincount(inv, weights=ranks)
        ranks = (sums / cnt)[inv]
    return ranks


def spearman(x, y) -> Optional[float]:
    """Spearman rank correlation of two samples; None for fewer than 3 finite pairs or a constant sample."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    sx, sy = rx.std(), ry.std()
    if sx == 0 or sy == 0:
        return None
    return float(np.mean((rx - rx.mean()) * (ry - ry.mean())) / (sx * sy))


def force_errors(pred: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """(max over atoms of |F_pred - F_ref|, RMS over components) in eV/Å."""
    d = np.asarray(pred, dtype=np.float64) - np.asarray(ref, dtype=np.float64)
    return float(np.linalg.norm(d, axis=1).max()), float(np.sqrt(np.mean(d ** 2)))


def top_fraction_recall(devi, err, fraction: float = 0.1) -> Optional[float]:
    """Share of the ``fraction`` of frames with the largest true error that are also among the
    ``fraction`` with the largest deviation (top-decile recall for 0.1); None when the sample is
    too small to hold one such frame (fewer than 1/fraction finite pairs)."""
    d = np.asarray(devi, dtype=np.float64)
    e = np.asarray(err, dtype=np.float64)
    ok = np.isfinite(d) & np.isfinite(e)
    d, e = d[ok], e[ok]
    m = int(np.floor(fraction * len(d)))
    if m < 1:
        return None
    worst = set(np.argsort(-e, kind="stable")[:m].tolist())
    flagged = set(np.argsort(-d, kind="stable")[:m].tolist())
    return len(worst & flagged) / m
