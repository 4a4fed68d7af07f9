"""Calibration of the deviation and automatic trust levels (elt.sampling.levels)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import cu_frames

from elt.config.sampling import AutoLevels
from elt.config.workflow import SelectConfig
from elt.sampling.levels import auto_levels, calibrate, held_out_pairs


def test_calibrate_is_the_median_ratio_and_robust():
    rng = np.random.default_rng(0)
    devi = rng.uniform(0.05, 0.5, 200)
    err = 2.0 * devi * rng.lognormal(0.0, 0.1, 200)
    err[:10] = 50.0  # a few wild frames barely move it
    assert calibrate(devi, err) == pytest.approx(2.0, rel=0.05)
    assert calibrate(devi[:4], err[:4]) is None            # too few frames
    assert calibrate([0.0, np.nan] * 5, [1.0] * 10) is None  # no usable deviation


def test_auto_levels_clip_and_keep_lo_below_hi():
    cfg = AutoLevels()
    lv = auto_levels(0.04, 1.0, cfg)
    target = cfg.lo_factor * cfg.max_over_rms * 0.04
    assert lv.target == pytest.approx(target) and lv.lo == pytest.approx(target) and lv.hi == pytest.approx(3 * target)
    assert auto_levels(0.04, 2.0, cfg).lo == pytest.approx(target / 2)   # errors twice the deviation: lower lo
    assert auto_levels(1e-4, 1.0, cfg).lo == cfg.lo_min               # floor
    big = auto_levels(1.0, 1.0, cfg)
    assert big.lo == cfg.lo_max and big.hi == pytest.approx(cfg.hi_factor * cfg.lo_max)
    assert auto_levels(None, None, cfg).lo == cfg.lo_max              # nothing known yet
    fixed_hi = auto_levels(0.1, 1.0, cfg, fixed_hi=0.2)               # lo squeezed below a fixed hi
    assert fixed_hi.hi == 0.2 and fixed_hi.lo < 0.2
    fixed_lo = auto_levels(0.01, 1.0, cfg, fixed_lo=0.4)
    assert fixed_lo.lo == 0.4 and fixed_lo.hi > 0.4
    both = auto_levels(0.01, 1.0, cfg, fixed_lo=0.1, fixed_hi=0.3)
    assert (both.lo, both.hi, both.source) == (0.1, 0.3, "fixed")


def test_select_config_accepts_auto_and_numbers():
    sel = SelectConfig(trust_lo="auto", trust_hi="auto")
    assert sel.trust_lo == "auto" and sel.auto.hi_factor == 3.0
    assert SelectConfig(trust_lo=0.1, trust_hi="auto").trust_lo == 0.1
    with pytest.raises(ValueError, match="must be below trust_hi"):
        SelectConfig(trust_lo=0.3, trust_hi=0.2)
    with pytest.raises(ValueError, match="or auto"):
        SelectConfig(trust_lo="atuo")
    with pytest.raises(ValueError, match="both choose trust_lo"):
        SelectConfig(trust_lo="auto", adaptive_lo={"fraction": 0.1})
    assert SelectConfig(trust_hi="auto", adaptive_lo={"fraction": 0.1}).trust_hi == "auto"
    with pytest.raises(ValueError, match="lo_min"):
        SelectConfig(trust_lo="auto", auto={"lo_min": 0.5, "lo_max": 0.3})


def _ensemble(frames, steps, tmp_path, name):
    from elt.config.train import DeepPotModel, TrainConfig
    from elt.potentials.deepmd import load_ensemble, train_member

    cfg = TrainConfig(model=DeepPotModel(rcut=4.0, rcut_smth=2.0, embedding=[8, 16], axis_neuron=4, fitting=[16, 16]),
                      min_steps=steps, max_steps=steps, epochs=10000, batch_size=2, validation_fraction=0.25)
    paths, metrics = [], []
    for m in range(2):
        p = tmp_path / f"{name}_{m}.pt"
        metrics.append(train_member(frames, cfg, ["Cu"], m, 10 + m, p))
        paths.append(p)
    return load_ensemble(paths), float(np.mean([m["valid"]["rmse_f"] for m in metrics]))


def _devi_and_error(ens, frames):
    """Stamp the frames as the explore task does (deviation and mean prediction of the exploring
    ensemble), then read them back as the loop would."""
    from elt.data.frames import MAX_DEVI_F, PRED_FORCES
    from elt.potentials.deviation import frame_deviation
    from elt.reporting.stats import force_errors

    stamped = []
    for a, p in zip(frames, ens.predict_many(frames)):
        b = a.copy()
        b.calc = a.calc
        b.info[MAX_DEVI_F] = frame_deviation(p.energies, p.forces).max_devi_f
        b.arrays[PRED_FORCES] = p.forces.mean(axis=0)
        stamped.append(b)
    devi, err = held_out_pairs(stamped + [frames[0]])  # an unstamped frame is skipped
    assert len(devi) == len(frames)
    assert err[0] == pytest.approx(force_errors(stamped[0].arrays[PRED_FORCES], frames[0].get_forces())[0])
    return devi, err


def test_auto_levels_follow_the_ensembles_error_on_a_real_run(tmp_path):
    """A rough ensemble (4 frames, 100 steps) and a better one (16 frames, 800 steps): calibrated on
    the same held-out EMT frames, the better one gets the lower trust levels."""
    held_out = cu_frames(12, amplitude=0.08, seed=9)
    levels = {}
    for name, n, steps in (("rough", 4, 100), ("better", 16, 800)):
        ens, valid_f = _ensemble(cu_frames(n, amplitude=0.08, seed=1), steps, tmp_path, name)
        devi, err = _devi_and_error(ens, held_out)
        scale = calibrate(devi, err)
        assert scale is not None and scale > 0
        levels[name] = (auto_levels(valid_f, scale, AutoLevels()), float(np.median(err)))
    (rough, rough_err), (better, better_err) = levels["rough"], levels["better"]
    assert better_err < rough_err  # the premise: the better ensemble is more accurate on the held-out frames
    assert better.target < rough.target and better.lo < rough.lo and better.hi < rough.hi, (rough, better)
    for lv in (rough, better):
        assert AutoLevels().lo_min <= lv.lo < lv.hi <= AutoLevels().hi_max
