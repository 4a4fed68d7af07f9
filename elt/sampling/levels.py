"""Trust levels that follow the ensemble: calibration of the deviation and automatic levels.

``calibrate(devi, err)`` fits one scale c with err ≈ c · devi (max force deviation against the true
max force error, eV/Å, on labeled frames the ensemble was not trained on): the median of the
ratios err/devi, robust to a few wild frames.

``auto_levels(...)`` derives (trust_lo, trust_hi) for an iteration from what the ensemble can
achieve. The target error is what training reached, ``lo_factor`` × the members' validation force
RMSE turned into a max-over-atoms error (``max_over_rms``): frames whose expected max force error
(c · deviation) is below it are as good as the training data makes them, so lo = target / c.
hi = ``hi_factor`` × lo. Both are clipped to the floors and ceilings of
:class:`elt.config.workflow.AutoLevels` (lo < hi kept). Without a calibration (no held-out
labeled frames yet) the deviation is taken at face value (c = 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class Levels:
    """Trust levels of one iteration (eV/Å) and how they were derived (for the report)."""

    lo: float
    hi: float
    scale: Optional[float]     # calibration c (error ≈ c · deviation), None without labeled frames
    target: Optional[float]    # expected max force error accepted as accurate (eV/Å)
    source: str                # "fixed" | "auto"

    def as_dict(self) -> dict:
        return {"trust_lo": self.lo, "trust_hi": self.hi, "scale": self.scale, "target": self.target,
                "source": self.source}


def calibrate(devi: Sequence[float], err: Sequence[float], min_frames: int = 5) -> Optional[float]:
    """Scale c with err ≈ c · devi: the median of err/devi over frames with both finite and devi > 0.
    None for fewer than ``min_frames`` usable frames."""
    d = np.asarray(devi, dtype=np.float64)
    e = np.asarray(err, dtype=np.float64)
    ok = np.isfinite(d) & np.isfinite(e) & (d > 0)
    if ok.sum() < min_frames:
        return None
    return float(np.median(e[ok] / d[ok]))


def held_out_pairs(frames) -> tuple[np.ndarray, np.ndarray]:
    """(max force deviation, true max force error) of labeled frames that carry the exploring
    ensemble's deviation (info ``elt_max_devi_f``) and mean forces (arrays ``elt_pred_forces``), as
    the explore task stores them on candidates: that ensemble was not trained on them. Frames
    without either are skipped. eV/Å."""
    from elt.data.frames import MAX_DEVI_F, PRED_FORCES, labels_of

    devi, err = [], []
    for a in frames:
        if MAX_DEVI_F not in a.info or PRED_FORCES not in a.arrays:
            continue
        forces = np.asarray(labels_of(a)[1], dtype=np.float64)
        devi.append(float(a.info[MAX_DEVI_F]))
        err.append(float(np.linalg.norm(np.asarray(a.arrays[PRED_FORCES]) - forces, axis=1).max()))
    return np.asarray(devi), np.asarray(err)


def auto_levels(valid_rmse_f: Optional[float], scale: Optional[float], cfg, fixed_lo=None,
                fixed_hi=None) -> Levels:
    """Trust levels for one iteration.

    ``valid_rmse_f``: mean over members of the validation force RMSE (eV/Å) of this iteration's
    training (the training RMSE when no frame was held out); ``scale``: :func:`calibrate` on
    held-out labeled frames (None: 1); ``cfg``: the ``select.auto`` section (AutoLevels);
    ``fixed_lo``/``fixed_hi``: a number where the workflow fixes that level, None where it is auto.
    """
    c = scale if scale is not None and np.isfinite(scale) and scale > 0 else 1.0
    target = None
    if fixed_lo is not None:
        lo = float(fixed_lo)
    elif valid_rmse_f is not None and np.isfinite(valid_rmse_f) and valid_rmse_f > 0:
        target = cfg.lo_factor * cfg.max_over_rms * float(valid_rmse_f)
        lo = float(np.clip(target / c, cfg.lo_min, cfg.lo_max))
    else:
        lo = cfg.lo_max  # nothing known yet: the loosest allowed level
    if fixed_hi is not None:
        hi = float(fixed_hi)
    else:
        hi = float(np.clip(cfg.hi_factor * lo, cfg.hi_min, cfg.hi_max))
    if hi <= lo:  # a fixed level or a ceiling squeezed them: keep lo below hi
        if fixed_lo is None:
            lo = hi / cfg.hi_factor
        else:
            hi = lo * cfg.hi_factor
    return Levels(lo, hi, scale, target, "fixed" if fixed_lo is not None and fixed_hi is not None else "auto")
