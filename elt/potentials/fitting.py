"""elt's training loop for one ensemble member, shared by the potential plugins (deepmd, mace).

A plugin supplies a :class:`Trainee` (one optimisation step on some frames, the validation score,
snapshots of the weights); :func:`plateau_fit` runs it under the schedule of
:mod:`elt.potentials.schedule` with the knobs of :class:`elt.config.train.PlateauTraining`. The
data-set helpers (label checks, the per-member train/validation split, the data-set hash) are
here too, so every plugin splits and checks frames the same way.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from typing import Any, Optional, Protocol, Sequence

import numpy as np
from ase import Atoms

from elt.data.frames import frame_hash, has_labels, labels_of
from elt.errors import CalculationError, SetupError
from elt.potentials.schedule import CAP, PLATEAU, TIME, Plateau, fit_warnings, step_cap

log = logging.getLogger(__name__)
MIN_VALID = 4  # fewest validation frames that judge plateaus alone


class Trainee(Protocol):
    """What :func:`plateau_fit` drives: a model with its optimiser and data."""

    def step(self, idx: np.ndarray, lr: float) -> None:
        """One optimisation step on the frames ``idx`` at learning rate ``lr``."""

    def score(self, train_idx: np.ndarray, check_idx: np.ndarray) -> float:
        """The validation score (:func:`elt.potentials.schedule.score`) on frames ``check_idx``."""

    def snapshot(self) -> Any:
        """A copy of the weights (kept for the best score)."""

    def restore(self, snapshot: Any) -> None:
        """Load weights from a :meth:`snapshot`."""


def begin_member(frames: Sequence[Atoms], config, seed: int) -> tuple[list[Atoms], np.random.Generator, tuple]:
    """The start of every ``train_member``: the start times (for :func:`member_metrics`), the frames
    checked, torch's threads (``config.threads``) and seed, and the member's random generator."""
    import torch

    started = (time.perf_counter(), time.process_time())
    frames = list(frames)
    check_frames(frames)
    torch.set_num_threads(int(config.threads))
    torch.manual_seed(int(seed))
    return frames, np.random.default_rng(int(seed)), started


def check_frames(frames: Sequence[Atoms]) -> None:
    """A clear error for an empty data set or frames without labels."""
    if len(frames) == 0:
        raise SetupError("cannot train a potential on an empty data set (0 labeled frames)",
                         hint="label some frames first (the initial data set must not be empty)")
    bad = [i for i, a in enumerate(frames) if not has_labels(a)]
    if bad:
        raise SetupError(f"{len(bad)} training frame(s) carry no energy/forces labels (first: index {bad[0]})",
                         hint="train only on labeled frames (elt.data.frames.attach_labels)")


def dataset_hash(frames: Sequence[Atoms]) -> str:
    h = hashlib.sha256()
    for a in frames:
        h.update(frame_hash(a).encode())
        h.update(np.float64(labels_of(a)[0]).tobytes())
    return h.hexdigest()[:20]


def split(n: int, config, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) frame indices of one member: ``validation_fraction`` held out, then
    ``subsample`` and ``bootstrap`` of :class:`elt.config.train.TrainBase` on the rest."""
    perm = rng.permutation(n)
    n_valid = int(math.floor(config.validation_fraction * n))
    n_valid = min(n_valid, n - 1)
    valid, train = perm[:n_valid], perm[n_valid:]
    if config.subsample is not None and len(train) > 1:
        train = rng.choice(train, size=max(1, int(round(config.subsample * len(train)))), replace=False)
    if config.bootstrap:
        train = rng.choice(train, size=len(train), replace=True)
    return np.sort(train), np.sort(valid)


def check_indices(train_idx: np.ndarray, valid_idx: np.ndarray) -> np.ndarray:
    """Frames the plateau checks score: the validation frames; with fewer than MIN_VALID of them
    (too noisy to judge a plateau or pick weights by) those and up to 32 training frames."""
    if len(valid_idx) >= MIN_VALID:
        return valid_idx
    return np.concatenate([valid_idx, np.unique(train_idx)[:32]])


