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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from elt.data.frames import atomic_write_text, attach_labels, read_frames, write_frames
from elt.records import LabelResult, SelectionLevels, TrainResult

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


# ------------------------------------------------------------------ the inputs of a task
@dataclass(frozen=True)
class TrainJob:
    """Fit ensemble member ``member`` on the frames of ``data_files``; warm-start from ``init_path``."""

    data_files: list[str]
    config: Any              # the workflow's train section
    elements: list[str]
    member: int
    seed: int
    init_path: Optional[str] = None


@dataclass(frozen=True)
class ExploreJob:
    """Walkers (:class:`elt.records.WalkerSpec`) from their start frames, driven by the ensemble
    of ``members`` (checkpoints of the ``train_kind`` potential), under a stage's settings, with
    local selection under ``levels`` (:class:`elt.records.SelectionLevels`, or its fields)."""

    walkers: list
    starts: list
    members: list[str]
    train_kind: str
    stage: Any               # the stage's section (elt.config.sampling)
    levels: Any
    threads: int = 1

    def __post_init__(self):
        if isinstance(self.levels, dict):
            object.__setattr__(self, "levels", SelectionLevels.model_validate(self.levels))
        if len(self.walkers) != len(self.starts):
            raise ValueError(f"{len(self.walkers)} walkers but {len(self.starts)} start frames")


@dataclass(frozen=True)
class LabelJob:
    """Label one frame by the method of ``config`` (the label section), where ``exec_settings``
    (:class:`elt.records.ExecSettings`) say; infrastructure failures are tried ``retries`` more times."""

    atoms: Any
    config: Any
    exec_settings: Any
    retries: int = 0


# ------------------------------------------------------------------ train
def train_task(task_dir: Path, job: TrainJob) -> dict:
    from elt import registry

    _set_threads(job.config.threads)
    frames = []
    for f in job.data_files:
        frames.extend(read_frames(Path(f)))
    plugin = registry.get("potential", job.config.kind)
    out = Path(task_dir) / plugin.checkpoint_name(job.member)
    metrics = plugin.train_member(frames, job.config, list(job.elements), job.member, job.seed, out,
                                  Path(job.init_path) if job.init_path else None)
    return TrainResult(checkpoint=str(out), metrics=metrics, member=job.member).model_dump(mode="json")


# ------------------------------------------------------------------ explore
@functools.lru_cache(maxsize=4)
def _ensemble(kind: str, member_paths: tuple[str, ...], precision: Optional[str]):
    from elt import registry

    return registry.get("potential", kind).load_ensemble([Path(p) for p in member_paths], precision=precision)


def explore_task(task_dir: Path, job: ExploreJob) -> dict:
    """One walker: MD by the stage's explorer with the ensemble, deviations of every recorded
    frame, local selection under the job's levels. Files and result:
    :func:`elt.sampling.walker_output.finish_walker`."""
    [result] = _explore(job, [Path(task_dir)])
    return result


def explore_batch_task(task_dir: Path, job: ExploreJob) -> dict:
    """Several walkers in one task (an explorer that batches them, e.g. ``batched``): each walker's
    files in ``task_dir/WALKER_ID/``; the result lists the walkers' results in order."""
    dirs = [Path(task_dir) / w.id for w in job.walkers]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return {"walkers": _explore(job, dirs)}


def _explore(job: ExploreJob, dirs: list[Path]) -> list[dict]:
    """The stage's explorer on the job's walkers in one call, then each walker's files and result in its folder."""
    from elt import registry
    from elt.sampling.walker_output import finish_walker

    _set_threads(job.threads)
    pot = _ensemble(job.train_kind, tuple(job.members), None)
    explorer = registry.get("explorer", job.stage.explorer.kind)(job.stage.explorer)
    recs = explorer.run(job.walkers, job.starts, pot, job.stage, job.levels, dirs)
    return [finish_walker(d, w, rec, pot, job.levels, save_frames=job.stage.save_frames).model_dump(mode="json")
            for w, rec, d in zip(job.walkers, recs, dirs)]


# ------------------------------------------------------------------ label
def label_task(task_dir: Path, job: LabelJob) -> dict:
    """Label one frame. Physics failures are returned as data (status failed, physics true) and
    cached; infrastructure failures are retried ``job.retries`` times, then returned without
    caching so that a later resume tries again."""
    from elt import registry
    from elt.errors import CalculationError

    atoms, retries = job.atoms, job.retries
    labeler = registry.get("labeler", job.config.kind)(job.config, job.exec_settings)
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
