"""Deep Potential Smooth Edition (se_e2_a) with an ensemble dimension on every weight.

Every parameter and buffer has a leading dimension k (the members), so k members run in one
graph with batched matmuls. A single member is the same module with k = 1.

For a pair (i, j) with displacement d = r_j - r_i and distance r:
  s(r)  = sw(r) / r,  sw = 1 below rcut_smth, u^3 (-6u^2 + 15u - 10) + 1 between, 0 at rcut
  R~_ij = (s, s x/r, s y/r, s z/r) scaled per member (data statistics, 1/mean neighbour count)
  G_ij  = embedding_{type j}(normalised s)                             (M1 columns)
  D_i   = (G^T R~)(R~^T G<)  with G< the first M2 columns               (M1*M2 features)
  E_i   = fitting_{type i}((D_i - mean) / std) + shift_{type i};   E = sum_i E_i
(mean/std of D per center type are measured on the training data when a member is initialised).
Forces and virials come from the gradient of E with respect to the pair vectors d (per member,
so d carries the member dimension too):
  F_i = sum_{pairs with center i} dE/dd - sum_{pairs with neighbour i} dE/dd,
  W   = -sum_pairs d (x) dE/dd   (ASE: stress = -W / V).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from elt.potentials.deepmd.graph import Graph


class _Involution(torch.autograd.Function):
    """x[:, perm] for a permutation that is its own inverse: the backward is the same gather
    (a scatter-add would be much slower on CPU). Differentiable any number of times."""

    @staticmethod
    def forward(ctx, x, perm):
        ctx.save_for_backward(perm)
        return x.index_select(1, perm)

    @staticmethod
    def backward(ctx, grad):
        (perm,) = ctx.saved_tensors
        return _Involution.apply(grad, perm), None


class EnsembleLinear(nn.Module):
    def __init__(self, k: int, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, n_in, n_out))
        self.bias = nn.Parameter(torch.empty(k, 1, n_out))

    def reset(self, gen: torch.Generator, bias_std: float = 1.0, gain: float = 1.0) -> None:
        n_in, n_out = self.weight.shape[1:]
        with torch.no_grad():
            self.weight.normal_(0.0, gain / math.sqrt(n_in + n_out), generator=gen)
            self.bias.normal_(0.0, bias_std, generator=gen) if bias_std > 0 else self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (k, B, n_in) -> (k, B, n_out)
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """tanh layers with DeePMD's residual connections (out == in: x + f(x); out == 2 in: [x, x] + f(x));
    an optional final linear layer to one output."""

    def __init__(self, k: int, sizes: list[int], linear_out: bool):
        super().__init__()
        self.layers = nn.ModuleList(EnsembleLinear(k, a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = EnsembleLinear(k, sizes[-1], 1) if linear_out else None

    def reset(self, gen: torch.Generator) -> None:
        for layer in self.layers:
            layer.reset(gen)
        if self.out is not None:
            self.out.reset(gen, bias_std=0.0, gain=0.1)  # small initial energies and forces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            y = torch.tanh(layer(x))
            n_in, n_out = x.shape[-1], y.shape[-1]
            if n_out == n_in:
                y = y + x
            elif n_out == 2 * n_in:  # y + [x, x] without building [x, x]
                y = (y.unflatten(-1, (2, n_in)) + x.unsqueeze(-2)).flatten(-2)
            x = y
        return self.out(x) if self.out is not None else x

    def forward_tangent(self, x: torch.Tensor, dx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Values and directional derivatives (forward mode) of the hidden layers; (k, B, n)."""
        for layer in self.layers:
            y = torch.tanh(layer(x))
            dy = (1 - y * y) * (dx @ layer.weight)
            n_in, n_out = x.shape[-1], y.shape[-1]
            if n_out == n_in:
                y, dy = y + x, dy + dx
            elif n_out == 2 * n_in:
                y, dy = y + torch.cat([x, x], dim=-1), dy + torch.cat([dx, dx], dim=-1)
            x, dx = y, dy
        return x, dx


