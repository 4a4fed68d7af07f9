"""Everything a report shows, gathered from a run directory's stored state only.

Sources: ``state.db`` (iteration records, finished tasks, final meta), the walkers'
``model_devi.out`` files, the labeled frames in ``data/iter_NNN.extxyz`` and ``journal.log``
(which tasks started: the current phase, named as `elt status` names it). Nothing is computed
with the potential (no torch): the true error of a labeled frame compares the ensemble's mean
prediction, stored on the frame by the exploration task (``elt_pred_energy``, ``elt_pred_forces``),
with its label. Works while the driver runs: a partial iteration is reported from its finished
tasks, in the phase that `elt status` shows. The result is a JSON-able dict (no NaN; ``None``
for missing values).
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import numpy as np

from elt.data.frames import FRAME_ID, MAX_DEVI_F, PICK, PRED_ENERGY, PRED_FORCES, SOURCE, labels_of, read_frames
from elt.engine.state import holder, open_readonly
from elt.data.layout import RunLayout, recorded_origin
from elt.data.modeldevi import CLASSES, classify_table, counts, read_model_devi
from elt.reporting.modeldevi import summarize
from elt.reporting.stats import force_errors, spearman
from elt.reporting.status import run_position

REPORT_FORMAT = 1
_T = re.compile(r"-T([0-9.eE+-]+?)(?:-P|-w)")


class Rebase:
    """Paths recorded by a run point into the run directory it had then; a run that was copied or
    moved is read from where it is now (:meth:`elt.data.layout.RunLayout.here`)."""

    def __init__(self, run_dir: Path, old_root: Optional[Path]):
        self.run_dir = Path(run_dir).resolve()
        self.layout = RunLayout(self.run_dir, old_root)

    def __call__(self, p) -> Path:
        return self.layout.here(p)

    @classmethod
    def detect(cls, run_dir: Path, records: list[dict], tasks: list[dict]) -> "Rebase":
        return cls(run_dir, recorded_origin(records, tasks))


def _clean(x: Any) -> Any:
    """JSON-able copy: NaN/inf become None, numpy scalars plain numbers, keys strings."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _rmse(metrics: Optional[dict]) -> dict:
    out = {}
    for split in ("train", "valid"):
        m = (metrics or {}).get(split) or {}
        if m:
            out[split] = {"e": m.get("rmse_e"), "f": m.get("rmse_f")}
    return out


def _walker_of_task(res: dict, rebase: Rebase) -> dict:
    f = rebase(res["model_devi_file"]) if res.get("model_devi_file") else None
    return {
        "walker": res.get("walker"),
        "task_dir": str(f.parent) if f else None,
        "model_devi_file": str(f) if f else None,
        "frames": res.get("n_frames"),
        **{k: (res.get("counts") or {}).get(k) for k in ("accurate", "candidate", "failed")},
        "candidates": len(res.get("candidates") or []),
        "candidate_ids": [c["frame_id"] for c in res.get("candidates") or []],
        "stop_reason": res.get("stop_reason"),
        "max_devi_f_max": res.get("max_devi_f_max"),
        "seconds": res.get("seconds"),
    }


def _attach_files(walkers: list[dict], levels: Optional[dict]) -> Optional[dict]:
    """Read each walker's model_devi.out; per-walker and iteration-wide statistics from the files.
    ``levels`` (lo, hi and, when the run used them, elo, ehi) classify the frames as the engine did."""
    tables = []
    classes = Counter()
    for w in walkers:
        p = Path(w["model_devi_file"]) if w.get("model_devi_file") else None
        if p is None or not p.is_file():
            w["file"] = None
            continue
        t = read_model_devi(p)
        tables.append(t)
        w["file"] = summarize(t) or {"frames": 0}
        if levels is not None:
            w["file"]["classes"] = counts(classify_table(t, **levels, stop_reason=w.get("stop_reason")))
            classes.update(w["file"]["classes"])
    if not tables:
        return None
    allt = np.concatenate(tables)
    out = summarize(allt) or {"frames": 0}
    out["walkers_with_file"] = len(tables)
    if levels is not None:
        out["classes"] = {k: classes.get(k, 0) for k in CLASSES}
    return out