def plateau_fit(trainee: Trainee, train_idx: np.ndarray, valid_idx: np.ndarray, config, warm: bool,
                rng: np.random.Generator) -> dict:
    """Steps under the decaying learning rate, with plateau checks every ``valid_every`` steps (see
    :mod:`elt.potentials.schedule`); the best-scoring weights are restored at the end. Returns
    steps, epochs, stop_reason, step_cap, best_step and ``falling`` (the relative fall of the score
    over the last quarter)."""
    t0 = time.perf_counter()
    bs = min(config.batch_size, len(train_idx))
    per_epoch = math.ceil(len(train_idx) / bs)
    cap = (step_cap(len(train_idx), bs, config.warm_epochs, config.warm_min_steps, config.warm_max_steps) if warm
           else step_cap(len(train_idx), bs, config.epochs, config.min_steps, config.max_steps))
    check_idx = check_indices(train_idx, valid_idx)
    decay = (config.learning_rate_end / config.learning_rate) ** (1.0 / max(cap - 1, 1))
    tracker = Plateau(config.patience, config.min_improvement)
    drop, best, step, reason, order = 1.0, None, 0, CAP, np.zeros(0, dtype=np.int64)
    while step < cap:
        if step % per_epoch == 0:
            order = rng.permutation(train_idx)
        lr = max(config.learning_rate * decay ** step * drop, config.learning_rate_end)
        b = step % per_epoch
        trainee.step(order[b * bs:(b + 1) * bs], lr)
        step += 1
        if step % config.valid_every and step < cap:
            continue
        score = trainee.score(train_idx, check_idx)
        if not math.isfinite(score):  # one NaN step poisons every weight: stop, say so
            raise CalculationError(
                f"training diverged: the validation score is {score} after {step} steps (the weights are no "
                "longer finite)", reason="diverged",
                hint="lower the train section's learning_rate, and check the data set for outlier labels "
                     "(frames with very large forces or energies)")
        new_best, plateau = tracker.update(step, score)
        if new_best:
            best = trainee.snapshot()
        if plateau:
            if lr <= config.learning_rate_end * (1 + 1e-9):
                reason = PLATEAU
                break
            drop *= config.plateau_factor
        if config.max_seconds is not None and time.perf_counter() - t0 > config.max_seconds and step < cap:
            reason = TIME
            break
    if best is not None and config.patience is not None:  # without plateau checks: the last weights
        trainee.restore(best)
    log.debug("score history %s", tracker.history)
    return {"steps": step, "epochs": math.ceil(step / per_epoch), "stop_reason": reason, "step_cap": cap,
            "best_step": tracker.best_step, "falling": tracker.falling_at_end()}


def member_metrics(fit: dict, train: Optional[dict], valid: Optional[dict], config, member: int, warm: bool,
                   virial_trained: bool, n_frames: int, started: tuple) -> dict:
    """The metrics a ``train_member`` returns (see :mod:`elt.potentials.base`) from the result of
    :func:`plateau_fit`, the RMSEs on the training and validation frames and the start times of
    :func:`begin_member`."""
    t0, c0 = started
    # a warm start ends at its (small) cap by design, and the next iteration goes on from it: it
    # warns only when its score was still falling clearly, like training without plateau checks
    fit = dict(fit)
    warnings = fit_warnings(train, fit["stop_reason"], fit.pop("falling"), config.patience is not None and not warm)
    for w in warnings:
        log.debug("member %d: %s", member, w)  # the driver reports the warnings (metrics["warnings"])
    return {
        "train": train,
        "valid": valid,
        **fit,
        "fit_ok": not warnings,
        # the virial (stress) term was live: some training frame carried stress and its weight was not zero
        "virial_trained": bool(virial_trained),
        "warnings": warnings,
        "seconds": round(time.perf_counter() - t0, 3),
        "cpu_seconds": round(time.process_time() - c0, 3),
        "n_frames": int(n_frames),
        "warm_start": bool(warm),
    }
