"""Stage schedules that escalate on their own (issue 7): a converged stage hands over to the next,
a stuck iteration ends the campaign with a reason instead of looping."""

from elt.config import parse_workflow
from elt.engine.plan import Position, advance, is_stuck, replay, stage_threshold

BASE = {"system": {"structures": [{"kind": "bulk", "element": "Cu"}]},
        "explore": {"stages": [{"name": "warm", "max_iterations": 10, "accurate_ratio": 0.8},
                               {"name": "hot", "max_iterations": 10},
                               {"name": "hotter", "max_iterations": 10}]},
        "converge": {"accurate_ratio": 0.95, "patience": 2, "max_iterations": 50}}


def rec(ratio, stage, stuck=False):
    return {"accurate_ratio": ratio, "stage": stage, "stuck": stuck}


def test_stage_escalates_after_patience_accurate_iterations_with_its_own_threshold():
    wf = parse_workflow(BASE)
    assert stage_threshold(wf, 0) == 0.8 and stage_threshold(wf, 1) == 0.95
    # 0.85 passes stage 0's own threshold (0.8) but not the global one (0.95)
    pos = replay(wf, [rec(0.85, 0), rec(0.85, 0)])
    assert (pos.stage, pos.in_stage, pos.streak, pos.done) == (1, 0, 0, None)
    # a non-accurate iteration in between resets the streak: no escalation yet
    pos = replay(wf, [rec(0.85, 0), rec(0.5, 0), rec(0.85, 0)])
    assert (pos.stage, pos.streak) == (0, 1)
    # the last stage converging ends the campaign converged
    pos = replay(wf, [rec(0.9, 0), rec(0.9, 0), rec(0.96, 1), rec(0.97, 1), rec(0.99, 2), rec(0.99, 2)])
    assert pos.done == "converged" and pos.iteration == 6 and pos.stage == 2


def test_stuck_iteration_ends_the_campaign_in_any_stage():
    wf = parse_workflow(BASE)
    pos = advance(wf, Position(3, 1, streak=0, in_stage=1), rec(0.0, 1, stuck=True))
    assert pos.done == "stuck"


def test_is_stuck_cases():
    # every frame failed: nothing to label, nothing accurate
    assert is_stuck({"accurate": 0, "candidate": 0, "failed": 40}, 0, 0.95)
    # no frame between the levels while not accurate enough
    assert is_stuck({"accurate": 20, "candidate": 0, "failed": 20}, 0, 0.95)
    # accurate enough and nothing to label: converging, not stuck
    assert not is_stuck({"accurate": 39, "candidate": 0, "failed": 1}, 0, 0.95)
    # candidates to label: progress is possible
    assert not is_stuck({"accurate": 0, "candidate": 3, "failed": 37}, 3, 0.95)
    # no frames at all is not judged here (every walker failing is an error of its own)
    assert not is_stuck({"accurate": 0, "candidate": 0, "failed": 0}, 0, 0.95)


def test_every_stop_reason_has_a_human_message():
    from elt.engine.plan import STOP_TEXT as STATUS_TEXT

    assert {"converged", "max_iterations", "stage_budget", "stuck"} <= set(STATUS_TEXT)
    assert "stuck" in STATUS_TEXT["stuck"]


def test_an_accurate_iteration_at_uncalibrated_auto_levels_does_not_count():
    wf = parse_workflow(BASE)
    uncal = {**rec(1.0, 0), "calibrated": False}
    pos = replay(wf, [uncal, uncal, uncal])
    assert (pos.stage, pos.streak, pos.done) == (0, 0, None)  # all frames "accurate", but nothing proves it
    pos = replay(wf, [uncal, {**rec(1.0, 0), "calibrated": True}, {**rec(0.9, 0), "calibrated": True}])
    assert pos.stage == 1  # once calibrated, accurate iterations escalate as before