def _labeled(data_file: Optional[Path], iteration: int) -> list[dict]:
    """Labeled frames of one iteration with their deviation and true error (prediction before
    retraining vs label), when the frames carry the prediction."""
    if data_file is None or not data_file.is_file():
        return []
    out = []
    for a in read_frames(data_file):
        e_ref, f_ref, _ = labels_of(a)
        row = {"iteration": iteration, "frame_id": a.info.get(FRAME_ID), "walker": a.info.get(SOURCE),
               "atoms": len(a), "max_devi_f": a.info.get(MAX_DEVI_F), "energy": e_ref,
               "sample": a.info.get(PICK, "candidate"),
               "force_error_max": None, "force_rmse": None, "energy_error_per_atom": None}
        if PRED_FORCES in a.arrays:
            row["force_error_max"], row["force_rmse"] = force_errors(a.arrays[PRED_FORCES], f_ref)
        if PRED_ENERGY in a.info:
            row["energy_error_per_atom"] = (float(a.info[PRED_ENERGY]) - e_ref) / len(a)
        out.append(row)
    return out


def _per_walker_labels(walkers: list[dict], labeled: list[dict], failures: list[dict]) -> None:
    by_src = Counter(r["walker"] for r in labeled)
    failed_ids = {f.get("frame_id") for f in failures}
    for w in walkers:
        w["labeled"] = by_src.get(w["walker"], 0)
        w["labels_failed"] = sum(1 for fid in w.pop("candidate_ids") if fid in failed_ids)


def _failure(f: dict, rebase: Rebase) -> dict:
    return {"frame_id": f.get("frame_id"), "reason": f.get("reason"), "message": f.get("message"),
            "physics": f.get("physics"), "task_dir": str(rebase(f["workdir"])) if f.get("workdir") else None}


def _finished_row(r: dict, tasks_by_dir: dict[str, dict], rebase: Rebase) -> dict:
    it = r["iteration"]
    walkers = []
    for name in r.get("explore_tasks") or []:
        res = tasks_by_dir.get(name)
        if res is not None:
            walkers.append(_walker_of_task(res, rebase))
        else:  # not in this run's task table (a branched run): the files alone, if they are here
            d = RunLayout(rebase.run_dir).explore_dir(it, name)
            walkers.append({"walker": name.rsplit("-", 1)[0], "task_dir": str(d),
                            "model_devi_file": str(d / "model_devi.out"), "candidate_ids": []})
    levels = None
    if r.get("trust_lo") is not None and r.get("trust_hi") is not None:
        levels = {"lo": r["trust_lo"], "hi": r["trust_hi"],
                  "elo": r.get("energy_trust_lo"), "ehi": r.get("energy_trust_hi")}
    devi = _attach_files(walkers, levels)
    data_file = rebase(r["data_file"]) if r.get("data_file") else None
    labeled = _labeled(data_file, it)
    failures = [_failure(f, rebase) for f in r.get("failures") or []]
    _per_walker_labels(walkers, labeled, failures)
    return {
        "iteration": it, "status": "finished", "phase": None,
        "stage": r.get("stage"), "stage_name": r.get("stage_name"),
        "temperatures": r.get("temperatures"), "pressures": r.get("pressures"),
        "trust_lo": r.get("trust_lo"), "trust_hi": r.get("trust_hi"),
        # auto levels: how they were derived (calibration scale c, target error) and whether trusted
        "levels": r.get("levels"), "calibrated": r.get("calibrated", True),
        "accurate_threshold": r.get("accurate_threshold"),
        "walkers": r.get("walkers", len(walkers)), "walker_failures": r.get("walker_failures") or [],
        "frames": r.get("frames"), "accurate": r.get("accurate"), "candidate": r.get("candidate"),
        "failed": r.get("failed"), "accurate_ratio": r.get("accurate_ratio"),
        "candidate_ratio": r.get("candidate_ratio"), "failed_ratio": r.get("failed_ratio"),
        "stop_reasons": r.get("stop_reasons") or {},
        "candidates": r.get("candidates"), "selected": r.get("selected"),
        "labels_ok": r.get("labels_ok"), "labels_failed": r.get("labels_failed"),
        "failure_reasons": dict(Counter(f["reason"] for f in failures)),
        "dataset_size": r.get("dataset_size"), "rmse": _rmse(r.get("train")),
        "seconds": r.get("seconds") or {}, "finished": r.get("finished"),
        "data_file": str(data_file) if data_file else None,
        "devi": devi, "walker_list": walkers, "failures": failures, "labeled": labeled,
        "stuck": r.get("stuck"),
    }


