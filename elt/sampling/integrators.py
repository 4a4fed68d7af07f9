"""MD integrators vectorised over the walkers of a batch (torch, ASE units).

Positions r (N, 3) Å, momenta p (N, 3) in ASE units (amu·Å/ase-time), masses m (N, 1) amu, all
walkers' atoms concatenated (``wid`` (N,) the walker of each atom); cells (W, 3, 3) Å. One step is
``before_force`` (everything up to the new positions), a force evaluation by the caller, then
``after_force`` (the last half kick):

- :class:`VelocityVerlet` (NVE): B(dt/2) A(dt) | F | B(dt/2), ASE's VelocityVerlet.
- :class:`LangevinBAOAB` (NVT): B(dt/2) A(dt/2) O(dt) A(dt/2) | F | B(dt/2), with
  O: p <- c1 p + sqrt((1 - c1²) m kB T) ξ, c1 = exp(-γ dt) (Leimkuhler & Matthews).
- :class:`BerendsenNPT`: BAOAB, then an isotropic Berendsen barostat rescales each periodic
  walker's cell and positions by μ = [1 - β dt/τ_P (P0 - P)]^(1/3) before the force evaluation,
  with P = (2 E_kin + tr W) / (3 V) from the last virial W (eV). β = 4.57e-5 /bar, τ_P = 1 ps
  (the ASE path's NPTBerendsen constants); the temperature is held by the Langevin part.

ξ comes from ``noise()`` (N, 3): the caller draws each walker's rows from that walker's own
generator, so a walker's trajectory does not depend on the batch it runs in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from ase import units


@dataclass
class MDState:
    pos: torch.Tensor             # (N, 3) Å
    mom: torch.Tensor             # (N, 3)
    mass: torch.Tensor            # (N, 1) amu
    cells: torch.Tensor           # (W, 3, 3) Å
    wid: torch.Tensor             # (N,) walker of each atom (0..W-1)
    kT: torch.Tensor              # (N, 1) eV, the walker's target temperature per atom
    forces: Optional[torch.Tensor] = None   # (N, 3) eV/Å driving the MD (mean or member 0, plus bias)
    virials: Optional[torch.Tensor] = None  # (W, 3, 3) eV of the last evaluation (npt)
    pressure: Optional[torch.Tensor] = None  # (W,) eV/Å³ target (npt)

    def select(self, atoms: torch.Tensor, walkers: torch.Tensor) -> "MDState":
        """The state restricted to atom rows ``atoms`` and walkers ``walkers`` (renumbered 0..)."""
        remap = torch.full((self.cells.shape[0],), -1, dtype=torch.long, device=self.wid.device)
        remap[walkers] = torch.arange(len(walkers), device=self.wid.device)
        take = lambda x: None if x is None else x[atoms]  # noqa: E731
        return MDState(self.pos[atoms], self.mom[atoms], self.mass[atoms], self.cells[walkers],
                       remap[self.wid[atoms]], self.kT[atoms], take(self.forces),
                       None if self.virials is None else self.virials[walkers],
                       None if self.pressure is None else self.pressure[walkers])

    def kinetic(self) -> torch.Tensor:
        """Kinetic energy per walker (W,) eV."""
        e = 0.5 * (self.mom * self.mom / self.mass).sum(dim=1)
        return torch.zeros(self.cells.shape[0], dtype=e.dtype, device=e.device).index_add_(0, self.wid, e)


class VelocityVerlet:
    def __init__(self, timestep_fs: float):
        self.dt = timestep_fs * units.fs

    def before_force(self, s: MDState, noise: Callable[[], torch.Tensor]) -> None:
        s.mom += 0.5 * self.dt * s.forces
        s.pos += self.dt * s.mom / s.mass

    def after_force(self, s: MDState) -> None:
        s.mom += 0.5 * self.dt * s.forces


class LangevinBAOAB(VelocityVerlet):
    def __init__(self, timestep_fs: float, friction_per_fs: float):
        super().__init__(timestep_fs)
        self.c1 = float(torch.exp(torch.tensor(-friction_per_fs * timestep_fs, dtype=torch.float64)))
        self.c2 = (1.0 - self.c1 * self.c1) ** 0.5

    def before_force(self, s: MDState, noise: Callable[[], torch.Tensor]) -> None:
        s.mom += 0.5 * self.dt * s.forces
        s.pos += 0.5 * self.dt * s.mom / s.mass
        s.mom.mul_(self.c1).add_(self.c2 * torch.sqrt(s.mass * s.kT) * noise())
        s.pos += 0.5 * self.dt * s.mom / s.mass


class BerendsenNPT(LangevinBAOAB):
    def __init__(self, timestep_fs: float, friction_per_fs: float, taup_fs: float = 1000.0,
                 compressibility: float = 4.57e-5 / units.bar):
        super().__init__(timestep_fs, friction_per_fs)
        self.taup = taup_fs * units.fs
        self.beta = compressibility

    def before_force(self, s: MDState, noise: Callable[[], torch.Tensor]) -> None:
        super().before_force(s, noise)
        if s.virials is None:
            return
        vol = torch.linalg.det(s.cells).abs()
        p_now = (2.0 * s.kinetic() + torch.diagonal(s.virials, dim1=-2, dim2=-1).sum(-1)) / (3.0 * vol)
        mu = (1.0 - self.beta * self.dt / self.taup * (s.pressure - p_now)).clamp(0.9, 1.1) ** (1.0 / 3.0)
        s.cells *= mu.view(-1, 1, 1)
        s.pos *= mu[s.wid].unsqueeze(1)


def make_integrator(ensemble: str, timestep_fs: float, friction_per_fs: float):
    if ensemble == "nve":
        return VelocityVerlet(timestep_fs)
    if ensemble == "nvt":
        return LangevinBAOAB(timestep_fs, friction_per_fs)
    if ensemble == "npt":
        return BerendsenNPT(timestep_fs, friction_per_fs)
    raise ValueError(f"unknown ensemble {ensemble!r} (use nvt, nve or npt)")
