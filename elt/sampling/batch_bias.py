"""Bias wrappers (:mod:`elt.sampling.bias`, :mod:`elt.sampling.metad`) on the batched path.

Each biased walker keeps its own wrapper chain; its innermost calculator is a
:class:`ResultsFeed` that hands the chain the batch's results for that walker (mean or member-0
energy and forces, the members' energies (k,) and forces (k, n, 3)), so every bias kind runs its
own ``bias(atoms, results)`` and ``on_step(step, atoms)`` code, exactly as on the ASE path.
"""

from __future__ import annotations

import torch
from ase.calculators.calculator import Calculator


class ResultsFeed(Calculator):
    """Innermost calculator of a walker's bias chain in a batch: hands the batch's results for
    that walker (``pending``) to the wrappers above it."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self):
        super().__init__()
        self.pending: dict = {}

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        self.results = dict(self.pending)


def attach_feed(chain) -> ResultsFeed:
    """Replace the innermost calculator of a wrapper chain by a :class:`ResultsFeed`."""
    feed = ResultsFeed()
    calc = chain
    while isinstance(getattr(calc, "inner", None), Calculator) and hasattr(calc.inner, "inner"):
        calc = calc.inner
    if not hasattr(calc, "inner"):
        raise ValueError(f"biases must be bias wrappers (with .inner), got {type(chain).__name__}")
    calc.inner = feed
    return feed


def biased_forces(walkers, offsets, positions: torch.Tensor, out, f: torch.Tensor, propagate: str) -> torch.Tensor:
    """The MD forces (N, 3) with each biased walker's rows replaced by its chain's forces, from the
    batch's results ``out`` and the unbiased propagation forces ``f``."""
    pos = positions.detach().cpu().numpy()
    f_np = f.cpu().numpy().copy()
    e_prop = (out.energies.mean(dim=0) if propagate == "mean" else out.energies[0]).cpu().numpy()
    e_m, f_m = out.energies.cpu().numpy(), out.forces.cpu().numpy()
    for w, walker in enumerate(walkers):
        if walker.chain is None:
            continue
        sl = slice(offsets[w], offsets[w + 1])
        walker.atoms.positions = pos[sl]
        walker.feed.pending = {"energy": float(e_prop[w]), "free_energy": float(e_prop[w]),
                               "forces": f_np[sl].copy(), "energies_members": e_m[:, w],
                               "forces_members": f_m[:, sl]}
        walker.chain.calculate(walker.atoms, ["energy", "forces"])
        f_np[sl] = walker.chain.results["forces"]
    return torch.as_tensor(f_np, dtype=f.dtype, device=f.device)


def bias_hooks(walkers, offsets, positions: torch.Tensor, forces: torch.Tensor, step: int) -> torch.Tensor:
    """Call each biased walker's ``on_step(step, atoms)``; a chain that dropped its results (a new
    hill) is recomputed from the same ensemble results. Returns the (updated) MD forces."""
    pos = positions.detach().cpu().numpy()
    f_np = None
    for w, walker in enumerate(walkers):
        if walker.chain is None:
            continue
        sl = slice(offsets[w], offsets[w + 1])
        walker.atoms.positions = pos[sl]
        walker.chain.on_step(step, walker.atoms)
        if not walker.chain.results:
            walker.chain.calculate(walker.atoms, ["energy", "forces"])
            if f_np is None:
                f_np = forces.cpu().numpy().copy()
            f_np[sl] = walker.chain.results["forces"]
    return forces if f_np is None else torch.as_tensor(f_np, dtype=forces.dtype, device=forces.device)