def _current_row(where: dict, tasks: list[dict], prev: Optional[dict], rebase: Rebase) -> dict:
    """The iteration in progress: its iteration and phase as `elt status` names them
    (:func:`elt.reporting.status.current_position`, the one rule: tasks finished in the state and
    tasks started in the journal), its numbers from the tasks finished so far."""
    it = where["iteration"]
    mine = [t for t in tasks if t["iteration"] == it]
    walkers = []
    for t in mine:
        res = t.get("result") or {}
        if t["kind"] != "explore" or t["status"] != "done" or not res.get("model_devi_file"):
            continue
        f = rebase(res["model_devi_file"])
        if f.parent.parent.name != "explore" or not f.is_file():  # the final test MD, or another run's
            continue
        walkers.append(_walker_of_task(res, rebase))
    labels = [t for t in mine if t["kind"] == "label"]
    trains = [t for t in mine if t["kind"] == "train"]
    phase = where["phase"]
    devi = _attach_files(walkers, None)
    counts = {k: sum(w.get(k) or 0 for w in walkers) for k in ("accurate", "candidate", "failed")}
    total = sum(counts.values())
    failures = [_failure({**(t["result"] or {}), "frame_id": (t["result"] or {}).get("frame_id")}, rebase)
                for t in labels if t["status"] != "done"]
    _per_walker_labels(walkers, [], failures)
    temps = sorted({float(m.group(1)) for w in walkers if (m := _T.search(w["walker"] or ""))})
    return {
        "iteration": it, "status": "in progress", "phase": phase,
        "stage": None, "stage_name": None, "temperatures": temps or None, "pressures": None,
        "trust_lo": None, "trust_hi": None, "walkers": len(walkers), "walker_failures": [],
        "frames": total, **counts,
        "accurate_ratio": counts["accurate"] / total if total else None,
        "candidate_ratio": counts["candidate"] / total if total else None,
        "failed_ratio": counts["failed"] / total if total else None,
        "stop_reasons": dict(Counter(w["stop_reason"] for w in walkers)),
        "candidates": sum(w["candidates"] for w in walkers), "selected": None,
        "labels_ok": sum(1 for t in labels if t["status"] == "done"),
        "labels_failed": len(failures),
        "failure_reasons": dict(Counter(f["reason"] for f in failures)),
        "dataset_size": prev.get("dataset_size") if prev else None,
        "rmse": _rmse(_mean_train_metrics(trains)), "seconds": {}, "finished": None,
        "data_file": None, "devi": devi, "walker_list": walkers, "failures": failures, "labeled": [],
        "stuck": None, "train_tasks_done": len(trains),
    }


def _mean_train_metrics(trains: list[dict]) -> dict:
    out: dict = {}
    for split in ("train", "valid"):
        vals = [((t["result"] or {}).get("metrics") or {}).get(split) for t in trains if t["status"] == "done"]
        vals = [v for v in vals if v]
        if vals:
            out[split] = {k: float(np.mean([v[k] for v in vals if k in v])) for k in ("rmse_e", "rmse_f")
                          if any(k in v for v in vals)}
    return out


