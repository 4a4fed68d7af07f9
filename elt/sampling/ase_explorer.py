"""The reference explorer (``explorer.kind: ase``): each walker alone, ASE's integrators, the
ensemble as an ASE calculator wrapped by the stage's bias and metadynamics (:mod:`elt.sampling.md`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from elt import registry
from elt.sampling.explorer import Explorer, WalkerRecord, finish_bias
from elt.sampling.wrappers import wrap_calculator
from elt.sampling.md import run_walker


@registry.register("explorer", "ase")
class AseMDExplorer(Explorer):
    def run(self, walkers: Sequence, starts: Sequence, potential, stage, levels,
            out_dirs: Sequence[Path]) -> list[WalkerRecord]:
        out = []
        for w, start, d in zip(walkers, starts, out_dirs):
            calc = wrap_calculator(potential.calculator(), stage, w.iteration, w.temperature)
            rec = run_walker(start, calc, ensemble=stage.ensemble, temperature=w.temperature,
                             pressure=w.pressure, timestep=stage.timestep, steps=stage.steps,
                             record_every=stage.record_every, friction=stage.friction,
                             min_distance=stage.min_distance,
                             stop_at=levels.hi if stage.stop_at_failed else None, seed=w.seed,
                             max_energy_jump=stage.max_energy_jump, beyond=stage.past_hi())
            finish_bias(rec, calc, d)
            out.append(rec)
        return out
