"""select.trust_lo / trust_hi: auto on a real small loop: each iteration derives its levels from
its own training error and the calibration on labeled candidates, records how, and explores with them."""

import numpy as np
import pytest

from elt.cli.main import main
from elt.engine.state import open_readonly

from test_loop_e2e import TINY, write_wf


def test_auto_levels_follow_the_ensembles_error(tmp_path):
    data = {**TINY, "select": {"trust_lo": "auto", "trust_hi": "auto", "max_candidates": 3},
            "converge": {"max_iterations": 3},
            "explore": {"stages": [{**TINY["explore"]["stages"][0], "max_iterations": 3}]}}
    assert main(["run", str(write_wf(tmp_path, data))]) == 0
    with open_readonly(tmp_path / "tiny") as st:
        recs = st.iterations()
    assert len(recs) == 3
    from elt.config.sampling import AutoLevels

    cfg = AutoLevels()
    for r in recs:
        lv = r["levels"]
        fit = r["train"]["train"]["rmse_f"]  # what the members reach on their training frames
        c = lv["scale"] or 1.0
        assert lv["target"] == pytest.approx(cfg.lo_factor * cfg.max_over_rms * fit)
        assert r["trust_lo"] == pytest.approx(np.clip(lv["target"] / c, cfg.lo_min, cfg.lo_max))
        assert r["trust_hi"] == pytest.approx(np.clip(cfg.hi_factor * r["trust_lo"], cfg.hi_min, cfg.hi_max))
        assert cfg.lo_min <= r["trust_lo"] < r["trust_hi"] <= cfg.hi_max
    # the first iteration has no labeled frames to calibrate on: not trusted, whatever its ratio;
    # each iteration labels random explored frames (not only candidates) for the calibration
    assert recs[0]["levels"]["calibration_frames"] == 0 and recs[0]["levels"]["scale"] is None
    assert not recs[0]["calibrated"]
    assert all(0 < r["calibration_labels"] <= cfg.calibration_frames for r in recs)
    assert recs[-1]["levels"]["calibration_frames"] > 0
    # the report shows the calibration and measures the ranking on the random frames apart
    import json

    from elt.reporting.collect import collect

    rep = json.loads(json.dumps(collect(tmp_path / "tiny")))
    assert rep["iterations"][-1]["levels"]["scale"] == recs[-1]["levels"]["scale"]
    assert rep["correlation"]["unrestricted"]["n"] == sum(r["calibration_labels"] for r in recs)
    # the levels move with the training error: a different error gives a different level
    targets = [r["levels"]["target"] for r in recs]
    assert len(set(np.round(targets, 6))) > 1
