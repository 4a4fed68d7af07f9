"""The batched exploration task: many walkers in one task, one ensemble call per MD step.

:func:`explore_batch_task` is the batched counterpart of :func:`elt.engine.tasks.explore_task`:
it builds each walker's bias chain the same way (:func:`~elt.sampling.bias.wrap_calculator`),
runs all walkers with :func:`~elt.sampling.batched.run_batch`, and hands each walker's record to
``write_outputs`` (the per-walker post-processing of explore_task: model_devi.out, candidates,
hills) in the walker's own directory. :func:`split_batches` decides which walkers share a task.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Optional, Sequence

WalkerOutputs = Callable[..., dict]  # (walker_dir, walker, record, calc, pot, select) -> JSON-able dict


def split_batches(sizes: Sequence[int], workers: int = 1, max_atoms: int = 4096,
                  max_walkers: Optional[int] = None) -> list[list[int]]:
    """Walker indices grouped into batches: at most ``max_atoms`` atoms and ``max_walkers``
    walkers per batch, and at least ``workers`` batches when there are that many walkers (so every
    worker gets one). Walkers keep their order inside a batch."""
    n = len(sizes)
    if n == 0:
        return []
    per = math.ceil(n / max(1, min(workers, n)))
    if max_walkers is not None:
        per = min(per, max_walkers)
    batches, cur, atoms = [], [], 0
    for i, s in enumerate(sizes):
        if cur and (len(cur) >= per or atoms + s > max_atoms):
            batches.append(cur)
            cur, atoms = [], 0
        cur.append(i)
        atoms += s
    batches.append(cur)
    return batches


def explore_batch_task(task_dir: Path, walkers: list[dict], starts: list, member_paths: list[str],
                       train_kind: str, stage, select: dict, threads: int = 1, device: str = "cpu",
                       propagate: str = "mean", skin: float = 1.0,
                       write_outputs: Optional[WalkerOutputs] = None) -> dict:
    """All ``walkers`` (dicts as for explore_task: id, temperature, pressure, seed, iteration) from
    ``starts`` in one batched MD. With ``write_outputs`` each walker's outputs go to
    ``task_dir/<walker id>/`` and the result is ``{"walkers": [their results]}``; without it the
    result also carries the raw ``records`` and bias ``calcs`` (in walker order, not JSON-able)."""
    from elt.engine.tasks import _ensemble, _set_threads
    from elt.sampling.batched import run_batch
    from elt.sampling.bias import wrap_calculator

    _set_threads(threads)
    pot = _ensemble(train_kind, tuple(member_paths), None)
    calcs = [wrap_calculator(pot.calculator(), stage, w["iteration"], w["temperature"]) for w in walkers]
    biases = [c if hasattr(c, "inner") else None for c in calcs]
    records = run_batch(list(starts), walkers, pot, ensemble=stage.ensemble, timestep=stage.timestep,
                        steps=stage.steps, record_every=stage.record_every, friction=stage.friction,
                        min_distance=stage.min_distance,
                        stop_at=select["hi"] if stage.stop_at_failed else None,
                        max_energy_jump=getattr(stage, "max_energy_jump", None),
                        biases=biases if any(b is not None for b in biases) else None,
                        propagate=propagate, device=device, skin=skin)
    if write_outputs is None:
        return {"walkers": [w["id"] for w in walkers], "records": records, "calcs": calcs}
    out = []
    for w, rec, calc in zip(walkers, records, calcs):
        d = Path(task_dir) / str(w["id"])
        d.mkdir(parents=True, exist_ok=True)
        out.append(write_outputs(d, w, rec, calc, pot, select))
    return {"walkers": out}
