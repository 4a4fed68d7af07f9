"""explore_task (the walker task of the engine) with bias, metadynamics, diversity selection and
the keep-everything-below-hi mode of the adaptive lower trust level; real ensemble, no mocks."""

import numpy as np
import pytest

from elt.config.workflow import StageConfig
from elt.data.frames import MAX_DEVI_F, read_frames
from elt.engine.tasks import ExploreJob, explore_task
from elt.records import SelectionLevels, WalkerSpec


def _run(tmp_path, cu_ensemble, stage, select, iteration=1, seed=4):
    walker = WalkerSpec(id="w0", temperature=600.0, pressure=None, seed=seed, iteration=iteration)
    d = tmp_path / f"walk-{iteration}-{seed}"
    d.mkdir()
    job = ExploreJob([walker], [cu_ensemble[1][0]], [str(p) for p in cu_ensemble[0]], "deepmd", stage,
                     SelectionLevels(**select))
    return explore_task(d, job), d


def test_biased_metad_walker_with_fps_writes_everything(tmp_path, cu_ensemble):
    stage = StageConfig(steps=60, record_every=5, stop_at_failed=False,
                        bias={"kind": "udd", "strength": 2.0, "width": 0.05},
                        metad={"cvs": [{"kind": "distance", "atoms": [0, 1]},
                                       {"kind": "coordination", "group_a": [0, 1, 2, 3], "r0": 2.6}],
                               "stride": 10, "height": 0.02})
    sel = {"lo": 0.0, "hi": float("inf"), "max_per_walker": 4, "strategy": "fps"}
    r, d = _run(tmp_path, cu_ensemble, stage, sel)
    assert r["stop_reason"] == "completed" and r["n_frames"] == 13
    assert r["bias"] == "UDDCalculator" and r["hills"] == 6
    assert len(r["candidates"]) == 4
    feats = np.load(r["features_file"])
    assert feats.shape == (4, 64) and np.isfinite(feats).all()
    frames = read_frames(d / "candidates.extxyz")
    assert [a.info[MAX_DEVI_F] for a in frames] == pytest.approx([c["max_devi_f"] for c in r["candidates"]])
    assert np.loadtxt(d / "hills.out", ndmin=2).shape == (6, 4)
    assert np.loadtxt(d / "colvar.out", ndmin=2).shape == (13, 3)
    # model_devi.out holds the ensemble's own deviations, also under the bias
    from elt.potentials.deepmd import load_ensemble
    from elt.potentials.deviation import frame_deviation

    pot = load_ensemble(cu_ensemble[0])
    table = np.loadtxt(d / "model_devi.out", ndmin=2)
    steps = [c["step"] for c in r["candidates"]]
    for a, st in zip(frames, steps):
        p = pot.predict(a)
        row = table[table[:, 0] == st][0]
        assert row[4] == pytest.approx(frame_deviation(p.energies, p.forces).max_devi_f, rel=1e-3)


def test_bias_switches_on_from_its_iteration(tmp_path, cu_ensemble):
    stage = StageConfig(steps=20, record_every=10, bias={"kind": "hal", "from_iteration": 2})
    sel = {"lo": 0.0, "hi": float("inf"), "strategy": "random"}
    r0, _ = _run(tmp_path, cu_ensemble, stage, sel, iteration=1)
    r2, _ = _run(tmp_path, cu_ensemble, stage, sel, iteration=2)
    assert r0["bias"] is None and r2["bias"] == "HALCalculator"
    assert r0["features_file"] is None


def test_adaptive_mode_keeps_every_frame_below_hi(tmp_path, cu_ensemble):
    """The driver's adaptive lo needs every frame below hi: walkers get lo = 0 and no per-walker cap."""
    stage = StageConfig(steps=40, record_every=5, stop_at_failed=False)
    hi = 5.0
    r, d = _run(tmp_path, cu_ensemble, stage, {"lo": 0.0, "hi": hi, "strategy": "highest"})
    table = np.loadtxt(d / "model_devi.out", ndmin=2)
    below = int((table[:, 4] < hi).sum())
    assert len(r["candidates"]) == below == r["counts"]["candidate"]
    assert r["counts"]["accurate"] == 0


def test_fps_walker_without_candidates(tmp_path, cu_ensemble):
    stage = StageConfig(steps=10, record_every=5, stop_at_failed=False)
    r, d = _run(tmp_path, cu_ensemble, stage, {"lo": 0.0, "hi": 1e-9, "strategy": "fps", "max_per_walker": 2})
    assert r["candidates"] == [] and r["counts"]["failed"] == 3
    assert np.load(r["features_file"]).shape[0] == 0
