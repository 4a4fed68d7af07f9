"""The science as plain picklable functions, one per task kind; dispatch wraps them at the edge.

Each task runs in its own directory under the run directory and writes ``result.json`` there
(atomically) before it returns; a task whose ``result.json`` exists is not run again (the driver
may have died after the work was done and before it recorded it). Only small JSON results travel
back through Dask; frames and checkpoints stay in files.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

from elt.data.frames import atomic_write_text, attach_labels, read_frames, write_frames
from elt.records import LabelResult, TrainResult

RESULT = "result.json"


def journal(path: Optional[str], event: str, tag: str) -> None:
    """Append one line to the run's execution journal (``RUN_DIR/journal.log``): what ran, where, when.
    An audit trail for users, and how the tests prove that nothing was computed twice."""
    if not path:
        return
    line = json.dumps({"t": time.time(), "event": event, "task": tag, "host": socket.gethostname(),
                       "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def run_in_dir(fn: Callable[..., dict], task_dir: str, *args, journal_file: Optional[str] = None,
               tag: str = "", **kwargs) -> dict:
    """Run ``fn(task_dir, ...)`` unless ``task_dir/result.json`` exists; store its JSON result."""
    d = Path(task_dir)
    res_file = d / RESULT
    if res_file.exists():
        try:
            res = json.loads(res_file.read_text())
            res["reused"] = True
            return res
        except (OSError, ValueError):
            pass  # torn or unreadable: run again
    d.mkdir(parents=True, exist_ok=True)
    journal(journal_file, "start", tag)
    t0 = time.perf_counter()
    result = fn(d, *args, **kwargs)
    result["seconds"] = time.perf_counter() - t0
    result["host"] = socket.gethostname()
    result["pid"] = os.getpid()
    if os.environ.get("SLURM_JOB_ID"):
        result["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    if result.get("cache", True):
        atomic_write_text(res_file, json.dumps(result))
    journal(journal_file, "end" if result.get("status") != "failed" else "failed", tag)
    return result


def _set_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


# ------------------------------------------------------------------ train
def train_task(task_dir: Path, data_files: list[str], train_cfg, elements: list[str], member: int,
               seed: int, init_path: Optional[str]) -> dict:
    from elt import registry

    _set_threads(train_cfg.threads)
    frames = []
    for f in data_files:
        frames.extend(read_frames(Path(f)))
    plugin = registry.get("potential", train_cfg.kind)
    out = Path(task_dir) / plugin.checkpoint_name(member)
    metrics = plugin.train_member(frames, train_cfg, list(elements), member, seed, out,
                                  Path(init_path) if init_path else None)
    return TrainResult(checkpoint=str(out), metrics=metrics, member=member).model_dump(mode="json")


# ------------------------------------------------------------------ explore
@functools.lru_cache(maxsize=4)
def _ensemble(kind: str, member_paths: tuple[str, ...], precision: Optional[str]):
    from elt import registry

    return registry.get("potential", kind).load_ensemble([Path(p) for p in member_paths], precision=precision)


def explore_task(task_dir: Path, walker, start, member_paths: list[str], train_kind: str,
                 stage, levels, threads: int = 1) -> dict:
    """One walker (:class:`elt.records.WalkerSpec`) from ``start``: MD by the stage's explorer
    with the ensemble, deviations of every recorded frame, local selection under ``levels``
    (:class:`elt.records.SelectionLevels`). Files and result: :func:`elt.sampling.walker_output.finish_walker`."""
    [result] = _explore(threads, train_kind, member_paths, stage, levels, [walker], [start], [Path(task_dir)])
    return result


def explore_batch_task(task_dir: Path, walkers: list, starts: list, member_paths: list[str], train_kind: str,
                       stage, levels, threads: int = 1) -> dict:
    """Several walkers in one task (an explorer that batches them, e.g. ``batched``): each walker's
    files in ``task_dir/WALKER_ID/``; the result lists the walkers' results in order."""
    dirs = [Path(task_dir) / w.id for w in walkers]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return {"walkers": _explore(threads, train_kind, member_paths, stage, levels, walkers, starts, dirs)}


def _explore(threads: int, train_kind: str, member_paths: list[str], stage, levels, walkers, starts, dirs) -> list[dict]:
    """The stage's explorer on ``walkers`` in one call, then each walker's files and result in its folder."""
    from elt import registry
    from elt.sampling.walker_output import finish_walker

    _set_threads(threads)
    pot = _ensemble(train_kind, tuple(member_paths), None)
    explorer = registry.get("explorer", stage.explorer.kind)(stage.explorer)
    recs = explorer.run(walkers, starts, pot, stage, levels, dirs)
    return [finish_walker(d, w, rec, pot, levels, save_frames=stage.save_frames).model_dump(mode="json")
            for w, rec, d in zip(walkers, recs, dirs)]


# ------------------------------------------------------------------ label
def label_task(task_dir: Path, atoms, label_cfg, exec_settings, retries: int = 0) -> dict:
    """Label one frame. Physics failures are returned as data (status failed, physics true) and
    cached; infrastructure failures are retried ``retries`` times, then returned without caching
    so that a later resume tries again."""
    from elt import registry
    from elt.errors import CalculationError

    labeler = registry.get("labeler", label_cfg.kind)(label_cfg, exec_settings)
    attempts = 0
    last: Optional[BaseException] = None
    while attempts <= retries:
        attempts += 1
        try:
            labels = labeler.compute(atoms, Path(task_dir))
        except CalculationError as e:
            if e.physics:
                return LabelResult(status="failed", physics=True, reason=e.reason, message=e.message,
                                   attempts=attempts, workdir=str(task_dir)).model_dump(mode="json")
            last = e
            continue
        except Exception as e:  # a bug or an unexpected library error: infrastructure, retried
            last = e
            continue
        labeled = attach_labels(atoms, labels.energy, labels.forces, labels.stress)
        labeled.info.update({k: v for k, v in atoms.info.items()})
        write_frames(Path(task_dir) / "labeled.extxyz", [labeled])
        return LabelResult(status="ok", file=str(Path(task_dir) / "labeled.extxyz"), energy=labels.energy,
                           attempts=attempts, info=_jsonable(labels.info or {})).model_dump(mode="json")
    reason = getattr(last, "reason", type(last).__name__)
    msg = getattr(last, "message", None) or "".join(traceback.format_exception_only(type(last), last)).strip()
    return LabelResult(status="failed", physics=False, reason=reason, message=msg, attempts=attempts,
                       workdir=str(task_dir), cache=False).model_dump(mode="json")


def _jsonable(d: Any):
    try:
        json.dumps(d)
        return d
    except TypeError:
        return json.loads(json.dumps(d, default=str))


def load_labeled(result: dict):
    return read_frames(Path(result["file"]))[0]
