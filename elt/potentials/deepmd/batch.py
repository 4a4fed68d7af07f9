"""Batched evaluation of the Deep Potential ensemble with Verlet neighbour lists.

All systems of a batch go through ONE model call (all k members, or member 0 alone). Each system
keeps a neighbour list of the pairs within ``rcut + skin`` built with vesin at reference positions;
between builds only the displacements are recomputed,

    d_slot = r_j - r_i + S · cell        (S the integer lattice shift of the pair),

and pairs between rcut and rcut + skin contribute exactly zero (s(r) and its gradient vanish
beyond rcut). A system's list is rebuilt when one of its atoms moved more than skin/2 since the
build (with a changing cell, when the cell's strain could bring a pair from beyond rcut + skin
inside rcut). The padded slot layout of the batch (:func:`~elt.potentials.deepmd.graph.build_graph`)
is reassembled only after a rebuild or when systems leave the batch.
"""

from __future__ import annotations

import copy
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from elt.potentials.batch import BatchEvaluator, BatchOutput
from elt.potentials.deepmd.compress import EmbeddingTable
from elt.potentials.deepmd.graph import _box, build_graph, frame_pairs


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
    docstring). ``builds`` counts the neighbour-list builds (one per system per rebuild)."""

    def __init__(self, ensemble, systems, device: torch.device, skin: float = 1.0):
        super().__init__(systems, device)
        if skin < 0:
            raise ValueError(f"skin must be >= 0 Å, got {skin}")
        self.model = ensemble.model if device.type == "cpu" else copy.deepcopy(ensemble.model).to(device)
        self._first = None
        self.typemap, self.rcut, self.skin = ensemble.typemap, float(ensemble.rcut), float(skin)
        self.cutoff = self.rcut + self.skin
        self.dtype = ensemble.dtype
        for a in self.systems:
            self.typemap(a)  # unknown elements: a clear error now
        self._lists: list[Optional[tuple]] = [None] * len(self.systems)  # (ref pos, ref cell, pairs)
        self._graph = None
        self.builds = 0
        self.assemblies = 0

    # ------------------------------------------------------------------ the batch
    def keep(self, index):
        super().keep(index)
        self._lists = [self._lists[i] for i in index]
        self._graph = None

    def first_member(self):
        if self._first is None:
            self._first = select_members(self.model, [0])
        return self._first

    # ------------------------------------------------------------------ neighbour lists
    def _stale(self, pos: torch.Tensor, cells: torch.Tensor) -> list[int]:
        """Systems whose list may miss a pair within rcut now (or whose positions are not finite)."""
        ref, ref_cells, wid = self._ref_pos, self._ref_cells, self._wid
        w_count = len(self.systems)
        eps = torch.zeros(w_count, dtype=pos.dtype, device=pos.device)
        if not torch.equal(cells, ref_cells):
            m = torch.linalg.solve(ref_cells[self._periodic], cells[self._periodic])  # ref_cell @ M = cell
            full = torch.eye(3, dtype=pos.dtype, device=pos.device).repeat(w_count, 1, 1)
            full[self._periodic] = m
            ref = torch.einsum("ni,nij->nj", ref, full[wid])
            eps = torch.linalg.matrix_norm(full - torch.eye(3, dtype=pos.dtype, device=pos.device), ord=2)
        disp = torch.linalg.vector_norm(pos - ref, dim=1)
        dmax = torch.zeros(w_count, dtype=pos.dtype, device=pos.device).scatter_reduce(
            0, wid, disp, "amax", include_self=True)
        ok = (self.rcut + 2.0 * dmax) < (self.cutoff * (1.0 - eps))
        return torch.nonzero(~ok).flatten().tolist()

    def _rebuild(self, systems: list[int], positions: torch.Tensor, cells: torch.Tensor) -> None:
        pos, cell = positions.detach().cpu().numpy(), cells.detach().cpu().numpy()
        if not np.isfinite(pos).all():
            raise FloatingPointError("positions are not finite: drop the blown-up systems before evaluating")
        for w in systems:
            self._build(w, pos[self.offsets[w]:self.offsets[w + 1]], cell[w])
        self._assemble()

    def _build(self, w: int, pos: np.ndarray, cell: np.ndarray) -> None:
        a = self.systems[w]
        a.positions = pos
        if bool(np.asarray(a.pbc).any()):
            a.cell = cell
        self._lists[w] = (pos.copy(), cell.copy(), frame_pairs(a, self.cutoff))
        self.builds += 1

    def _assemble(self) -> None:
        """Padded slots of all systems from their lists; per slot the integer shift S and the
        padding vector of empty slots (longer than the cutoff, so they contribute nothing)."""
        g = build_graph(self.systems, self.typemap, self.cutoff, pairs=[lst[2] for lst in self._lists])
        ref = np.concatenate([lst[0] for lst in self._lists]) if self._lists else np.zeros((0, 3))
        cells = np.stack([lst[1] for lst in self._lists])
        wid = np.repeat(np.arange(len(self.systems)), np.diff(self.offsets))
        cart = g.vec - (ref[g.neighbor] - ref[:, None, :])  # S · cell on real slots, the pad on empty ones
        empty = np.linalg.norm(g.vec, axis=-1) > self.cutoff
        inv = np.stack([np.linalg.inv(_box(a)[0]) if bool(np.asarray(a.pbc).any()) else np.zeros((3, 3))
                        for a in self.systems])
        shifts = np.rint(np.einsum("nsi,nij->nsj", cart, inv[wid]))
        shifts[empty] = 0.0
        pad = np.where(empty[..., None], g.vec, 0.0)
        t = lambda x, dt=torch.float64: torch.as_tensor(x, dtype=dt, device=self.device)  # noqa: E731
        self._nbr = t(g.neighbor, torch.long)
        self._shifts, self._pad = t(shifts), t(pad)
        self._ref_pos, self._ref_cells = t(ref), t(cells)
        self._wid = t(wid, torch.long)
        self._periodic = torch.as_tensor([bool(np.asarray(a.pbc).all()) and a.cell.rank == 3 for a in self.systems],
                                         dtype=torch.bool, device=self.device)
        self._offset_cells = None
        g.vec = None
        self._graph = g
        self.assemblies += 1

    def _vectors(self, pos: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        if self._offset_cells is None or not torch.equal(cells, self._offset_cells):
            self._offset = torch.einsum("nsi,nij->nsj", self._shifts, cells[self._wid]) + self._pad
            self._offset_cells = cells.clone()
        return (pos[self._nbr] - pos.unsqueeze(1) + self._offset).to(self.dtype)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, positions, cells, *, members="all", virial=False) -> BatchOutput:
        missing = [w for w, lst in enumerate(self._lists) if lst is None]
        if missing:
            self._rebuild(missing, positions, cells)
        elif self._graph is None:
            self._assemble()
        stale = self._stale(positions, cells)
        if stale:
            self._rebuild(stale, positions, cells)
        vec = self._vectors(positions, cells)
        model = self.model if members == "all" else self.first_member()
        out = model(self._graph, vec, forces=True, virial=virial)
        f64 = lambda x: x.detach().to(torch.float64)  # noqa: E731
        return BatchOutput(f64(out["energy"]), f64(out["forces"]), f64(out["virial"]) if virial else None)
