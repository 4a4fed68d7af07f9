"""The selection policy of an iteration, as pure functions of the walkers' typed results.

Which trust levels an iteration explores under (fixed or auto, :mod:`elt.sampling.levels`), which
of the pooled candidates are labeled (adaptive lower level, per-walker cap, budget, strategy), and
which random explored frames calibrate the deviation. Nothing here reads files or dispatches
tasks: the campaign (:mod:`elt.engine.loop`) gives the numbers and reads the frames it is told.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from elt.engine.ids import derive_seed
from elt.records import Candidate, ExploreResult, SelectionLevels
from elt.sampling.levels import auto_levels, calibrate
from elt.sampling.select import adaptive_lo, cap_per_group, choose


def iteration_levels(wf, stage_index: int, metrics: Optional[dict],
                     held_out: tuple[np.ndarray, np.ndarray]) -> tuple[SelectionLevels, Optional[dict]]:
    """The levels of an iteration in stage ``stage_index`` whose training gave ``metrics``, and,
    where a level is auto, how it was derived (None when both are fixed). ``held_out``: the
    (max force deviation, true max force error) pairs of labeled frames the exploring ensembles
    had not seen (the calibration)."""
    st = wf.explore.stages[stage_index]
    lo, hi = st.trust_lo or wf.select.trust_lo, st.trust_hi or wf.select.trust_hi
    derived = None
    calibration = 0
    if "auto" in (lo, hi):
        fit = ((metrics or {}).get("train") or (metrics or {}).get("valid") or {}).get("rmse_f")
        devi, err = held_out
        scale = calibrate(devi, err, wf.select.auto.min_frames)
        auto = auto_levels(fit, scale, wf.select.auto, None if lo == "auto" else lo, None if hi == "auto" else hi)
        lo, hi, derived = auto.lo, auto.hi, {**auto.as_dict(), "calibration_frames": int(len(devi))}
        calibration = wf.select.auto.calibration_frames
    lv = SelectionLevels(lo=lo, hi=hi, elo=wf.select.energy_trust_lo, ehi=wf.select.energy_trust_hi,
                         max_per_walker=wf.select.max_per_walker, strategy=wf.select.strategy,
                         calibration=calibration)
    if wf.select.adaptive_lo is not None:
        # walkers keep every frame below hi as a potential candidate; the driver sets lo
        lv = lv.model_copy(update={"lo": 0.0, "elo": 0.0 if lv.ehi is not None else None, "max_per_walker": None})
    return lv, derived


@dataclass(frozen=True)
class Pick:
    """One candidate of the pool: which walker (index into the iteration's walkers) kept it."""

    walker: int
    candidate: Candidate

    @property
    def devi(self) -> float:
        return self.candidate.max_devi_f


@dataclass
class Gathered:
    """What the iteration's walkers found: frames per class, stop reasons, the pooled candidates,
    and the walkers that failed (name and message)."""

    counts: dict
    stop_reasons: dict
    pool: list[Pick]
    failures: list[dict]


def gather(results: Sequence[Optional[ExploreResult]], names: Sequence[str], errors: Sequence[Optional[str]]) -> Gathered:
    """Pool the walkers' results (None for a walker that failed, with its error message)."""
    counts = {"accurate": 0, "candidate": 0, "failed": 0}
    stop_reasons: dict[str, int] = {}
    pool = []
    failures = []
    for wi, (r, name, err) in enumerate(zip(results, names, errors)):
        if r is None:
            failures.append({"walker": name, "message": err})
            continue
        for k in counts:
            counts[k] += r.counts[k]
        stop_reasons[r.stop_reason] = stop_reasons.get(r.stop_reason, 0) + 1
        pool.extend(Pick(wi, c) for c in r.candidates)
    return Gathered(counts, stop_reasons, pool, failures)


def choose_labels(wf, g: Gathered, lv: SelectionLevels, it: int,
                  features: Optional[np.ndarray]) -> tuple[list[Pick], list[Pick], SelectionLevels]:
    """The picks to label among the pooled candidates (adaptive lo, per-walker cap, budget,
    strategy). ``features``: one descriptor row per pooled candidate (fps only). Returns the
    chosen picks, the pool in force and the levels in force (lo set by the adaptive lo); with an
    adaptive lo, ``g.counts`` is updated to the frames it classifies."""
    rng = np.random.default_rng(derive_seed(wf.seed, "select", it))
    pool, feats = g.pool, features
    ad = wf.select.adaptive_lo
    if ad is not None:  # re-classify every frame below hi with the adaptive lo
        lo, keep = adaptive_lo(np.array([p.devi for p in pool]), ad.candidates, ad.fraction, ad.lo_min, lv.hi)
        lv = lv.model_copy(update={"lo": lo})
        g.counts["accurate"], g.counts["candidate"] = len(pool) - len(keep), len(keep)
        pool, feats = _take(pool, feats, keep)
        keep = cap_per_group([p.walker for p in pool], np.array([p.devi for p in pool]), wf.select.max_per_walker,
                             wf.select.strategy, rng, feats)
        pool, feats = _take(pool, feats, keep)
    chosen = choose(np.array([p.devi for p in pool]), wf.select.max_candidates, wf.select.strategy, rng, feats)
    return [pool[i] for i in chosen], pool, lv


def _take(pool: list, feats: Optional[np.ndarray], keep) -> tuple[list, Optional[np.ndarray]]:
    return [pool[i] for i in keep], (feats[keep] if feats is not None else None)


def calibration_picks(wf, results: Sequence[Optional[ExploreResult]], it: int, exclude: set) -> list[Pick]:
    """``select.auto.calibration_frames`` picks drawn at random from every walker's random sample
    of its frames below trust_hi (not only candidates), leaving out the frame ids in ``exclude``."""
    want = wf.select.auto.calibration_frames
    pool = [Pick(wi, c) for wi, r in enumerate(results) if r is not None for c in r.calibration
            if c.frame_id not in exclude]
    if not want or not pool:
        return []
    rng = np.random.default_rng(derive_seed(wf.seed, "calibrate", it))
    return [pool[k] for k in sorted(rng.choice(len(pool), size=min(want, len(pool)), replace=False).tolist())]


def stream_picks(wf, result: Optional[ExploreResult], walker: str, it: int, n_walkers: int) -> list[int]:
    """With select.stream on: the candidates (indices into ``result.candidates``) a finished
    walker labels at once, its share of the budget. Deterministic: the share and the seed depend
    on the walker only."""
    if result is None or not result.candidates:
        return []
    quota = -(-wf.select.max_candidates // max(n_walkers, 1))
    devs = np.array([c.max_devi_f for c in result.candidates])
    rng = np.random.default_rng(derive_seed(wf.seed, "select", it, walker))
    return [int(i) for i in choose(devs, quota, wf.select.strategy, rng)]
