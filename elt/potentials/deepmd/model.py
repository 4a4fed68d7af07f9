"""Deep Potential Smooth Edition (se_e2_a) with an ensemble dimension on every weight.

Every parameter and buffer has a leading dimension k (the members), so k members run in one
graph with batched matmuls. A single member is the same module with k = 1.

For a pair (i, j) with displacement d = r_j - r_i and distance r:
  s(r)  = sw(r) / r,  sw = 1 below rcut_smth, u^3 (-6u^2 + 15u - 10) + 1 between, 0 at rcut
  R~_ij = (s, s x/r, s y/r, s z/r) scaled per member (data statistics, 1/mean neighbour count)
  G_ij  = embedding_{type j}(normalised s)                             (M1 columns)
  D_i   = (G^T R~)(R~^T G<)  with G< the first M2 columns               (M1*M2 features)
  E_i   = fitting_{type i}(D_i) + shift_{type i};   E = sum_i E_i
Forces and virials come from the gradient of E with respect to the pair vectors d:
  F_i = sum_{pairs with center i} dE/dd - sum_{pairs with neighbour i} dE/dd,
  W   = -sum_pairs d (x) dE/dd   (ASE: stress = -W / V).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from elt.potentials.deepmd.graph import Graph


class EnsembleLinear(nn.Module):
    def __init__(self, k: int, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(k, n_in, n_out))
        self.bias = nn.Parameter(torch.empty(k, 1, n_out))

    def reset(self, gen: torch.Generator, bias_std: float = 1.0) -> None:
        n_in, n_out = self.weight.shape[1:]
        with torch.no_grad():
            self.weight.normal_(0.0, 1.0 / math.sqrt(n_in + n_out), generator=gen)
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
            self.out.reset(gen, bias_std=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            y = torch.tanh(layer(x))
            n_in, n_out = x.shape[-1], y.shape[-1]
            if n_out == n_in:
                y = y + x
            elif n_out == 2 * n_in:
                y = y + torch.cat([x, x], dim=-1)
            x = y
        return self.out(x) if self.out is not None else x


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
        self.register_buffer("shift", torch.zeros(k, n_types))       # eV per atom of each type
        self.register_buffer("s_mean", torch.zeros(k, 1))            # embedding input normalisation
        self.register_buffer("s_std", torch.ones(k, 1))
        self.register_buffer("env_scale", torch.ones(k, 1, 4))       # R~ column scales

    def reset(self, gen: torch.Generator) -> None:
        for net in list(self.embeddings) + list(self.fittings):
            net.reset(gen)

    def smooth(self, r: torch.Tensor) -> torch.Tensor:
        """s(r) = sw(r)/r: 1/r inside rcut_smth, smoothly (C2) switched to 0 at rcut."""
        u = ((r - self.rcut_smth) / (self.rcut - self.rcut_smth)).clamp(0.0, 1.0)
        sw = u * u * u * (-6.0 * u * u + 15.0 * u - 10.0) + 1.0
        return sw / r

    def forward(self, g: Graph, vec: torch.Tensor, *, forces: bool = True, virial: bool = False,
                create_graph: bool = False, atomic: bool = False) -> dict:
        """Energies (k, F) eV; forces (k, N, 3) eV/Å; virials (k, F, 3, 3) eV. ``vec`` (P, 3)."""
        k, dev, dtype = self.k, vec.device, vec.dtype
        n, p = g.n_atoms, vec.shape[0]
        d = vec.unsqueeze(0).expand(k, p, 3)
        if forces or virial:
            d = d.clone().requires_grad_(True)
        with torch.enable_grad() if (forces or virial) else torch.no_grad():
            r = torch.linalg.vector_norm(d, dim=-1)                     # (k, P)
            s = self.smooth(r)
            env = torch.cat([s.unsqueeze(-1), (s / r).unsqueeze(-1) * d], dim=-1) * self.env_scale
            x = ((s - self.s_mean) / self.s_std).unsqueeze(-1)          # (k, P, 1)
            off = g.type_offsets
            parts = [self.embeddings[t](x[:, off[t]:off[t + 1]]) for t in range(self.n_types)
                     if off[t + 1] > off[t]]
            emb = torch.cat(parts + [x.new_zeros(k, 1, self.m1)], dim=1)  # (k, P+1, M1)
            env = torch.cat([env, env.new_zeros(k, 1, 4)], dim=1)         # (k, P+1, 4)
            pad = torch.as_tensor(g.pad, device=dev)
            gr = env[:, pad].transpose(-1, -2) @ emb[:, pad]               # (k, N, 4, M1)
            desc = (gr.transpose(-1, -2) @ gr[..., : self.m2]).reshape(k, n, self.m1 * self.m2)
            e_atom = self.shift[:, torch.as_tensor(g.types, device=dev)]
            for t, idx in enumerate(g.atoms_by_type):
                if len(idx) == 0:
                    continue
                it = torch.as_tensor(idx, device=dev)
                out = self.fittings[t](desc[:, it]).squeeze(-1)
                e_atom = e_atom.index_add(1, it, out)
            frame = torch.as_tensor(g.atom_frame, device=dev)
            energy = torch.zeros(k, g.n_frames, dtype=dtype, device=dev).index_add(1, frame, e_atom)
        result = {"energy": energy}
        if atomic:
            result["atomic_energy"] = e_atom
        if forces or virial:
            grad = torch.autograd.grad(energy.sum(), d, create_graph=create_graph, allow_unused=True)[0]
            if grad is None:  # no pairs at all (isolated atoms)
                grad = torch.zeros_like(d)
            if forces:
                ci = torch.as_tensor(g.center, device=dev)
                nj = torch.as_tensor(g.neighbor, device=dev)
                f = torch.zeros(k, n, 3, dtype=dtype, device=dev)
                result["forces"] = f.index_add(1, ci, grad).index_add(1, nj, -grad)
            if virial:
                pf = torch.as_tensor(g.pair_frame, device=dev)
                w = -d.detach().unsqueeze(-1) * grad.unsqueeze(-2)            # (k, P, 3, 3)
                result["virial"] = torch.zeros(k, g.n_frames, 3, 3, dtype=dtype, device=dev).index_add(
                    1, pf, w)
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
