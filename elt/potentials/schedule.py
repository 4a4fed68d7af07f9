"""When a member's training stops, and whether the result fits: pure functions, no torch.

Budget: the step cap scales with the data set, ``clamp(epochs * steps_per_epoch, min_steps,
max_steps)`` (warm starts use their own three numbers), plus an optional wall-time cap.

Schedule: the learning rate decays exponentially from ``learning_rate`` to ``learning_rate_end``
over the cap; every ``valid_every`` steps the validation score (:func:`score`) is checked. After ``patience`` checks without
a relative improvement of ``min_improvement``, the learning rate drops by ``plateau_factor`` (the
loss prefactors follow it); once it is at ``learning_rate_end`` a further plateau ends training
("plateau"). The best-scoring weights are kept. Reaching the step or time cap ends it ("cap",
"time").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

PLATEAU, CAP, TIME = "plateau", "cap", "time"
# energy RMSE per atom (eV) above this length (Å) times the force RMSE (eV/Å) counts as not fitted:
# a well-fitted model's energy error per atom is a small fraction of force error x thermal displacement
ENERGY_FORCE_LENGTH = 0.25
# the validation score falling by more than this over the last quarter of a run that hit its cap
STILL_FALLING = 0.10  # without plateau checks: a cap stop warns when the score fell more than this


def step_cap(n_train: int, batch_size: int, epochs: int, min_steps: int, max_steps: int) -> int:
    """Optimisation steps allowed: ``epochs`` passes over ``n_train`` frames, at least ``min_steps``
    and at most ``max_steps``."""
    per_epoch = math.ceil(max(n_train, 1) / max(min(batch_size, max(n_train, 1)), 1))
    return int(min(max(epochs * per_epoch, min_steps), max_steps))


def score(rmse_e: float, rmse_f: float) -> float:
    """Validation score (eV/Å, lower is better): the force RMSE and the energy RMSE per atom taken as
    a force over ENERGY_FORCE_LENGTH, added in quadrature. Forces dominate a well-fitted model; an
    unfitted energy dominates the score until it is fitted."""
    return math.sqrt(rmse_f ** 2 + (rmse_e / ENERGY_FORCE_LENGTH) ** 2)


@dataclass
class Plateau:
    """Tracks validation scores; ``update`` says whether to drop the learning rate or stop."""

    patience: Optional[int]
    min_improvement: float
    best: float = math.inf        # lowest score so far (its weights are kept)
    best_step: int = 0
    ref: float = math.inf         # score at the last significant improvement
    since: int = 0                # checks since then
    history: list = field(default_factory=list)   # (step, score)

    def update(self, step: int, value: float) -> tuple[bool, bool]:
        """Record a check; returns (new best, plateau). A plateau restarts the count."""
        self.history.append((int(step), float(value)))
        new_best = value < self.best
        if new_best:
            self.best, self.best_step = float(value), int(step)
        if value < self.ref * (1.0 - self.min_improvement):
            self.ref, self.since = float(value), 0
        else:
            self.since += 1
        plateau = self.patience is not None and self.since >= self.patience
        if plateau:
            self.ref, self.since = self.best, 0
        return new_best, plateau

    def falling_at_end(self) -> float:
        """Relative drop of the score over the last quarter of the recorded checks (0 when too few)."""
        h = self.history
        if len(h) < 4:
            return 0.0
        last_step = h[-1][0]
        ref = [s for st, s in h if st <= 0.75 * last_step]
        if not ref:
            return 0.0
        before = min(ref)
        return max(0.0, (before - min(s for _, s in h)) / before)


def fit_warnings(train: Optional[dict], stop_reason: str, falling: float, plateau_checks: bool) -> list[str]:
    """Plain-text warnings about a finished member: energies not fitted; stopped by a cap while the
    validation score still improved (with plateau checks on, a cap stop means no plateau was
    reached; without them, the score fell by more than STILL_FALLING over the last quarter)."""
    out = []
    if train and train["rmse_e"] > ENERGY_FORCE_LENGTH * train["rmse_f"]:
        out.append(f"energies not fitted: training energy RMSE {1000 * train['rmse_e']:.1f} meV/atom is more "
                   f"than {ENERGY_FORCE_LENGTH} Å x the force RMSE ({train['rmse_f']:.3f} eV/Å); raise "
                   "train.energy_weight or the step cap (train.max_steps / train.epochs)")
    if stop_reason in (CAP, TIME) and (plateau_checks or falling > STILL_FALLING):
        what = "step cap" if stop_reason == CAP else "time cap (train.max_seconds)"
        why = ("before its validation score reached a plateau" if plateau_checks else
               f"while its validation score still fell ({100 * falling:.0f} % over the last quarter)")
        out.append(f"stopped at the {what} {why}: longer training would likely fit better (raise "
                   "train.max_steps / train.epochs, or warm_max_steps / warm_epochs for warm starts)")
    return out
