"""The potential plugin interface.

A potential plugin is a :class:`Potential` (an instance, registered under group ``potential``
with the ``train.kind`` it serves; its config model, a subclass of
:class:`elt.config.train.TrainBase`, is registered with ``register_config("potential", KIND)``).
The engine uses three things of it, all plain and picklable (they run in Dask workers):

``train_member(frames, config, elements, member, seed, out_path, init_path=None) -> dict``
    Fit one ensemble member on labeled frames (ASE Atoms with energy in eV, forces in eV/Å and
    optionally stress in eV/Å³, ASE sign convention, attached via a SinglePointCalculator) and
    write its checkpoint to ``out_path`` (atomically; the engine names the file with
    :meth:`Potential.checkpoint_name`). ``init_path`` is a previous iteration's checkpoint of the
    same member to warm-start from. Returns JSON-able metrics: ``rmse_e`` (eV/atom) and ``rmse_f``
    (eV/Å) on the training and validation frames (keys ``train`` and ``valid``; ``valid`` is None
    when no frame was held out), ``epochs``, ``steps``, ``step_cap``, ``best_step``,
    ``stop_reason`` (plateau | cap | time), ``fit_ok`` and ``warnings`` (plain text: energies not
    fitted, stopped at a cap before a plateau), ``seconds``, ``cpu_seconds``, ``n_frames``.
    :func:`elt.potentials.fitting.plateau_fit` and :func:`~elt.potentials.fitting.member_metrics`
    give a plugin elt's training loop and these metrics.

``load_ensemble(member_paths, precision=None) -> EnsemblePotential``
    Build the ensemble from member checkpoints, without needing the training code path.

``checkpoint_name(member) -> str``
    The file name of member ``member``'s checkpoint (default ``member_I.pt``). The final ensemble
    is copied under these names to ``RUN_DIR/model/``, next to a manifest
    (:data:`elt.data.layout.MODEL_MANIFEST`: the kind and the member files) that
    :func:`elt.load_potential` reads.

Optionally an ensemble offers ``descriptors(atoms) -> (N, D)`` per-atom descriptors (used by the
``fps`` diversity selection). ``batch_evaluator(systems, device=, skin=)`` evaluates many systems
in one call (batched MD, :mod:`elt.potentials.batch`); the default goes through ``predict_many``.

:class:`EnsemblePotential` predicts every member at once; :meth:`EnsemblePotential.calculator`
gives an ASE calculator (mean energy/forces/stress, plus the deviation in ``calc.results``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from elt.data.frames import fully_periodic  # noqa: F401  (one rule: the only frames with a stress)
from elt.potentials.deviation import frame_deviation


def atom_chunks(frames: Sequence[Atoms], max_atoms: int) -> list[Sequence[Atoms]]:
    """Consecutive runs of ``frames`` with at most ``max_atoms`` atoms each (a larger frame alone),
    for evaluating many frames in a few batched calls."""
    out, start = [], 0
    while start < len(frames):
        stop, n = start, 0
        while stop < len(frames) and (stop == start or n + len(frames[stop]) <= max_atoms):
            n += len(frames[stop])
            stop += 1
        out.append(frames[start:stop])
        start = stop
    return out


@dataclass
class EnsemblePrediction:
    """Per-member predictions for one frame.

    energies: (k,) eV; forces: (k, N, 3) eV/Å; stress: (k, 3, 3) eV/Å³ (ASE sign convention:
    stress = -virial / volume) or None when the frame is not periodic in all three directions or
    stress was not asked for.
    """

    energies: np.ndarray
    forces: np.ndarray
    stress: Optional[np.ndarray] = None

    @property
    def size(self) -> int:
        return int(self.energies.shape[0])


class Potential(ABC):
    """Base of a potential plugin (see the module docstring for the contract, shapes and units)."""

    kind: str = ""

    @abstractmethod
    def train_member(self, frames: Sequence[Atoms], config, elements: Sequence[str], member: int, seed: int,
                     out_path, init_path=None) -> dict:
        """Fit one member on ``frames`` and write its checkpoint to ``out_path``; returns its metrics."""

    @abstractmethod
    def load_ensemble(self, member_paths: Sequence, precision: Optional[str] = None) -> "EnsemblePotential":
        """The ensemble of the member checkpoints ``member_paths``."""

    def checkpoint_name(self, member: int) -> str:
        """File name of member ``member``'s checkpoint."""
        return f"member_{int(member)}.pt"


class EnsemblePotential(ABC):
    """k members evaluated together. Units: eV, Å, eV/Å, eV/Å³."""

    elements: tuple[str, ...]
    size: int
    rcut: float
    # False when the members were not fitted to virials: their stress would be an untrained number,
    # so the calculator gives none (ASE raises PropertyNotImplementedError on get_stress)
    stress_trained: bool = True

    @abstractmethod
    def predict(self, atoms: Atoms, *, stress: bool = False) -> EnsemblePrediction:
        """Energies, forces (and stress) of every member for one frame."""

    def predict_many(self, frames: Sequence[Atoms], *, stress: bool = False) -> list[EnsemblePrediction]:
        return [self.predict(a, stress=stress) for a in frames]

    def calculator(self) -> "EnsembleCalculator":
        return EnsembleCalculator(self)

    def batch_evaluator(self, systems: Sequence[Atoms], *, device: str = "cpu", skin: float = 1.0,
                        compile: bool = False):
        """Many systems in one call (:mod:`elt.potentials.batch`); this default evaluates them
        through :meth:`predict_many`. ``skin`` (Å) is for potentials that keep neighbour lists,
        ``compile`` for those with compiled kernels; both are hints."""
        from elt.potentials.batch import PerFrameBatch, resolve_device

        return PerFrameBatch(self, systems, resolve_device(device))


class EnsembleCalculator(Calculator):
    """ASE calculator for an ensemble: mean energy, forces and stress of the members.

    Extra results: ``energies_members`` (k,), ``forces_members`` (k, N, 3), ``max_devi_f``,
    ``min_devi_f``, ``avg_devi_f`` (eV/Å), ``devi_e`` (eV/atom), ``max_devi_v``/``min_devi_v``/
    ``avg_devi_v`` (eV/atom, with stress only). A single member gives no deviation keys.

    Stress only for frames periodic in all three directions (a vacuum direction would dilute it)
    and members trained on virials (``potential.stress_trained``); otherwise ``stress`` is absent
    from the results and ``get_stress`` raises ASE's PropertyNotImplementedError.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, potential: EnsemblePotential, **kwargs):
        super().__init__(**kwargs)
        self.potential = potential
        if not getattr(potential, "stress_trained", True):
            self.implemented_properties = ["energy", "free_energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        want_stress = fully_periodic(self.atoms) and "stress" in self.implemented_properties
        pred = self.potential.predict(self.atoms, stress=want_stress)
        virials = None
        if pred.stress is not None:
            vol = self.atoms.get_volume()
            virials = -pred.stress * vol
        # one member has no spread: the deviation keys are left out rather than faked
        dev = frame_deviation(pred.energies, pred.forces, virials).as_dict() if pred.size > 1 else {}
        e = float(pred.energies.mean())
        self.results = {
            "energy": e,
            "free_energy": e,
            "forces": pred.forces.mean(axis=0),
            "energies_members": pred.energies,
            "forces_members": pred.forces,
            **dev,
        }
        if pred.stress is not None:
            s = pred.stress.mean(axis=0)
            self.results["stress"] = np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
