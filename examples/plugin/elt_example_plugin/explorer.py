"""The ``metropolis`` explorer: canonical Monte Carlo with the ensemble's mean energy.

Each walker runs alone (``batched = False``: one task per walker). Per MC step every atom moves by
a Gaussian of ``step_size`` Å; the move is accepted with probability min(1, exp(-ΔE / kT)) on the
members' mean energy (eV) at the walker's temperature (K). Every ``stage.record_every`` steps the
frame and the ensemble's deviations are recorded; a walker stops when its frame reaches trust_hi
(``stage.stop_at_failed``), when two atoms come closer than ``stage.min_distance`` (Å) or when a
prediction is not finite, recording the frame that stopped it last. Selection is elt's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from ase import Atoms, units

from elt.data.modeldevi import ABOVE_TRUST_HI, DEVI_KEYS
from elt.potentials.deviation import frame_deviation
from elt.registry import register
from elt.sampling.explorer import Explorer, WalkerRecord
from elt.sampling.md import min_pair_distance


def deviation_row(potential, atoms: Atoms) -> tuple[float, list[float]]:
    """The ensemble's mean energy (eV) and deviation row (DEVI_KEYS order) at ``atoms``."""
    periodic = bool(atoms.pbc.all()) and atoms.cell.rank == 3
    p = potential.predict(atoms, stress=periodic)
    virials = None if p.stress is None else -p.stress * atoms.get_volume()
    d = frame_deviation(p.energies, p.forces, virials).as_dict()
    return float(np.mean(p.energies)), [float(d[k]) for k in DEVI_KEYS]


@register("explorer", "metropolis")
class MetropolisMC(Explorer):
    def run(self, walkers: Sequence, starts: Sequence[Atoms], potential, stage, levels,
            out_dirs: Sequence[Path]) -> list[WalkerRecord]:
        if stage.ensemble != "nvt" or stage.bias is not None or stage.metad is not None:
            raise ValueError("explorer metropolis samples the canonical ensemble without bias: "
                             "set ensemble: nvt and no bias or metad in this stage")
        return [self._walk(w, start, potential, stage, levels) for w, start in zip(walkers, starts)]

    def _walk(self, walker, start: Atoms, potential, stage, levels) -> WalkerRecord:
        rng = np.random.default_rng(walker.seed)
        kt = units.kB * walker.temperature
        atoms = start.copy()
        atoms.calc = None
        energy, row = deviation_row(potential, atoms)
        rec = WalkerRecord()
        for step in range(stage.steps + 1):
            if step:
                trial = atoms.copy()
                trial.positions += rng.normal(0.0, self.config.step_size, trial.positions.shape)
                e_trial, row_trial = deviation_row(potential, trial)
                if np.isfinite(e_trial) and rng.random() < np.exp(min(0.0, -(e_trial - energy) / kt)):
                    atoms, energy, row = trial, e_trial, row_trial
            rec.steps_done = step
            if step % stage.record_every:
                continue
            rec.steps.append(step)
            rec.devi.append(row)
            rec.frames.append(atoms.copy())
            stop = self._stop(atoms, energy, row, stage, levels)
            if stop:
                rec.stop_reason = stop
                break
        return rec

    @staticmethod
    def _stop(atoms: Atoms, energy: float, row: list[float], stage, levels):
        if not (np.isfinite(energy) and np.all(np.isfinite(row))):
            return "nan"
        if min_pair_distance(atoms, stage.min_distance) < stage.min_distance:
            return "too_close"
        if stage.stop_at_failed and row[DEVI_KEYS.index("max_devi_f")] >= levels.hi:
            return ABOVE_TRUST_HI
        return None
