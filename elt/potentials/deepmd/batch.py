"""Batched evaluation of the Deep Potential ensemble with Verlet neighbour lists.

All systems of a batch are evaluated by one stacked model (all k members at once, or member 0
alone) with Verlet lists (:mod:`elt.potentials.deepmd.verlet`). On the CPU the systems are cut
into groups of about ``group_atoms`` atoms, one model call each, so that the (k, N, S, M1)
intermediates stay in cache (one call over thousands of atoms is up to 2x slower per atom there);
on a GPU one group holds everything. A group's layout is rebuilt only when one of its systems'
lists went stale or systems left the batch. With ``native`` (the CPU's compiled kernels,
:mod:`elt.potentials.deepmd.native`) the model skips the slots beyond rcut itself; the torch
kernels get the slots within rcut compacted first.
"""

from __future__ import annotations

import copy
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from elt.potentials.batch import BatchEvaluator, BatchOutput
from elt.potentials.deepmd.compress import EmbeddingTable
from elt.potentials.deepmd.verlet import VerletGroup, system_pairs


def select_members(model, index: Sequence[int]):
    """A copy of a stacked :class:`DeepPot` (or its tables) holding only members ``index``."""
    idx = torch.as_tensor(list(index), dtype=torch.long)
    sub = copy.deepcopy(model)
    with torch.no_grad():
        for mod in sub.modules():
            if isinstance(mod, EmbeddingTable):
                for j in range(4):
                    c = getattr(mod, f"c{j}").view(mod.k, mod.n, mod.m1)
                    setattr(mod, f"c{j}", c.index_select(0, idx.to(c.device)).reshape(-1, mod.m1).contiguous())
                mod.k = len(idx)
                mod.offsets = (torch.arange(mod.k, device=mod.offsets.device) * mod.n).view(mod.k, 1)
                continue
            for name, p in list(mod._parameters.items()):
                if p is not None:
                    mod._parameters[name] = nn.Parameter(p.data.index_select(0, idx.to(p.device)).clone(),
                                                         requires_grad=False)
            for name, b in list(mod._buffers.items()):
                if b is not None:
                    mod._buffers[name] = b.index_select(0, idx.to(b.device)).clone()
    sub.k = len(idx)
    return sub


class DeepPotBatch(BatchEvaluator):
    """:class:`~elt.potentials.batch.BatchEvaluator` of a :class:`DeepPotEnsemble` (see the module
    docstring). ``builds`` counts neighbour-list builds (one per system), ``assemblies`` group layouts."""

    def __init__(self, ensemble, systems, device: torch.device, skin: float = 1.0,
                 group_atoms: Optional[int] = None, native: bool = False):
        super().__init__(systems, device)
        self.native = bool(native) and device.type == "cpu"
        if skin < 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        self.model = ensemble.model if device.type == "cpu" else copy.deepcopy(ensemble.model).to(device)
        self._first = None
        self.typemap, self.rcut, self.skin = ensemble.typemap, float(ensemble.rcut), float(skin)
        self.cutoff = self.rcut + self.skin
        self.dtype = ensemble.dtype
        self.group_atoms = group_atoms or (512 if device.type == "cpu" else 1 << 30)
        for a in self.systems:
            self.typemap(a)  # unknown elements: a clear error now
        self._lists: list[Optional[tuple]] = [None] * len(self.systems)
        self._regroup()
        self.builds = 0
        self.assemblies = 0

    def _regroup(self) -> None:
        """Consecutive systems in groups of at most ``group_atoms`` atoms (at least one system)."""
        self._groups, cur, n = [], [], 0
        for w, a in enumerate(self.systems):
            if cur and n + len(a) > self.group_atoms:
                self._groups.append(cur)
                cur, n = [], 0
            cur.append(w)
            n += len(a)
        if cur:
            self._groups.append(cur)
        self._layouts: list[Optional[VerletGroup]] = [None] * len(self._groups)

    def keep(self, index):
        super().keep(index)
        self._lists = [self._lists[i] for i in index]
        self._regroup()

    def first_member(self):
        if self._first is None:
            self._first = select_members(self.model, [0])
        return self._first

    def _layout(self, gi: int, pos: torch.Tensor, cells: torch.Tensor) -> VerletGroup:
        """The group's layout, after rebuilding the lists of its stale systems."""
        members, lay = self._groups[gi], self._layouts[gi]
        if lay is None:
            self._rebuild([w for w in members if self._lists[w] is None], members, pos, cells)
            lay = self._lay_out(gi)
        stale = [members[i] for i in lay.stale(pos, cells)]
        if stale:
            self._rebuild(stale, members, pos, cells)
            lay = self._lay_out(gi)
        return lay

    def _rebuild(self, stale: list[int], members: list[int], pos: torch.Tensor, cells: torch.Tensor) -> None:
        if not stale:
            return
        p, c = pos.detach().cpu().numpy(), cells.detach().cpu().numpy()
        if not np.isfinite(p).all():
            raise FloatingPointError("positions are not finite: drop the blown-up systems before evaluating")
        a0 = self.offsets[members[0]]
        for w in stale:
            lo, hi = self.offsets[w] - a0, self.offsets[w + 1] - a0
            self._lists[w] = system_pairs(self.systems[w], p[lo:hi], c[w - members[0]], self.cutoff)
            self.builds += 1

    def _lay_out(self, gi: int) -> VerletGroup:
        members = self._groups[gi]
        lay = VerletGroup([self.systems[w] for w in members], [self._lists[w] for w in members],
                          self.typemap, self.rcut, self.cutoff, self.device)
        self._layouts[gi] = lay
        self.assemblies += 1
        return lay

    def evaluate(self, positions, cells, *, members="all", virial=False, distances=None) -> BatchOutput:
        model = self.first_member() if members == "first" else self.model
        near = distances is not None and distances <= self.rcut  # the lists hold every pair within rcut
        parts, dmin = [], []
        for gi, group in enumerate(self._groups):
            lo, hi = self.offsets[group[0]], self.offsets[group[-1] + 1]
            pos, cell = positions[lo:hi], cells[group[0]:group[-1] + 1]
            lay = self._layout(gi, pos, cell)
            vec = lay.vectors(pos, cell)
            if near:
                dmin.append(lay.min_distance(vec, float(distances)))
            g, d = (lay.slots if self.native else lay.graph)(vec, self.dtype)
            parts.append(model(g, d, forces=True, virial=virial, mean=members == "mean", native=self.native))
        f64 = lambda key, dim: torch.cat([p[key] for p in parts], dim=dim).detach().to(torch.float64)  # noqa: E731
        return BatchOutput(f64("energy", 1), f64("forces", 1), f64("virial", 1) if virial else None,
                           torch.cat(dmin) if near else None)
