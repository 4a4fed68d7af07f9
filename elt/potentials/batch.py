"""Many systems in one ensemble call: the batched evaluator interface and its per-frame fallback.

A batch holds W systems (walkers) whose atoms are concatenated in one flat layout: system w owns
rows ``offsets[w]:offsets[w+1]`` of the positions. Shapes and units, k members (or 1 with
``members="first"``), N atoms in all:

    positions (N, 3) Å, cells (W, 3, 3) Å          (torch float64, on the evaluator's device)
    -> energies (k, W) eV, forces (k, N, 3) eV/Å, virials (k, W, 3, 3) eV or None

``members``: ``all`` (k members), ``first`` (member 0 alone: k = 1 everywhere) or ``mean``
(energies of all k members; forces (1, N, 3) and virials (1, W, 3, 3) of their mean only, which
a model can get from one gradient).

Virials follow the model's sign (ASE: stress = -virial / volume) and are given for every system
when asked for (zeros for a non-periodic one). ``distances=c`` asks for each system's smallest pair
distance (W,) Å where it is below c (else inf), as :func:`elt.sampling.md.min_pair_distance` gives
it; an evaluator that keeps no neighbour list reaching c leaves ``min_distance`` None. Atom counts and elements may differ between
systems. :meth:`BatchEvaluator.keep` drops systems that left the batch.

:class:`PerFrameBatch` works for any :class:`~elt.potentials.base.EnsemblePotential` through
``predict_many``; a potential with a frames dimension overrides
:meth:`EnsemblePotential.batch_evaluator` with something faster (the Deep Potential's
:class:`~elt.potentials.deepmd.batch.DeepPotBatch` keeps Verlet lists and runs one model call).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from ase import Atoms

from elt.potentials.deviation import frame_deviation


def resolve_device(device: str = "cpu") -> torch.device:
    """``auto`` (cuda when available, else cpu), ``cpu`` or ``cuda`` (``cuda:1`` ...)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        from elt.errors import SetupError

        raise SetupError(f"device {device!r} asked for, but torch sees no CUDA device",
                         hint="use device: cpu (or auto, which falls back to the CPU)")
    return torch.device(device)


@dataclass
class BatchOutput:
    energies: torch.Tensor                  # (k, W) eV
    forces: torch.Tensor                    # (k, N, 3) eV/Å
    virials: Optional[torch.Tensor] = None  # (k, W, 3, 3) eV
    min_distance: Optional[torch.Tensor] = None  # (W,) Å, when asked for and known

    def host(self) -> "HostOutput":
        """The same as numpy arrays (float64) on the host, for per-system bookkeeping."""
        np_ = lambda x: None if x is None else x.detach().cpu().numpy()  # noqa: E731
        return HostOutput(np_(self.energies), np_(self.forces), np_(self.virials), np_(self.min_distance))


@dataclass
class HostOutput:
    energies: np.ndarray
    forces: np.ndarray
    virials: Optional[np.ndarray] = None
    min_distance: Optional[np.ndarray] = None

    def deviation(self, w: int, atoms: slice, virial: bool) -> dict:
        """DP-GEN's deviations of system ``w`` (its atoms ``atoms``), virial ones when ``virial``
        (:func:`elt.potentials.deviation.frame_deviation`); {} for a single member."""
        if self.energies.shape[0] < 2:
            return {}
        v = self.virials[:, w] if virial and self.virials is not None else None
        return frame_deviation(self.energies[:, w], self.forces[:, atoms], v).as_dict()


def is_periodic(atoms: Atoms) -> bool:
    return bool(np.asarray(atoms.pbc).any()) and atoms.cell.rank == 3


class BatchEvaluator:
    """W systems evaluated together; see the module docstring for shapes and units."""

    def __init__(self, systems: Sequence[Atoms], device: torch.device):
        self.systems = [a.copy() for a in systems]
        for a in self.systems:
            a.calc = None
        self.device = device
        self._set_offsets()

    def _set_offsets(self) -> None:
        sizes = [len(a) for a in self.systems]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    @property
    def n_systems(self) -> int:
        return len(self.systems)

    def keep(self, index: Sequence[int]) -> None:
        """Keep only systems ``index`` (positions into the current batch, in this order)."""
        self.systems = [self.systems[i] for i in index]
        self._set_offsets()

    def evaluate(self, positions: torch.Tensor, cells: torch.Tensor, *, members: str = "all",
                 virial: bool = False, distances: Optional[float] = None) -> BatchOutput:  # pragma: no cover - abstract
        raise NotImplementedError


class PerFrameBatch(BatchEvaluator):
    """The fallback: one ``predict_many`` call on Atoms copies (``members="first"`` slices member 0)."""

    def __init__(self, potential, systems: Sequence[Atoms], device: torch.device):
        super().__init__(systems, device)
        self.potential = potential

    def evaluate(self, positions, cells, *, members="all", virial=False, distances=None) -> BatchOutput:
        pos = positions.detach().cpu().numpy()
        cell = cells.detach().cpu().numpy()
        frames = []
        for w, a in enumerate(self.systems):
            a.positions = pos[self.offsets[w]:self.offsets[w + 1]]
            if is_periodic(a):
                a.cell = cell[w]
            frames.append(a)
        preds = self.potential.predict_many(frames, stress=virial)
        k = 1 if members == "first" else preds[0].size
        e = np.stack([p.energies[:k] for p in preds], axis=1)
        f = [p.forces[:k] for p in preds]
        v = [(-p.stress[:k] * a.get_volume()) if p.stress is not None else np.zeros((k, 3, 3))
             for p, a in zip(preds, frames)] if virial else None
        if members == "mean":  # all members' energies, the mean's forces and virials
            f = [x.mean(axis=0, keepdims=True) for x in f]
            v = None if v is None else [x.mean(axis=0, keepdims=True) for x in v]
        t = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float64, device=self.device)  # noqa: E731
        energies, forces = t(e), t(np.concatenate(f, axis=1))
        virials = None if v is None else t(np.stack(v, axis=1))
        return BatchOutput(energies, forces, virials)
