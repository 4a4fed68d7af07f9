"""Tabulated embedding networks for fast inference (DeePMD's "model compression").

An embedding network maps the scalar s(r) to M1 numbers, so it can be replaced by a table: on a
uniform grid of s in [0, s_max] each interval holds the cubic Hermite polynomial through the
network's values and derivatives at its ends. The result is C1 (forces stay continuous), agrees
with the network to ~1e-7 relative, and costs one gather plus three multiply-adds per entry
instead of the network's matmuls and tanh. Beyond s_max (r < 1/s_max) the table continues
linearly. Tables are built from the weights at load time; checkpoints never contain them.
"""

from __future__ import annotations

import torch
from torch import nn

S_MAX = 2.0       # s = 1/r below rcut_smth: the table is exact for r >= 0.5 Å
N_BINS = 1024


def compile_kernels(enable: bool = True) -> bool:
    """Compiled (native C) kernels for compressed models on the CPU from now on, in this process:
    :func:`elt.potentials.deepmd.native.compile_kernels`."""
    from elt.potentials.deepmd.native import compile_kernels as native_compile

    return native_compile(enable)


class _Lookup(torch.autograd.Function):
    """G(s) from the four coefficient tables; saves dG/ds for the (first-order) backward."""

    @staticmethod
    def forward(ctx, s, c0, c1, c2, c3, offsets, h, n):
        ctx.h = h
        k, b = s.shape
        u = s / h
        idx = u.floor().clamp_(0, n - 1)
        t = (u - idx).unsqueeze(-1)
        flat = (idx.long() + offsets).reshape(-1)
        a0, a1, a2, a3 = (c.index_select(0, flat).view(k, b, -1) for c in (c0, c1, c2, c3))
        g = torch.addcmul(a0, torch.addcmul(a1, torch.addcmul(a2, a3, t), t), t)
        dg = torch.addcmul(a1, torch.addcmul(a2, a3, t, value=1.5), t, value=2.0)
        ctx.save_for_backward(dg)
        return g

    @staticmethod
    def backward(ctx, grad_g):
        (dg,) = ctx.saved_tensors
        grad_s = (grad_g * dg).sum(-1) / ctx.h
        return grad_s, None, None, None, None, None, None, None


class EmbeddingTable(nn.Module):
    """k members' embedding G(s) as cubic Hermite pieces: G = c0 + t c1 + t^2 c2 + t^3 c3 with
    t the position inside the bin; each c_j is stored as (k * (n_bins + 1), M1)."""

    def __init__(self, coeffs: torch.Tensor, h: float):
        super().__init__()
        k, n, _, m1 = coeffs.shape
        self.k, self.n, self.m1, self.h = k, n, m1, float(h)
        for j in range(4):
            self.register_buffer(f"c{j}", coeffs[:, :, j].reshape(k * n, m1).contiguous())
        self.register_buffer("offsets", (torch.arange(k) * n).view(k, 1))

    def packed(self) -> torch.Tensor:
        """The four coefficient tables side by side, (k, n_bins + 1, 4, M1) (the native kernels' layout)."""
        return torch.stack([self.c0, self.c1, self.c2, self.c3], dim=1).view(self.k, self.n, 4, self.m1)

    def forward(self, s: torch.Tensor) -> torch.Tensor:  # (k, B) -> (k, B, M1)
        """First derivatives only (inference): forces and virials, not force training."""
        return _Lookup.apply(s, self.c0, self.c1, self.c2, self.c3, self.offsets, self.h, self.n)


@torch.no_grad()
def tabulate(embedding: nn.Module, s_mean: torch.Tensor, s_std: torch.Tensor,
             s_max: float = S_MAX, n_bins: int = N_BINS) -> EmbeddingTable:
    """Table of ``embedding((s - s_mean) / s_std)`` for k members (s_mean, s_std: (k, 1))."""
    dtype = next(embedding.parameters()).dtype
    emb = embedding.to(torch.float64)
    k = s_mean.shape[0]
    h = s_max / n_bins
    knots = (torch.arange(n_bins + 1, dtype=torch.float64) * h).repeat(k, 1)
    mean, std = s_mean.to(torch.float64), s_std.to(torch.float64)

    x = ((knots - mean) / std).unsqueeze(-1)
    g, dg = emb.forward_tangent(x, (1.0 / std).unsqueeze(-1).expand_as(x))  # values and dG/ds
    embedding.to(dtype)
    p0, p1, m0, m1 = g[:, :-1], g[:, 1:], h * dg[:, :-1], h * dg[:, 1:]
    cubic = torch.stack([p0, m0, 3 * (p1 - p0) - 2 * m0 - m1, 2 * (p0 - p1) + m0 + m1], dim=2)
    last = torch.stack([g[:, -1], h * dg[:, -1], torch.zeros_like(g[:, -1]), torch.zeros_like(g[:, -1])], dim=1)
    coeffs = torch.cat([cubic, last.unsqueeze(1)], dim=1)          # (k, n_bins + 1, 4, M1)
    return EmbeddingTable(coeffs.to(dtype), h)
