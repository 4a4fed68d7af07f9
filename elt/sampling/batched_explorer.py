"""The batched explorer (``explorer.kind: batched``): all walkers of a task in one batched MD
(:func:`elt.sampling.batched.run_batch`), each with the stage's bias and metadynamics chain built
as on the ASE path; :func:`elt.sampling.batching.split_batches` says which walkers share a task."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from elt import registry
from elt.sampling.batched import run_batch
from elt.sampling.wrappers import wrap_calculator
from elt.sampling.explorer import Explorer, WalkerRecord, finish_bias


@registry.register("explorer", "batched")
class BatchedMDExplorer(Explorer):
    batched = True  # the engine gives one task several walkers

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
