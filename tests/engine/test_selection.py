"""The selection policy (elt.engine.selection) on typed walker results, without a cluster; and the
iteration record the state stores."""

import numpy as np
import pytest
from pydantic import ValidationError

from elt.config import parse_workflow
from elt.engine.selection import calibration_picks, choose_labels, gather, iteration_levels, stream_picks
from elt.records import Candidate, ExploreResult, IterationRecord

BASE = {
    "name": "sel", "seed": 5,
    "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}]},
    "explore": {"stages": [{"temperatures": [300]}]},
    "select": {"trust_lo": 0.05, "trust_hi": 0.5, "max_candidates": 4},
}


def wf_of(**select):
    return parse_workflow({**BASE, "select": {**BASE["select"], **select}})


def result(name: str, devs, calib=(), failed=0) -> ExploreResult:
    cands = [Candidate(index=i, step=10 * i, frame_id=f"{name}-{i}", max_devi_f=d, devi_e=0.0) for i, d in enumerate(devs)]
    cal = [Candidate(index=len(devs) + i, step=5 + 10 * i, frame_id=f"{name}-c{i}", max_devi_f=d, devi_e=0.0)
           for i, d in enumerate(calib)]
    return ExploreResult(walker=name, n_frames=len(devs) + len(calib) + failed + 1,
                         counts={"accurate": len(calib) + 1, "candidate": len(devs), "failed": failed},
                         stop_reason="completed", steps_done=100, candidates=cands, calibration=cal,
                         candidates_file=f"{name}/candidates.extxyz", model_devi_file=f"{name}/model_devi.out")


def test_gather_pools_candidates_and_names_failed_walkers():
    rs = [result("w0", [0.1, 0.2], failed=1), None, result("w2", [0.3])]
    g = gather(rs, ["w0", "w1", "w2"], [None, "boom", None])
    assert g.counts == {"accurate": 2, "candidate": 3, "failed": 1}
    assert g.stop_reasons == {"completed": 2}
    assert [(p.walker, p.devi) for p in g.pool] == [(0, 0.1), (0, 0.2), (2, 0.3)]
    assert g.failures == [{"walker": "w1", "message": "boom"}]


def test_choose_labels_respects_the_budget_and_is_deterministic():
    rs = [result(f"w{k}", list(np.linspace(0.06, 0.4, 5) + 0.01 * k)) for k in range(3)]
    g = gather(rs, ["w0", "w1", "w2"], [None] * 3)
    wf = wf_of(strategy="highest")
    lv, _ = iteration_levels(wf, 0, None, (np.zeros(0), np.zeros(0)))
    chosen, pool, lv2 = choose_labels(wf, g, lv, 0, None)
    assert len(chosen) == 4 and len(pool) == 15 and lv2 == lv
    devs = sorted((p.devi for p in g.pool), reverse=True)[:4]
    assert sorted((p.devi for p in chosen), reverse=True) == devs  # highest: the 4 largest deviations
    again, _, _ = choose_labels(wf_of(strategy="random"), g, lv, 0, None)
    same, _, _ = choose_labels(wf_of(strategy="random"), g, lv, 0, None)
    other, _, _ = choose_labels(wf_of(strategy="random"), g, lv, 1, None)
    assert again == same and again != other  # the seed follows the iteration


def test_adaptive_lo_reclassifies_the_pool_and_caps_per_walker():
    rs = [result(f"w{k}", [0.01, 0.02, 0.03, 0.2 + k * 0.01, 0.3 + k * 0.01]) for k in range(2)]
    g = gather(rs, ["w0", "w1"], [None, None])
    wf = wf_of(adaptive_lo={"candidates": 3}, max_per_walker=1, max_candidates=10)
    lv, _ = iteration_levels(wf, 0, None, (np.zeros(0), np.zeros(0)))
    assert lv.lo == 0.0 and lv.max_per_walker is None  # walkers keep everything below hi
    chosen, pool, lv2 = choose_labels(wf, g, lv, 0, None)
    assert lv2.lo > 0.03 and g.counts["candidate"] == 3 and g.counts["accurate"] == 7
    assert sorted(p.walker for p in pool) == [0, 1]  # one per walker after the cap
    assert len(chosen) == 2


def test_auto_levels_follow_the_training_error_and_ask_for_calibration_frames():
    wf = wf_of(trust_lo="auto", trust_hi="auto")
    lv, derived = iteration_levels(wf, 0, {"train": {"rmse_f": 0.05}}, (np.zeros(0), np.zeros(0)))
    lv2, _ = iteration_levels(wf, 0, {"train": {"rmse_f": 0.08}}, (np.zeros(0), np.zeros(0)))
    assert derived is not None and derived["scale"] is None  # no calibration yet
    assert lv.calibration == wf.select.auto.calibration_frames > 0
    assert lv2.lo >= lv.lo and lv.lo < lv.hi
    fixed, none = iteration_levels(wf_of(), 0, None, (np.zeros(0), np.zeros(0)))
    assert none is None and (fixed.lo, fixed.hi, fixed.calibration) == (0.05, 0.5, 0)


def test_calibration_picks_leave_out_known_frames_and_draw_the_asked_number():
    wf = wf_of(trust_lo="auto", trust_hi="auto")
    want = wf.select.auto.calibration_frames
    rs = [result("w0", [0.1], calib=[0.01, 0.02, 0.03]), result("w1", [], calib=[0.04])]
    picks = calibration_picks(wf, rs, 0, {"w0-c0"})
    assert len(picks) == min(want, 3)
    assert all(p.candidate.frame_id != "w0-c0" for p in picks)
    assert calibration_picks(wf, rs, 0, {"w0-c0"}) == picks
    assert calibration_picks(wf, [None], 0, set()) == []


def test_stream_picks_take_the_walkers_share_of_the_budget():
    wf = wf_of(stream=True, max_candidates=5)
    r = result("w0", [0.1, 0.2, 0.3, 0.4])
    idx = stream_picks(wf, r, "w0", 0, n_walkers=3)
    assert len(idx) == 2 and len(set(idx)) == 2  # ceil(5 / 3)
    assert stream_picks(wf, r, "w0", 0, 3) == idx
    assert stream_picks(wf, None, "w0", 0, 3) == []


def _record(**over) -> dict:
    rec = dict(iteration=0, stage=0, stage_name="s", temperatures=[300], accurate_threshold=0.9, walkers=1,
               frames=3, accurate=1, candidate=1, failed=1, accurate_ratio=1 / 3, candidate_ratio=1 / 3,
               failed_ratio=1 / 3, stop_reasons={"completed": 1}, candidates=1, selected=1, labels_ok=1,
               labels_failed=0, failures=[], dataset_size=5, train={}, members=["m0.pt", "m1.pt"],
               explore_tasks=["w0-abc"], data_file="data/iter_000.extxyz")
    rec.update(over)
    return rec


def test_iteration_record_reads_older_rows_and_refuses_unknown_keys():
    old = _record()  # a row written before levels/calibrated/label_tasks existed
    r = IterationRecord.model_validate(old)
    assert r.calibrated is True and r.levels is None and r.label_tasks is None
    stored = r.stored()
    assert stored["temperatures"] == [300] and isinstance(stored["temperatures"][0], int)
    assert IterationRecord.model_validate(stored) == r
    with pytest.raises(ValidationError, match="extra"):
        IterationRecord.model_validate(_record(acuracy=1.0))
