"""The shared training loop (elt.potentials.fitting.plateau_fit) stops with a clear error when the
optimisation diverges, instead of handing back non-finite weights."""

from __future__ import annotations

import numpy as np
import pytest

from elt.config.train import DeepMDTrain
from elt.errors import CalculationError
from elt.potentials.fitting import plateau_fit


class Quadratic:
    """Gradient descent on (w - 1)^2: converges for a learning rate below 1, overflows above it."""

    def __init__(self):
        self.w = np.float64(0.0)

    def step(self, idx, lr):
        with np.errstate(over="ignore", invalid="ignore"):
            self.w = self.w - lr * 2.0 * (self.w - 1.0)

    def score(self, train_idx, check_idx):
        with np.errstate(over="ignore", invalid="ignore"):
            return float((self.w - 1.0) ** 2)

    def snapshot(self):
        return self.w

    def restore(self, snapshot):
        self.w = snapshot


def _fit(lr: float) -> Quadratic:
    config = DeepMDTrain(learning_rate=lr, learning_rate_end=lr, epochs=2000, max_steps=2000, batch_size=1,
                         valid_every=50, patience=None)
    q = Quadratic()
    plateau_fit(q, np.arange(4), np.arange(4, 6), config, False, np.random.default_rng(0))
    return q


def test_a_converging_fit_ends_with_its_weights():
    assert _fit(0.1).w == pytest.approx(1.0)


def test_a_diverging_fit_stops_with_a_hint_instead_of_non_finite_weights():
    with pytest.raises(CalculationError) as e:
        _fit(1e3)
    assert e.value.reason == "diverged" and "training diverged" in e.value.message
    assert "learning_rate" in e.value.hint