class DeepPot(nn.Module):
    """k members of se_e2_a for ``n_types`` elements."""

    def __init__(self, k: int, n_types: int, rcut: float, rcut_smth: float,
                 embedding: list[int], axis_neuron: int, fitting: list[int]):
        super().__init__()
        self.k, self.n_types = k, n_types
        self.rcut, self.rcut_smth = float(rcut), float(rcut_smth)
        self.m1, self.m2 = embedding[-1], axis_neuron
        self.embeddings = nn.ModuleList(EnsembleMLP(k, [1] + list(embedding), False) for _ in range(n_types))
        self.fittings = nn.ModuleList(
            EnsembleMLP(k, [self.m1 * self.m2] + list(fitting), True) for _ in range(n_types))
        # statistics fitted from data (per member)
        self.tables = None  # set by compress()
        self.register_buffer("shift", torch.zeros(k, n_types))       # eV per atom of each type
        self.register_buffer("s_mean", torch.zeros(k, 1))            # embedding input normalisation
        self.register_buffer("s_std", torch.ones(k, 1))
        self.register_buffer("env_scale", torch.ones(k, 1, 4))       # R~ column scales
        n_desc = self.m1 * self.m2
        self.register_buffer("desc_mean", torch.zeros(k, n_types, n_desc))  # fitting input standardisation
        self.register_buffer("desc_std", torch.ones(k, n_types, n_desc))

    def reset(self, gen: torch.Generator) -> None:
        for net in list(self.embeddings) + list(self.fittings):
            net.reset(gen)

    def smooth(self, r: torch.Tensor) -> torch.Tensor:
        """s(r) = sw(r)/r: 1/r inside rcut_smth, smoothly (C2) switched to 0 at rcut."""
        u = ((r - self.rcut_smth) / (self.rcut - self.rcut_smth)).clamp(0.0, 1.0)
        sw = u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0
        return sw / r

    def embed(self, s: torch.Tensor, blocks) -> torch.Tensor:
        """s (k, N, S) -> G (k, N, S, M1), each neighbour-type block through its own network
        (or its table, after :meth:`compress`). s (1, N, S) is shared by all members."""
        if s.shape[0] != self.k:
            s = s.expand(self.k, *s.shape[1:])
        k, n, width = s.shape
        x = s if self.tables is not None else (s - self.s_mean.unsqueeze(-1)) / self.s_std.unsqueeze(-1)
        nets = self.tables if self.tables is not None else self.embeddings
        parts = []
        for t in range(self.n_types):
            a, b = int(blocks[t]), int(blocks[t + 1])
            if b > a:
                xt = x[:, :, a:b].reshape(k, n * (b - a))
                xt = xt if self.tables is not None else xt.unsqueeze(-1)
                parts.append(nets[t](xt).reshape(k, n, b - a, self.m1))
        if not parts:  # no neighbours at all: one empty slot
            return s.new_zeros(k, n, width, self.m1)
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)

    def env_matrix(self, d: torch.Tensor, blocks) -> torch.Tensor:
        """d (k, N, S, 3) slot displacements (or (1, N, S, 3) shared by the members) ->
        gr = R~^T G (k, N, 4, M1), before the column scales."""
        r = torch.linalg.vector_norm(d, dim=-1)                          # (k, N, S)
        s = self.smooth(r)
        emb = self.embed(s, blocks)                                       # (k, N, S, M1)
        env = torch.cat([s.unsqueeze(-1), (s / r).unsqueeze(-1) * d], dim=-1)  # (k, N, S, 4)
        return env.transpose(-1, -2) @ emb

    def symmetric(self, gr: torch.Tensor) -> torch.Tensor:
        """gr (k, N, 4, M1) -> se_e2_a descriptor (k, N, M1*M2)."""
        k, n = gr.shape[0], gr.shape[1]
        gr = gr * self.env_scale.view(k, 1, 4, 1)
        return (gr.transpose(-1, -2) @ gr[..., : self.m2]).reshape(k, n, self.m1 * self.m2)

    def descriptor(self, d: torch.Tensor, blocks) -> torch.Tensor:
        """d (k, N, S, 3) slot displacements (or (1, N, S, 3) shared by the members) -> se_e2_a
        descriptor (k, N, M1*M2)."""
        return self.symmetric(self.env_matrix(d, blocks))

    def compress(self) -> "DeepPot":
        """Replace the embedding networks by cubic Hermite tables (inference only)."""
        from elt.potentials.deepmd.compress import tabulate

        self.tables = nn.ModuleList(tabulate(net, self.s_mean, self.s_std) for net in self.embeddings)
        return self

    def atom_energies(self, desc: torch.Tensor, g: Graph) -> torch.Tensor:
        """Descriptors (k, N, M1*M2) -> atomic energies (k, N) eV, each center type through its network."""
        dev, n = desc.device, desc.shape[1]
        e_atom = self.shift[:, torch.as_tensor(g.types, device=dev)]
        for t, idx in enumerate(g.atoms_by_type):
            if len(idx) == 0:
                continue
            it = None if len(idx) == n else torch.as_tensor(idx, device=dev)
            x = desc if it is None else desc[:, it]
            x = (x - self.desc_mean[:, t : t + 1]) / self.desc_std[:, t : t + 1]
            out = self.fittings[t](x).squeeze(-1)
            e_atom = e_atom + out if it is None else e_atom.index_add(1, it, out)
        return e_atom

    @staticmethod
    def per_frame(x: torch.Tensor, g: Graph) -> torch.Tensor:
        """Per-atom values (k, N, ...) summed per frame: (k, F, ...)."""
        if g.n_frames == 1:
            return x.sum(dim=1, keepdim=True)
        frame = torch.as_tensor(g.atom_frame, device=x.device)
        return x.new_zeros(x.shape[0], g.n_frames, *x.shape[2:]).index_add(1, frame, x)

    def forward(self, g: Graph, vec: torch.Tensor, *, forces: bool = True, virial: bool = False,
                create_graph: bool = False, atomic: bool = False, mean: bool = False,
                native: Optional[bool] = None) -> dict:
        """Energies (k, F) eV; forces (k, N, 3) eV/Å; virials (k, F, 3, 3) eV. ``vec`` (N, S, 3); slots
        at or beyond rcut contribute nothing. ``mean``: forces and virials of the members' mean only,
        (1, N, 3) and (1, F, 3, 3), from one gradient through displacements shared by the members
        (cheaper than k of them). ``native``: the compiled C kernels of a compressed model on the CPU
        (:mod:`elt.potentials.deepmd.native`; None: as :func:`~elt.potentials.deepmd.compress.compile_kernels`
        set for the process); they give detached float64 forces and virials."""
        from elt.potentials.deepmd import native as native_kernels

        kernels = None if create_graph else native_kernels.bound(self, vec, native)
        if kernels is not None:
            return self._forward_native(kernels, g, vec, forces=forces, virial=virial, atomic=atomic, mean=mean)
        k, dev = self.k, vec.device
        n, width = vec.shape[0], vec.shape[1]
        d = vec.unsqueeze(0) if mean else vec.unsqueeze(0).expand(k, n, width, 3)
        grads = forces or virial
        if grads:
            d = d.clone().requires_grad_(True)
        with torch.enable_grad() if grads else torch.no_grad():
            e_atom = self.atom_energies(self.descriptor(d, g.blocks), g)
            energy = self.per_frame(e_atom, g)
        result = {"energy": energy}
        if atomic:
            result["atomic_energy"] = e_atom
        if grads:
            grad = torch.autograd.grad(energy.sum(), d, create_graph=create_graph)[0]  # (k, N, S, 3)
            if mean:
                grad = grad / k  # (1, N, S, 3): the gradient of the members' mean energy
                k = 1
            if forces:
                flat = grad.reshape(k, n * width, 3)
                if g.reverse is not None:  # F_i = sum over i's pairs of dE/dd minus the same over reverse pairs
                    rev = _Involution.apply(flat, torch.as_tensor(g.reverse, device=dev))
                    result["forces"] = grad.sum(dim=2) - rev.reshape(k, n, width, 3).sum(dim=2)
                else:
                    nbr = torch.as_tensor(g.neighbor, device=dev).reshape(-1)
                    result["forces"] = grad.sum(dim=2).index_add(1, nbr, flat, alpha=-1.0)
            if virial:
                w = -(d.detach().reshape(k * n, width, 3).transpose(1, 2) @ grad.reshape(k * n, width, 3))
                result["virial"] = self.per_frame(w.reshape(k, n, 3, 3), g)
        return result

    def _forward_native(self, kernels, g: Graph, vec: torch.Tensor, *, forces: bool, virial: bool,
                        atomic: bool, mean: bool) -> dict:
        """:meth:`forward` through the native kernels: descriptor and forces in C, autograd only
        from the descriptor (k, N, M1*M2) through the fitting networks."""
        d = vec.contiguous()
        slot_type = kernels.slot_types(g.blocks)
        gr, desc = kernels.forward(d, slot_type)
        grads = forces or virial
        with torch.enable_grad() if grads else torch.no_grad():
            desc.requires_grad_(grads)
            e_atom = self.atom_energies(desc, g)
            energy = self.per_frame(e_atom, g)
        result = {"energy": energy.detach()}
        if atomic:
            result["atomic_energy"] = e_atom.detach()
        if grads:
            (gdesc,) = torch.autograd.grad(energy.sum() / self.k if mean else energy.sum(), desc)
            as_long = lambda x: torch.as_tensor(x, dtype=torch.long).contiguous()  # noqa: E731
            f, w = kernels.backward(gdesc, gr, d, as_long(g.neighbor), slot_type, as_long(g.atom_frame),
                                    g.n_frames, mean=mean, virial=virial)
            if forces:
                result["forces"] = f
            if virial:
                result["virial"] = w
        return result


def stack_states(states: list[dict]) -> dict:
    """Member state dicts (each with k = 1) -> one state dict with k = len(states)."""
    keys = states[0].keys()
    return {key: torch.cat([s[key] for s in states], dim=0) for key in keys}


def member_state(state: dict, m: int) -> dict:
    """State dict of member m (k = 1) from a stacked state dict."""
    return {key: v[m : m + 1].clone() for key, v in state.items()}


def build(k: int, n_types: int, hyper: dict, dtype: Optional[torch.dtype] = None) -> DeepPot:
    model = DeepPot(k, n_types, hyper["rcut"], hyper["rcut_smth"], list(hyper["embedding"]),
                    int(hyper["axis_neuron"]), list(hyper["fitting"]))
    return model.to(dtype) if dtype is not None else model
