"""The batched explorer (``explorer.kind: batched``): all walkers of a task in one batched MD
(:func:`elt.sampling.batched.run_batch`), each with the stage's bias and metadynamics chain built
as on the ASE path; :func:`split_batches` says which walkers share a task."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

from elt import registry
from elt.sampling.batched import run_batch
from elt.sampling.wrappers import wrap_calculator
from elt.sampling.explorer import Explorer, WalkerRecord, finish_bias


@registry.register("explorer", "batched")
class BatchedMDExplorer(Explorer):
    def run(self, walkers: Sequence, starts: Sequence, potential, stage, levels,
            out_dirs: Sequence[Path]) -> list[WalkerRecord]:
        cfg = self.config
        calcs = [wrap_calculator(potential.calculator(), stage, w.iteration, w.temperature) for w in walkers]
        biases = [c if hasattr(c, "inner") else None for c in calcs]
        compile_ = {"on": True, "off": False}.get(getattr(cfg, "compile", "auto"), "auto")
        records = run_batch(list(starts), [{"temperature": w.temperature, "pressure": w.pressure, "seed": w.seed}
                                           for w in walkers], potential,
                            ensemble=stage.ensemble, timestep=stage.timestep, steps=stage.steps,
                            record_every=stage.record_every, friction=stage.friction,
                            min_distance=stage.min_distance, stop_at=levels.hi if stage.stop_at_failed else None,
                            max_energy_jump=stage.max_energy_jump,
                            biases=biases if any(b is not None for b in biases) else None,
                            propagate=getattr(cfg, "propagate", "mean"), device=getattr(cfg, "device", "cpu"),
                            skin=getattr(cfg, "skin", 1.0), compile=compile_, beyond=stage.past_hi())
        for rec, calc, d in zip(records, calcs, out_dirs):
            finish_bias(rec, calc, d)
        return records


def split_batches(sizes: Sequence[int], workers: int = 1, max_atoms: int = 4096,
                  max_walkers: Optional[int] = None) -> list[list[int]]:
    """Walker indices grouped into tasks: at most ``max_atoms`` atoms and ``max_walkers`` walkers
    per task, and at least ``workers`` tasks when there are that many walkers (so every worker
    gets one). Walkers keep their order inside a task."""
    n = len(sizes)
    if n == 0:
        return []
    per = math.ceil(n / max(1, min(workers, n)))
    if max_walkers is not None:
        per = min(per, max_walkers)
    batches, cur, atoms = [], [], 0
    for s_i, s in enumerate(sizes):
        if cur and (len(cur) >= per or atoms + s > max_atoms):
            batches.append(cur)
            cur, atoms = [], 0
        cur.append(s_i)
        atoms += s
    batches.append(cur)
    return batches
