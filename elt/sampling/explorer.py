"""The explorer plugin interface: an MD engine that runs walkers with the ensemble.

An explorer is registered under group ``explorer`` with the ``kind`` of its config section
(``explore.stages[].explorer`` in the workflow; its pydantic model subclasses
:class:`elt.config.base.PluginConfig` and is registered with :func:`elt.registry.register_config`).
The engine calls :meth:`Explorer.run` inside one exploration task with one or more walkers and
turns each :class:`WalkerRecord` into the walker's files and candidates
(:func:`elt.sampling.walker_output.finish_walker`): explorers produce trajectories and
deviations, selection stays with the engine.

Units: positions Å, energies eV, forces eV/Å, temperature K, pressure GPa, time fs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from ase import Atoms

from elt.data.modeldevi import COMPLETED, DEVI_KEYS, stopped_on_bad_frame


@dataclass
class WalkerRecord:
    """What one walker produced: per recorded frame its MD step, its deviations (a row in
    :data:`elt.data.modeldevi.DEVI_KEYS` order: max/min/avg virial deviation eV/atom, max/min/avg
    force deviation eV/Å, energy deviation eV/atom) and the frame itself (positions, cell, no
    calculator); why it stopped (:mod:`elt.data.modeldevi` stop reasons); the bias it followed."""

    steps: list[int] = field(default_factory=list)
    devi: list[list[float]] = field(default_factory=list)  # rows in DEVI_KEYS order
    frames: list[Atoms] = field(default_factory=list)
    stop_reason: str = COMPLETED
    steps_done: int = 0
    bias: Optional[str] = None    # name of the bias the MD followed, None for plain MD
    hills: int = 0                # metadynamics hills deposited
    beyond_frames: int = 0        # recorded frames at or above trust_hi that did not end the walker
    restarts: int = 0             # times the walker went back to its last frame below trust_hi

    @property
    def stopped_on_bad_frame(self) -> bool:
        """The last recorded frame triggered a physical stop (nan, too_close, energy_spike): it is
        off the map and is not to be labeled."""
        return stopped_on_bad_frame(self.stop_reason)

    def devi_array(self) -> np.ndarray:
        return np.asarray(self.devi, dtype=np.float64).reshape(-1, len(DEVI_KEYS))


class Explorer(ABC):
    """Runs walkers with an ensemble. ``config`` is the stage's explorer section.

    ``batched``: False, the engine makes one task per walker; True, it groups the walkers of an
    iteration into tasks (:func:`elt.sampling.batching.split_batches`, sized by the config's
    ``max_atoms``/``max_walkers`` and the cluster profile's ``walkers_per_task``)."""

    batched: bool = False

    def __init__(self, config):
        self.config = config

    @abstractmethod
    def run(self, walkers: Sequence, starts: Sequence[Atoms], potential, stage, levels,
            out_dirs: Sequence[Path]) -> list[WalkerRecord]:
        """One :class:`WalkerRecord` per walker, in order.

        walkers: :class:`elt.records.WalkerSpec` (temperature K, pressure GPa or None, seed);
        starts: the start frame of each walker (not modified); potential: an
        :class:`elt.potentials.base.EnsemblePotential`; stage: the
        :class:`elt.config.workflow.StageConfig` (ensemble, timestep fs, steps, record_every,
        friction 1/fs, min_distance Å, max_energy_jump eV/atom, stop_at_failed, bias, metad);
        levels: :class:`elt.records.SelectionLevels` (``hi`` is where a walker with
        ``stop_at_failed`` stops); out_dirs: one folder per walker for extra files (hills.out,
        colvar.out). A walker's record depends on its own seed only, not on the other walkers
        it runs with. Record step 0; a walker that stops records the frame that stopped it last.
        """


def finish_bias(rec: WalkerRecord, calc, out_dir: Path) -> None:
    """Note the bias a walker followed on its record; metadynamics writes hills.out and colvar.out."""
    from elt.sampling.metad import MetadCalculator
    from elt.sampling.wrappers import find_wrapper

    rec.bias = type(calc).__name__ if hasattr(calc, "inner") else None
    metad = find_wrapper(calc, MetadCalculator)
    if metad is not None:
        metad.write_hills(Path(out_dir) / "hills.out")
        metad.write_colvar(Path(out_dir) / "colvar.out", rec.steps, rec.frames)
        rec.hills = len(metad.heights)
