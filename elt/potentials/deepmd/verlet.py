"""Verlet neighbour lists of a group of systems in the Deep Potential's padded slot layout.

A :class:`VerletGroup` holds consecutive systems of a batch. Each system has a list of the pairs
within ``cutoff = rcut + skin`` built with vesin at reference positions; the group's padded slots
(:func:`~elt.potentials.deepmd.graph.build_graph`) keep, per slot, the neighbour j and the integer
lattice shift S, so that at any later step

    d_slot = r_j - r_i + S · cell.

Each step the slots beyond rcut are compacted away (:meth:`VerletGroup.graph`): the model then
runs on the pairs within rcut only, as with a fresh list, while vesin runs only when a system's
list went stale (an atom moved more than skin/2 since the build, or the cell strained enough to
bring a pair from beyond the cutoff inside rcut).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from elt.potentials.deepmd.graph import build_graph
from elt.potentials.neighbors import box, frame_pairs


@dataclass
class SlotGraph:
    """What :meth:`DeepPot.forward` reads of a graph, as tensors on the device."""

    n_frames: int
    types: torch.Tensor
    atom_frame: torch.Tensor
    neighbor: torch.Tensor
    reverse: torch.Tensor
    blocks: list
    atoms_by_type: list


def system_pairs(atoms, pos: np.ndarray, cell: np.ndarray, cutoff: float) -> tuple:
    """(reference positions, reference cell, vesin pairs within ``cutoff``) of one system."""
    a = atoms.copy()
    a.positions = pos
    if bool(np.asarray(a.pbc).any()):
        a.cell = cell
    return pos.copy(), cell.copy(), frame_pairs(a, cutoff)


class VerletGroup:
    """Systems ``systems`` (Atoms, for their elements) with their lists ``lists`` (from
    :func:`system_pairs`), laid out once; ``rcut`` the model's cutoff, ``cutoff`` = rcut + skin."""

    def __init__(self, systems, lists, typemap, rcut: float, cutoff: float, device: torch.device):
        self.rcut, self.cutoff, self.device = float(rcut), float(cutoff), device
        g = build_graph(systems, typemap, cutoff, pairs=[lst[2] for lst in lists])
        if g.reverse is None:
            raise ValueError("the neighbour list is not symmetric; cannot lay out the reverse slots")
        ref = np.concatenate([lst[0] for lst in lists])
        cells = np.stack([lst[1] for lst in lists])
        wid = np.repeat(np.arange(len(systems)), [len(a) for a in systems])
        cart = g.vec - (ref[g.neighbor] - ref[:, None, :])  # S · cell on real slots, the pad on empty ones
        empty = np.linalg.norm(g.vec, axis=-1) > cutoff
        inv = np.stack([np.linalg.inv(box(a)[0]) if bool(np.asarray(a.pbc).any()) else np.zeros((3, 3))
                        for a in systems])
        shifts = np.rint(np.einsum("nsi,nij->nsj", cart, inv[wid]))
        shifts[empty] = 0.0
        t = lambda x, dt=torch.float64: torch.as_tensor(x, dtype=dt, device=device)  # noqa: E731
        self.n, self.width = g.vec.shape[0], g.vec.shape[1]
        self.nbr, self.shifts, self.pad = t(g.neighbor, torch.long), t(shifts), t(np.where(empty[..., None], g.vec, 0.0))
        self.reverse = t(g.reverse, torch.long)
        self.ref_pos, self.ref_cells, self.wid = t(ref), t(cells), t(wid, torch.long)
        self.periodic = torch.as_tensor([bool(np.asarray(a.pbc).all()) and a.cell.rank == 3 for a in systems],
                                        dtype=torch.bool, device=device)
        self.blocks = [int(b) for b in g.blocks]
        self.types, self.atom_frame = t(g.types, torch.long), t(g.atom_frame, torch.long)
        self.atoms_by_type = [t(idx, torch.long) for idx in g.atoms_by_type]
        self.n_frames = g.n_frames
        self._offset_cells = None

    def stale(self, pos: torch.Tensor, cells: torch.Tensor) -> list[int]:
        """Systems (positions in the group) whose list may miss a pair within rcut now."""
        ref, n_sys = self.ref_pos, self.ref_cells.shape[0]
        eye = torch.eye(3, dtype=pos.dtype, device=pos.device)
        eps = torch.zeros(n_sys, dtype=pos.dtype, device=pos.device)
        if not torch.equal(cells, self.ref_cells):
            full = eye.repeat(n_sys, 1, 1)
            full[self.periodic] = torch.linalg.solve(self.ref_cells[self.periodic], cells[self.periodic])
            ref = torch.einsum("ni,nij->nj", ref, full[self.wid])
            eps = torch.linalg.matrix_norm(full - eye, ord=2)
        disp = torch.linalg.vector_norm(pos - ref, dim=1)
        dmax = torch.zeros(n_sys, dtype=pos.dtype, device=pos.device).scatter_reduce(
            0, self.wid, disp, "amax", include_self=True)
        ok = (self.rcut + 2.0 * dmax) < (self.cutoff * (1.0 - eps))
        return torch.nonzero(~ok).flatten().tolist()

    def vectors(self, pos: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """d per candidate slot (N, S, 3), float64."""
        if self._offset_cells is None or not torch.equal(cells, self._offset_cells):
            self._offset = torch.einsum("nsi,nij->nsj", self.shifts, cells[self.wid]) + self.pad
            self._offset_cells = cells.clone()
        v = pos.index_select(0, self.nbr.reshape(-1)).view(self.n, self.width, 3)
        return v.sub_(pos.unsqueeze(1)).add_(self._offset)

    def min_distance(self, vec: torch.Tensor, below: float) -> torch.Tensor:
        """Each system's smallest pair distance (n_systems,) Å where it is below ``below`` (<= rcut), else inf."""
        r = torch.linalg.vector_norm(vec, dim=-1).amin(dim=1) if vec.shape[1] else vec.new_full((self.n,), float("inf"))
        dmin = torch.full((self.ref_cells.shape[0],), float("inf"), dtype=r.dtype, device=r.device)
        dmin = dmin.scatter_reduce(0, self.wid, r, "amin", include_self=True)
        return torch.where(dmin < below, dmin, torch.full_like(dmin, float("inf")))

    def slots(self, vec: torch.Tensor, dtype: torch.dtype) -> tuple[SlotGraph, torch.Tensor]:
        """All candidate slots, those beyond rcut included: (graph, d (N, S, 3)), for a model that
        skips them itself (the native kernels) instead of paying for :meth:`graph`'s compaction."""
        g = SlotGraph(self.n_frames, self.types, self.atom_frame, self.nbr, self.reverse, self.blocks,
                      self.atoms_by_type)
        return g, vec.to(dtype).contiguous()

    def graph(self, vec: torch.Tensor, dtype: torch.dtype) -> tuple[SlotGraph, torch.Tensor]:
        """The slots within rcut only, compacted per neighbour-type block: (graph, d (N, S', 3))."""
        v = vec.to(dtype)
        keep = torch.linalg.vector_norm(v, dim=-1) < self.rcut           # (N, S)
        n, dev = self.n, vec.device
        cols = torch.zeros_like(self.nbr)
        blocks = [0]
        for a, b in zip(self.blocks[:-1], self.blocks[1:]):
            k = keep[:, a:b]
            cols[:, a:b] = k.cumsum(dim=1) - 1 + blocks[-1]
            blocks.append(blocks[-1] + (int(k.sum(dim=1).max()) if b > a and n else 0))
        width = max(blocks[-1], 1)
        sel = torch.nonzero(keep.reshape(-1)).squeeze(1)                # kept old slots
        centers = torch.arange(n, device=dev).unsqueeze(1) * width
        new_flat = (centers + cols).reshape(-1).index_select(0, sel)     # their new slots
        d = torch.zeros(n * width, 3, dtype=dtype, device=dev)
        d[:, 0] = self.rcut + 1.0
        d.index_copy_(0, new_flat, v.reshape(-1, 3).index_select(0, sel))
        nbr = torch.arange(n, device=dev).repeat_interleave(width)
        nbr.index_copy_(0, new_flat, self.nbr.reshape(-1).index_select(0, sel))
        old_to_new = torch.zeros(n * self.width, dtype=torch.long, device=dev)
        old_to_new.index_copy_(0, sel, new_flat)
        rev = torch.arange(n * width, device=dev)
        rev.index_copy_(0, new_flat, old_to_new.index_select(0, self.reverse.index_select(0, sel)))
        g = SlotGraph(self.n_frames, self.types, self.atom_frame, nbr.view(n, width), rev, blocks, self.atoms_by_type)
        return g, d.view(n, width, 3)
