"""Where the campaign stands, derived from the finished iterations' records only.

Stage rule: a stage is done when its accurate ratio reaches its threshold (the stage's own or
``converge.accurate_ratio``) for ``converge.patience`` consecutive iterations, or when it has
used its ``max_iterations``. The campaign is converged when the last stage is done by accuracy;
it ends at ``converge.max_iterations`` iterations in all, when the last stage used its budget,
or when it is stuck (no candidates while not accurate).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


# what each stop reason means, for people (the run's summary and `elt status`)
STOP_TEXT = {
    "converged": "converged",
    "max_iterations": "stopped at converge.max_iterations (not converged)",
    "stage_budget": "stopped: the last stage used its max_iterations (not converged)",
    "stuck": "stopped: stuck (no candidates to label while not accurate; see the last iteration)",
}


def stop_text(reason: str) -> str:
    return STOP_TEXT.get(reason, reason)


def task_phase(kind: str, iteration: int, n_iterations: Optional[int] = None) -> str:
    """A task's place in the campaign in words: the initial labels, iteration N's KIND, or the
    final training / final test (tasks after the last iteration)."""
    if iteration < 0:
        return "initial labels" if kind == "label" else f"initial {kind}"
    if n_iterations is not None and iteration >= n_iterations:
        return {"train": "final training", "explore": "final test MD", "label": "final test labels"}.get(kind, f"final {kind}")
    return f"{kind} of iteration {iteration}"


@dataclass
class Position:
    iteration: int          # the next iteration to run
    stage: int              # its stage index
    streak: int = 0         # consecutive accurate iterations in this stage
    in_stage: int = 0       # iterations already spent in this stage
    done: Optional[str] = None  # converged | max_iterations | stage_budget | stuck | None


def stage_threshold(wf, stage_index: int) -> float:
    st = wf.explore.stages[stage_index]
    return st.accurate_ratio if st.accurate_ratio is not None else wf.converge.accurate_ratio


def is_stuck(counts: dict, n_candidates: int, threshold: float) -> bool:
    """An iteration is stuck when it explored frames but has nothing to label while not accurate:
    every frame failed, or no frame fell between the trust levels. Another iteration would train on
    the same data and explore the same way, so the campaign stops and says so instead of looping."""
    total = sum(counts.values())
    ratio = counts.get("accurate", 0) / total if total else 0.0
    return bool(total and n_candidates == 0 and ratio < threshold)


def advance(wf, pos: Position, record: dict) -> Position:
    """The position after ``record`` (the summary of iteration ``pos.iteration``)."""
    n_stages = len(wf.explore.stages)
    stage = pos.stage
    # an iteration counts as accurate only when its levels can be trusted: auto levels need a
    # calibration of the deviation first (records without the flag: fixed levels)
    accurate = record["accurate_ratio"] >= stage_threshold(wf, stage) and record.get("calibrated", True)
    streak = pos.streak + 1 if accurate else 0
    in_stage = pos.in_stage + 1
    it = pos.iteration + 1
    done = None
    last = stage == n_stages - 1
    if record.get("stuck"):
        done = "stuck"
    elif streak >= wf.converge.patience:
        if last:
            done = "converged"
        else:
            stage, streak, in_stage = stage + 1, 0, 0
    elif in_stage >= wf.explore.stages[stage].max_iterations:
        if last:
            done = "stage_budget"
        else:
            stage, streak, in_stage = stage + 1, 0, 0
    if done is None and it >= wf.converge.max_iterations:
        done = "max_iterations"
    return Position(it, stage, streak, in_stage, done)


def replay(wf, records: list[dict]) -> Position:
    pos = Position(0, 0)
    for r in records:
        if r.get("stage") is not None and r["stage"] != pos.stage:
            # the stage list changed in a compatible way (stages appended); follow the record
            pos = Position(pos.iteration, r["stage"], 0, 0)
        pos = advance(wf, pos, r)
    if pos.done in ("max_iterations",) and pos.iteration < wf.converge.max_iterations:
        pos.done = None
    return pos
