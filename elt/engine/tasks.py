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

import numpy as np

from elt.data.frames import (FRAME_ID, ITERATION, MAX_DEVI_F, PRED_ENERGY, PRED_FORCES, SOURCE, STEP,
                             atomic_write_text, attach_labels, frame_hash, read_frames, write_frames)

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
    out = Path(task_dir) / f"member_{member}.pt"
    metrics = plugin.train_member(frames, train_cfg, list(elements), member, seed, out,
                                  Path(init_path) if init_path else None)
    return {"checkpoint": str(out), "metrics": metrics, "member": member}


# ------------------------------------------------------------------ explore
@functools.lru_cache(maxsize=4)
def _ensemble(kind: str, member_paths: tuple[str, ...], precision: Optional[str]):
    from elt import registry

    return registry.get("potential", kind).load_ensemble([Path(p) for p in member_paths], precision=precision)


def explore_task(task_dir: Path, walker: dict, start, member_paths: list[str], train_kind: str,
                 stage, select: dict, threads: int = 1) -> dict:
    """One walker: MD with the ensemble, deviations of every recorded frame, local selection.

    ``walker``: id, temperature, pressure, seed, iteration. ``select``: lo, hi, elo, ehi,
    max_per_walker, strategy. Writes ``model_devi.out`` (DP-GEN's columns plus devi_e) and
    ``candidates.extxyz``; with strategy ``fps`` also ``candidates_desc.npy`` (one descriptor
    vector per candidate, same order); with metadynamics ``hills.out`` and ``colvar.out``. The MD
    follows the stage's bias/metad (from :func:`elt.sampling.bias.wrap_calculator`); deviations are
    the ensemble's own. The frame that stopped a walker (nan, too_close, energy_spike) counts failed.
    """
    from elt.sampling.bias import find_wrapper, wrap_calculator
    from elt.sampling.md import run_walker
    from elt.sampling.metad import MetadCalculator
    from elt.sampling.select import CANDIDATE, FAILED, choose, classify, counts

    _set_threads(threads)
    pot = _ensemble(train_kind, tuple(member_paths), None)
    calc = wrap_calculator(pot.calculator(), stage, walker["iteration"], walker["temperature"])
    rec = run_walker(start, calc, ensemble=stage.ensemble, temperature=walker["temperature"],
                     pressure=walker.get("pressure"), timestep=stage.timestep, steps=stage.steps,
                     record_every=stage.record_every, friction=stage.friction,
                     min_distance=stage.min_distance,
                     stop_at=select["hi"] if stage.stop_at_failed else None, seed=walker["seed"],
                     max_energy_jump=getattr(stage, "max_energy_jump", None), beyond=stage.past_hi())
    devi = rec.devi_array()
    header = "step max_devi_v min_devi_v avg_devi_v max_devi_f min_devi_f avg_devi_f devi_e"
    table = np.column_stack([np.asarray(rec.steps, dtype=float), devi]) if len(devi) else np.zeros((0, 8))
    np.savetxt(Path(task_dir) / "model_devi.out", table, fmt=["%12d"] + ["%19.6e"] * 7, header=header)
    classes = classify(devi[:, 3], select["lo"], select["hi"], devi[:, 6], select.get("elo"), select.get("ehi"))
    if rec.stopped_on_bad_frame and len(classes):
        classes[-1] = FAILED
    cand = np.flatnonzero(classes == CANDIDATE)
    fps = select.get("strategy") == "fps"
    feats = None
    if fps:
        from elt.sampling.fps import frame_vectors

        feats = frame_vectors(pot, [rec.frames[i] for i in cand])
    if select.get("max_per_walker") and len(cand) > select["max_per_walker"]:
        rng = np.random.default_rng(walker["seed"] + 1)
        keep = choose(devi[cand, 3], select["max_per_walker"], select.get("strategy", "random"), rng, feats)
        cand = cand[keep]
        feats = feats[keep] if fps else None
    metad = find_wrapper(calc, MetadCalculator)
    if metad is not None:
        metad.write_hills(Path(task_dir) / "hills.out")
        metad.write_colvar(Path(task_dir) / "colvar.out", rec.steps, rec.frames)
    frames = []
    cands = []
    # the ensemble's mean prediction on each candidate (before retraining): reports compare it
    # with the label to get the true error of the frames the deviation picked
    preds = pot.predict_many([rec.frames[i] for i in cand]) if len(cand) else []
    for i, p in zip(cand, preds):
        a = rec.frames[i]
        fid = frame_hash(a)
        a.info.update({FRAME_ID: fid, ITERATION: walker["iteration"], SOURCE: walker["id"],
                       STEP: int(rec.steps[i]), MAX_DEVI_F: float(devi[i, 3]),
                       PRED_ENERGY: float(np.mean(p.energies))})
        a.arrays[PRED_FORCES] = np.asarray(p.forces, dtype=np.float64).mean(axis=0)
        frames.append(a)
        cands.append({"index": len(frames) - 1, "step": int(rec.steps[i]), "frame_id": fid,
                      "max_devi_f": float(devi[i, 3]), "devi_e": float(devi[i, 6])})
    write_frames(Path(task_dir) / "candidates.extxyz", frames)
    if getattr(stage, "save_frames", False):
        write_frames(Path(task_dir) / "frames.extxyz", rec.frames)
    if fps:
        np.save(Path(task_dir) / "candidates_desc.npy", feats)
    c = counts(classes)
    return {"walker": walker["id"], "n_frames": int(len(devi)), "counts": c,
            "stop_reason": rec.stop_reason, "steps_done": rec.steps_done, "candidates": cands,
            "beyond_frames": rec.beyond_frames, "restarts": rec.restarts,
            "features_file": str(Path(task_dir) / "candidates_desc.npy") if fps else None,
            "bias": type(calc).__name__ if hasattr(calc, "inner") else None,
            "hills": len(metad.heights) if metad is not None else 0,
            "max_devi_f_max": float(np.nanmax(devi[:, 3])) if len(devi) else None,
            "candidates_file": str(Path(task_dir) / "candidates.extxyz"),
            "model_devi_file": str(Path(task_dir) / "model_devi.out")}


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
                return {"status": "failed", "physics": True, "reason": e.reason, "message": e.message,
                        "attempts": attempts, "workdir": str(task_dir)}
            last = e
            continue
        except Exception as e:  # a bug or an unexpected library error: infrastructure, retried
            last = e
            continue
        labeled = attach_labels(atoms, labels.energy, labels.forces, labels.stress)
        labeled.info.update({k: v for k, v in atoms.info.items()})
        write_frames(Path(task_dir) / "labeled.extxyz", [labeled])
        return {"status": "ok", "file": str(Path(task_dir) / "labeled.extxyz"), "energy": labels.energy,
                "attempts": attempts, "info": _jsonable(labels.info or {})}
    reason = getattr(last, "reason", type(last).__name__)
    msg = getattr(last, "message", None) or "".join(traceback.format_exception_only(type(last), last)).strip()
    return {"status": "failed", "physics": False, "reason": reason, "message": msg, "attempts": attempts,
            "workdir": str(task_dir), "cache": False}


def _jsonable(d: Any):
    try:
        json.dumps(d)
        return d
    except TypeError:
        return json.loads(json.dumps(d, default=str))


def load_labeled(result: dict):
    return read_frames(Path(result["file"]))[0]
