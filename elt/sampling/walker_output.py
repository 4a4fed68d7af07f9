"""A walker's record -> its files and candidates: the part of exploration that is the engine's,
whatever explorer produced the trajectory. Selection happens here, next to the trajectory: only
the candidates and the counts travel back to the driver."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from elt.data.frames import (FRAME_ID, ITERATION, MAX_DEVI_F, PRED_ENERGY, PRED_FORCES, SOURCE, STEP,
                             frame_hash, write_frames)
from elt.data.modeldevi import CANDIDATE, FAILED, classify, counts, write_model_devi
from elt.records import Candidate, ExploreResult, SelectionLevels, WalkerSpec
from elt.sampling.explorer import WalkerRecord
from elt.sampling.select import choose

CANDIDATES_FILE = "candidates.extxyz"
FEATURES_FILE = "candidates_desc.npy"
MODEL_DEVI_FILE = "model_devi.out"
FRAMES_FILE = "frames.extxyz"


def finish_walker(out_dir: Path, walker: WalkerSpec, rec: WalkerRecord, potential,
                  levels: SelectionLevels, save_frames: bool = False) -> ExploreResult:
    """Write ``model_devi.out`` (DP-GEN's columns plus devi_e) and ``candidates.extxyz`` (with
    strategy fps also ``candidates_desc.npy``: one descriptor vector per candidate, same order)
    into ``out_dir``; classify the frames (the frame that stopped the walker for a bad reason is
    failed), thin the candidates to ``levels.max_per_walker`` and store on each the ensemble's
    mean prediction before retraining (reports compare it with the label: the true error).
    ``save_frames``: also every recorded frame in ``frames.extxyz`` (the stage's save_frames)."""
    out_dir = Path(out_dir)
    devi = rec.devi_array()
    write_model_devi(out_dir / MODEL_DEVI_FILE, rec.steps, devi)
    classes = classify(devi[:, 3], levels.lo, levels.hi, devi[:, 6], levels.elo, levels.ehi,
                       last_failed=rec.stopped_on_bad_frame)
    cand = np.flatnonzero(classes == CANDIDATE)
    fps = levels.strategy == "fps"
    feats = None
    if fps:
        from elt.sampling.fps import frame_vectors

        feats = frame_vectors(potential, [rec.frames[i] for i in cand])
    if levels.max_per_walker and len(cand) > levels.max_per_walker:
        rng = np.random.default_rng(walker.seed + 1)
        keep = choose(devi[cand, 3], levels.max_per_walker, levels.strategy, rng, feats)
        cand = cand[keep]
        feats = feats[keep] if fps else None
    calib = np.zeros(0, dtype=np.int64)
    if levels.calibration:  # an unrestricted sample: any frame below hi that is not a candidate
        rest = np.flatnonzero(classes != FAILED)
        rest = rest[~np.isin(rest, cand)]
        rng = np.random.default_rng(walker.seed + 2)
        calib = np.sort(rng.choice(rest, size=min(levels.calibration, len(rest)), replace=False))
    frames, cands, calibs = [], [], []
    keep = np.concatenate([cand, calib]).astype(np.int64)
    preds = potential.predict_many([rec.frames[i] for i in keep]) if len(keep) else []
    for j, (i, p) in enumerate(zip(keep, preds)):
        a = rec.frames[i]
        fid = frame_hash(a)
        a.info.update({FRAME_ID: fid, ITERATION: walker.iteration, SOURCE: walker.id,
                       STEP: int(rec.steps[i]), MAX_DEVI_F: float(devi[i, 3]),
                       PRED_ENERGY: float(np.mean(p.energies))})
        a.arrays[PRED_FORCES] = np.asarray(p.forces, dtype=np.float64).mean(axis=0)
        frames.append(a)
        (cands if j < len(cand) else calibs).append(
            Candidate(index=len(frames) - 1, step=int(rec.steps[i]), frame_id=fid,
                      max_devi_f=float(devi[i, 3]), devi_e=float(devi[i, 6])))
    write_frames(out_dir / CANDIDATES_FILE, frames)
    if save_frames:
        write_frames(out_dir / FRAMES_FILE, rec.frames)
    if fps:
        np.save(out_dir / FEATURES_FILE, feats)
    return ExploreResult(walker=walker.id, n_frames=int(len(devi)), counts=counts(classes),
                         stop_reason=rec.stop_reason, steps_done=rec.steps_done, candidates=cands,
                         calibration=calibs,
                         features_file=str(out_dir / FEATURES_FILE) if fps else None, bias=rec.bias,
                         hills=rec.hills, beyond_frames=rec.beyond_frames, restarts=rec.restarts,
                         max_devi_f_max=float(np.nanmax(devi[:, 3])) if len(devi) and np.isfinite(devi[:, 3]).any() else None,
                         candidates_file=str(out_dir / CANDIDATES_FILE),
                         model_devi_file=str(out_dir / MODEL_DEVI_FILE))
