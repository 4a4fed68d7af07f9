"""The ensemble learns EMT copper, and its deviation flags frames unlike the training data."""

from __future__ import annotations

import numpy as np
import pytest
from cu_frames import md_cu, rattled_cu

from elt.config.train import TrainConfig
from elt.potentials.deepmd import load_ensemble, train_member
from elt.potentials.deviation import frame_deviation


def _train(frames, config, tmp_path, k):
    paths = []
    for m in range(k):
        p = tmp_path / f"member_{m}.pt"
        train_member(frames, config, ["Cu"], m, 1000 + m, p)
        paths.append(p)
    return load_ensemble(paths)


def _force_rmse(ens, frames):
    preds = ens.predict_many(frames)
    ref = np.stack([a.get_forces() for a in frames])
    mean = np.stack([p.forces.mean(0) for p in preds])
    return float(np.sqrt(((mean - ref) ** 2).mean())), float(ref.std())


def _max_devi(ens, frames):
    return np.array([frame_deviation(p.energies, p.forces).max_devi_f for p in ens.predict_many(frames)])


def test_learns_rattled_copper_and_flags_unfamiliar_frames(tmp_path):
    """Quick version: 240 steps on rattled frames (the rattle amplitude stands in for temperature)."""
    cfg = TrainConfig(epochs=60, min_steps=1, batch_size=4, threads=1, validation_fraction=0.0)
    ens = _train(rattled_cu(16, amplitude=0.06, seed=1), cfg, tmp_path, 2)
    rmse, spread = _force_rmse(ens, rattled_cu(8, amplitude=0.08, seed=2))
    assert rmse < 0.4 * spread, (rmse, spread)
    near = _max_devi(ens, rattled_cu(6, amplitude=0.06, seed=3))
    hot = _max_devi(ens, rattled_cu(6, amplitude=0.2, seed=4))
    assert hot.mean() > 2 * near.mean(), (near, hot)


@pytest.mark.slow
def test_ensemble_reaches_emt_accuracy_on_hotter_md(tmp_path):
    """The issue's check: trained on 600 K MD, force RMSE < 0.05 eV/Å on 900 K MD frames; deviation
    clearly higher on strongly compressed and very hot frames."""
    train = md_cu(120, 600, seed=1, every=10)
    test = md_cu(30, 900, seed=2, every=10)
    ens = _train(train, TrainConfig(threads=1), tmp_path, 4)
    rmse, _ = _force_rmse(ens, test)
    assert rmse < 0.05, rmse
    near = _max_devi(ens, test)
    compressed = _max_devi(ens, md_cu(10, 600, seed=3, a=3.3, every=5))
    hot = _max_devi(ens, md_cu(10, 2500, seed=4, every=5))
    assert compressed.mean() > 2 * near.mean() and hot.mean() > 1.5 * near.mean(), (near, compressed, hot)
