"""`elt status`: one screen on where a run stands, from stored state only (works while it runs).

Sources: ``state.db`` (finished iterations and tasks), ``journal.log`` (which tasks started and
ended, and when) and the driver lock (is a driver running). The time left in the current iteration
is estimated from the phase times of the last finished iterations.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from elt.data.layout import RunLayout
from elt.engine.plan import stop_text, task_phase
from elt.engine.runner import summary_line
from elt.engine.state import holder, open_readonly

PHASES = ("train", "explore", "select", "label")
RECENT = 3  # phase times are averaged over this many last iterations


def read_journal(run_dir: Path) -> list[dict]:
    """Events of ``RUN_DIR/journal.log`` (t, event, task = 'kind:id', host, pid); torn lines skipped."""
    p = RunLayout(run_dir).journal
    out = []
    if p.exists():
        for line in p.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def mean_phase_seconds(records: list[dict], recent: int = RECENT) -> dict[str, float]:
    """Mean seconds of each phase over the last ``recent`` finished iterations."""
    last = [r.get("seconds") or {} for r in records[-recent:]]
    out = {}
    for p in PHASES:
        vals = [s[p] for s in last if p in s]
        if vals:
            out[p] = sum(vals) / len(vals)
    return out


def estimate_remaining(means: dict[str, float], phase: str, phase_elapsed: float) -> Optional[float]:
    """Seconds left in the iteration: what the current phase usually takes beyond its elapsed time,
    plus the usual time of the phases after it. None without past iterations."""
    if not means or phase not in PHASES:
        return None
    i = PHASES.index(phase)
    left = max(0.0, means.get(phase, 0.0) - phase_elapsed)
    return left + sum(means.get(p, 0.0) for p in PHASES[i + 1:])


def current_position(records: list[dict], tasks: list[dict], events: list[dict], now: float,
                     ending: Optional[dict] = None) -> dict:
    """The iteration in progress: its phase, tasks finished per kind, tasks running (started in the
    journal and not ended), elapsed times and the estimate of the time left. ``ending`` (the state's
    ``ending`` meta: the loop's stop reason, set before the final training) makes the phase
    ``final training`` or ``final test`` and ``ending`` the stop reason; no iteration is in progress then."""
    it = records[-1]["iteration"] + 1 if records else 0
    t0 = records[-1].get("finished") if records else None
    if t0 is None:
        starts = [e["t"] for e in events if e.get("event") == "start"]
        t0 = min(starts) if starts else None
    done = {}
    for t in tasks:
        if t["iteration"] == it:
            done[t["kind"]] = done.get(t["kind"], 0) + 1
    # the iteration's tasks start with its training; earlier events (the initial labels before
    # iteration 0) belong to what came before
    train_starts = [e["t"] for e in events if e.get("event") == "start" and str(e.get("task", "")).startswith("train:")
                    and (t0 is None or e["t"] >= t0)]
    since = min(train_starts) if train_starts else t0
    recent = [e for e in events if since is None or e["t"] >= since]
    started = {}
    ended = set()
    for e in recent:
        kind = str(e.get("task", "")).split(":", 1)[0]
        if e.get("event") == "start":
            started.setdefault(kind, []).append(e)
        else:
            ended.add(e.get("task"))
    phase = "train"
    if not records and not done.get("train") and not train_starts:
        phase = "initial data"  # labeling the initial frames, before the first training
        started = {k: v for k, v in started.items() if k == "label"}
    else:
        for k in ("label", "explore"):
            if done.get(k) or started.get(k):
                phase = k
                break
    phase_t0 = min((e["t"] for e in started.get(phase if phase != "initial data" else "label", [])), default=since)
    running = {}
    for k, evs in started.items():
        n = len({e["task"] for e in evs} - ended)
        if n:
            running[k] = n
    means = mean_phase_seconds(records)
    phase_elapsed = now - phase_t0 if phase_t0 is not None else 0.0
    eta = None if ending else estimate_remaining(means, phase, phase_elapsed)
    if ending:  # the tasks after the last iteration: its final training, then the test MD and labels
        phase = "final training" if phase == "train" else "final test"
    return {"iteration": it, "phase": phase, "tasks_done": done, "running": running,
            "elapsed_s": (now - since) if since is not None else None, "phase_elapsed_s": phase_elapsed,
            "eta_s": eta, "phase_means_s": means, "ending": (ending or {}).get("status"),
            "stage": records[-1].get("stage") if records else 0}


def run_position(run_dir: Path, records: list[dict], tasks: list[dict], ending_meta: Optional[str],
                 now: float) -> dict:
    """:func:`current_position` of a run: its journal, and the state's ``ending`` meta as stored."""
    return current_position(records, tasks, read_journal(Path(run_dir)), now,
                            json.loads(ending_meta) if ending_meta else None)


def status_dict(run_dir: Path, now: Optional[float] = None) -> dict:
    now = time.time() if now is None else now
    with open_readonly(run_dir) as st:
        recs = st.iterations()
        counts = st.count_tasks()
        tasks = st.tasks()
        final = st.get_meta("final")
        test = st.get_meta("test")
        ending = st.get_meta("ending")
        last_task = st.db.execute("SELECT kind, iteration, finished FROM tasks ORDER BY finished DESC LIMIT 1").fetchone()
    driver = holder(Path(run_dir))
    cur = None
    if not final:
        cur = run_position(run_dir, recs, tasks, ending, now)
        if not driver:
            cur["running"] = {}  # nothing runs without a driver: started tasks were interrupted
            cur["eta_s"] = None
    return {
        "run_dir": str(Path(run_dir).resolve()),
        "driver": driver,
        "iterations_done": len(recs),
        "last": recs[-1] if recs else None,
        "current": cur,
        "tasks_done": counts,
        "last_task": {"kind": last_task[0], "iteration": last_task[1], "ago_s": now - last_task[2]} if last_task else None,
        "phase_seconds": {r["iteration"]: r.get("seconds", {}) for r in recs},
        "final": json.loads(final) if final else None,
        "test": json.loads(test) if test else None,
        "records": recs,
    }


def _dur(s: Optional[float]) -> str:
    if s is None:
        return "unknown"
    s = max(0.0, s)
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def status_text(run_dir: Path) -> str:
    s = status_dict(run_dir)
    lines = [f"run {s['run_dir']}",
             f"driver: {s['driver'] or 'not running'}",
             f"iterations finished: {s['iterations_done']}; tasks finished: "
             + ", ".join(f"{k} {v}" for k, v in sorted(s["tasks_done"].items()))]
    cur = s["current"]
    if cur:
        if cur["ending"]:
            where = f"{cur['phase']} (the loop has ended: {stop_text(cur['ending'])})"
        elif cur["phase"] == "initial data":
            where = "initial data (labeling the first frames)"
        else:
            where = f"iteration {cur['iteration']}, phase {cur['phase']}"
        last = s["last"]
        if last is not None and not cur["ending"]:
            where += f" (iteration {last['iteration']} ran stage {last.get('stage')}" + (
                f" '{last['stage_name']}'" if last.get("stage_name") and last["stage_name"] != f"stage {last.get('stage')}" else "") + ")"
        lines.append(f"current: {where}"
                     + (f" for {_dur(cur['phase_elapsed_s'])}" if s["driver"] else " (interrupted; `elt run` resumes)"))
        if cur["tasks_done"]:
            lines.append(("  finished since the loop ended: " if cur["ending"] else "  finished in this iteration: ") + ", ".join(f"{k} {v}" for k, v in sorted(cur["tasks_done"].items())))
        if cur["running"]:
            lines.append("  running: " + ", ".join(f"{k} {v}" for k, v in sorted(cur["running"].items())))
        if s["driver"] and not cur["ending"]:
            lines.append(f"  estimated time to the end of the iteration: {_dur(cur['eta_s'])}"
                         + (" (from the phase times of the last iterations)" if cur["eta_s"] is not None else
                            " (no finished iteration to estimate from)"))
    if s["last_task"]:
        lt = s["last_task"]
        lines.append(f"last task finished: {task_phase(lt['kind'], lt['iteration'], s['iterations_done'])}, {_dur(lt['ago_s'])} ago")
    for r in s["records"]:
        secs = r.get("seconds", {})
        lines.append(summary_line(r) + " | " + " ".join(f"{k} {v:.0f}s" for k, v in secs.items()))
    if s["final"]:
        lines.append(f"finished: {stop_text(s['final']['status'])}")
    if s["test"] and "rmse_f" in s["test"]:
        lines.append(f"test: force RMSE {s['test']['rmse_f']:.4f} eV/Å on {s['test']['frames']} fresh frames")
    return "\n".join(lines)
