"""The reference explorer (``explorer.kind: ase``): each walker alone, ASE's integrators, the
ensemble as an ASE calculator wrapped by the stage's bias and metadynamics (:mod:`elt.sampling.md`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from elt import registry
from elt.sampling.wrappers import find_wrapper, wrap_calculator
from elt.sampling.explorer import Explorer, WalkerRecord
from elt.sampling.md import run_walker
from elt.sampling.metad import MetadCalculator


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
            rec.bias = type(calc).__name__ if hasattr(calc, "inner") else None
            metad = find_wrapper(calc, MetadCalculator)
            if metad is not None:
                metad.write_hills(Path(d) / "hills.out")
                metad.write_colvar(Path(d) / "colvar.out", rec.steps, rec.frames)
                rec.hills = len(metad.heights)
            out.append(rec)
        return out