def correlation(labeled: list[dict]) -> dict:
    """Spearman rank correlation of the max force deviation with the true max force error of the
    labeled frames (all iterations, and per iteration)."""
    pairs = [(r["iteration"], r["max_devi_f"], r["force_error_max"]) for r in labeled
             if r.get("max_devi_f") is not None and r.get("force_error_max") is not None]
    per = {}
    for it in sorted({p[0] for p in pairs}):
        sub = [p for p in pairs if p[0] == it]
        per[str(it)] = {"n": len(sub), "spearman": spearman([p[1] for p in sub], [p[2] for p in sub])}
    rand = [(r["max_devi_f"], r["force_error_max"]) for r in labeled if r.get("sample") == "calibration"
            and r.get("max_devi_f") is not None and r.get("force_error_max") is not None]
    return {"n": len(pairs), "spearman": spearman([p[1] for p in pairs], [p[2] for p in pairs]),
            "per_iteration": per,
            "without_prediction": sum(1 for r in labeled if r.get("force_error_max") is None),
            # candidates lie between the trust levels: a range-restricted sample that understates the
            # ranking; the calibration frames are drawn at random from all explored frames
            "unrestricted": {"n": len(rand), "spearman": spearman([p[0] for p in rand], [p[1] for p in rand])}}


def collect(run_dir: Path) -> dict:
    """The report of a run as a JSON-able dict (see the module docstring)."""
    import json

    run_dir = Path(run_dir).resolve()
    with open_readonly(run_dir) as st:
        records = st.iterations()
        tasks = st.tasks()
        final = st.get_meta("final")
        test = st.get_meta("test")
        ending = st.get_meta("ending")
        branched = st.get_meta("branched_from")
    rebase = Rebase.detect(run_dir, records, tasks)
    tasks_by_dir = {}  # a walker's folder under iter_NNN/explore/ -> its result
    for t in tasks:
        res = t.get("result") or {}
        if t["kind"] != "explore":
            continue
        for w in res.get("walkers") or [res]:  # a batch task ran several walkers, each in TASK/WALKER
            if w.get("model_devi_file"):
                d = Path(w["model_devi_file"]).parent
                key = d.name if "walkers" not in res else f"{d.parent.name}/{d.name}"
                tasks_by_dir[key] = {**w, "seconds": res.get("seconds")}
    rows = [_finished_row(r, tasks_by_dir, rebase) for r in records]
    current = finishing = None
    if not final:
        where = run_position(run_dir, records, tasks, ending, time.time())
        if where["ending"]:  # the loop has ended: no iteration in progress, the final training or test
            finishing = {"phase": where["phase"], "status": where["ending"]}
        else:
            current = _current_row(where, tasks, records[-1] if records else None, rebase)
    labeled = [x for r in rows for x in r["labeled"]]
    fin = json.loads(final) if final else None
    drv = holder(run_dir)
    report = {
        "format": REPORT_FORMAT,
        "units": UNITS,
        "run_dir": str(run_dir),
        "state": ("finished" if fin else "running" if drv else "stopped"),
        "driver": drv,
        "final": {"status": fin.get("status"), "rmse": _rmse(fin.get("metrics")),
                  "members": [str(rebase(m)) for m in fin.get("members") or []]} if fin else None,
        "test": json.loads(test) if test else None,
        "branched_from": json.loads(branched) if branched else None,
        "iterations": rows,
        "current": current,
        "finishing": finishing,
        "correlation": correlation(labeled),
        "tasks_done": dict(Counter(t["kind"] for t in tasks if t["status"] == "done")),
        "tasks_failed": dict(Counter(t["kind"] for t in tasks if t["status"] != "done")),
    }
    return _clean(report)


# the units of every number in the report, by the suffix or name of its key
UNITS = {
    "force": "eV/Å (rmse_f, rmse.f, max_devi_f and every *_devi_f, trust_lo, trust_hi, force_error_max, force_rmse, median, p90, max)",
    "energy per atom": "eV/atom (rmse_e, rmse.e, devi_e, energy_trust_lo, energy_trust_hi, energy_error_per_atom)",
    "energy": "eV (energy)",
    "temperature": "K (temperatures, temperature)",
    "pressure": "GPa (pressures)",
    "time": "s (seconds and every *_s)",
    "ratio": "fraction 0-1 of the explored frames (accurate_ratio, candidate_ratio, failed_ratio)",
}


def iteration_row(report: dict, iteration: int) -> Optional[dict]:
    for r in report["iterations"] + ([report["current"]] if report.get("current") else []):
        if r["iteration"] == iteration:
            return r
    return None
