from elt.config import parse_workflow
from elt.engine.plan import Position, advance, replay

BASE = {"system": {"structures": [{"kind": "bulk", "element": "Cu"}]},
        "explore": {"stages": [{"max_iterations": 2}, {"max_iterations": 3, "accurate_ratio": 0.9}]},
        "converge": {"accurate_ratio": 0.95, "patience": 2, "max_iterations": 20}}


def rec(ratio, **kw):
    return {"accurate_ratio": ratio, **kw}


def test_stage_advances_on_budget_then_converges_with_patience():
    wf = parse_workflow(BASE)
    pos = Position(0, 0)
    pos = advance(wf, pos, rec(0.5))
    assert (pos.stage, pos.done) == (0, None)
    pos = advance(wf, pos, rec(0.5))
    assert (pos.stage, pos.iteration) == (1, 2)  # budget of stage 0 used
    pos = advance(wf, pos, rec(0.91))
    assert pos.done is None and pos.streak == 1
    pos = advance(wf, pos, rec(0.92))
    assert pos.done == "converged" and pos.iteration == 4


def test_accurate_stage_advances_early_and_last_stage_budget_ends():
    wf = parse_workflow(BASE)
    pos = replay(wf, [rec(0.99, stage=0), rec(0.99, stage=0)])
    assert pos.stage == 1
    pos = replay(wf, [rec(0.99, stage=0), rec(0.99, stage=0), rec(0.1, stage=1), rec(0.1, stage=1), rec(0.1, stage=1)])
    assert pos.done == "stage_budget"


def test_max_iterations_and_raising_it_continues():
    data = {**BASE, "converge": {**BASE["converge"], "max_iterations": 1}}
    pos = replay(parse_workflow(data), [rec(0.1, stage=0)])
    assert pos.done == "max_iterations"
    pos = replay(parse_workflow(BASE), [rec(0.1, stage=0)])
    assert pos.done is None and pos.iteration == 1


def test_stuck_is_detected():
    wf = parse_workflow(BASE)
    assert advance(wf, Position(0, 0), rec(0.0, stuck=True)).done == "stuck"
