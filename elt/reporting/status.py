"""`elt status`: one screen on where a run stands, from stored state only."""

from __future__ import annotations

import json
import time
from pathlib import Path

from elt.engine.runner import summary_line
from elt.engine.state import holder, open_readonly


def status_dict(run_dir: Path) -> dict:
    with open_readonly(run_dir) as st:
        recs = st.iterations()
        counts = st.count_tasks()
        final = st.get_meta("final")
        test = st.get_meta("test")
        last_task = st.db.execute("SELECT kind, iteration, finished FROM tasks ORDER BY finished DESC LIMIT 1").fetchone()
    return {
        "run_dir": str(Path(run_dir).resolve()),
        "driver": holder(Path(run_dir)),
        "iterations_done": len(recs),
        "last": recs[-1] if recs else None,
        "tasks_done": counts,
        "last_task": {"kind": last_task[0], "iteration": last_task[1], "ago_s": time.time() - last_task[2]} if last_task else None,
        "final": json.loads(final) if final else None,
        "test": json.loads(test) if test else None,
        "records": recs,
    }


def status_text(run_dir: Path) -> str:
    s = status_dict(run_dir)
    lines = [f"run {s['run_dir']}",
             f"driver: {s['driver'] or 'not running'}",
             f"iterations finished: {s['iterations_done']}; tasks finished: "
             + ", ".join(f"{k} {v}" for k, v in sorted(s["tasks_done"].items()))]
    if s["last_task"]:
        lt = s["last_task"]
        lines.append(f"last task finished: {lt['kind']} of iteration {lt['iteration']}, {lt['ago_s']:.0f} s ago")
    for r in s["records"]:
        secs = r.get("seconds", {})
        lines.append(summary_line(r) + " | " + " ".join(f"{k} {v:.0f}s" for k, v in secs.items()))
    if s["final"]:
        lines.append(f"finished: {s['final']['status']}")
    if s["test"] and "rmse_f" in s["test"]:
        lines.append(f"test: force RMSE {s['test']['rmse_f']:.4f} eV/Å on {s['test']['frames']} fresh frames")
    return "\n".join(lines)
