"""Metadynamics on a few collective variables: Gaussian hills deposited along the trajectory.

    V(s) = Σ_h w_h · exp(−Σ_d (s_d − c_hd)² / (2 σ_d²))          (eV)
    F_bias = −Σ_d ∂V/∂s_d · ∇_R s_d                                (eV/Å)

A hill of height ``height`` (eV) and widths σ_d (CV units) is deposited at the current CV values
every ``stride`` MD steps (the MD driver calls :meth:`MetadCalculator.on_step`). Well-tempered
(``biasfactor`` γ > 1): w = height·exp(−V(s)/(k_B·(γ − 1)·T)) with T the walker's temperature.
Periodic CVs (dihedral) use the difference wrapped to (−π, π].

Confidence-switched (reinforced dynamics on CVs; ``switch`` a
:class:`~elt.sampling.bias.ConfidenceSwitch`): the hills act only where the ensemble is trusted,

    E_b = w(σ(R))·V(s(R)),   F_b = −w·Σ_d ∂V/∂s_d·∇_R s_d − V·dw/dR

with σ the deviation of the inner (ensemble) calculator's members (their energy change since the
start frame, per atom; during the switch's warm-up w = 0). Hills are deposited as without the
switch (well-tempered heights from the unswitched V).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator

from elt.sampling.bias import ConfidenceSwitch, WrappedCalculator, members
from elt.sampling.cv import CV, TWO_PI
from elt.sampling.cv import from_config as cv_from_config


class MetadCalculator(WrappedCalculator):
    def __init__(self, inner: Calculator, cvs: Sequence[CV], widths: Sequence[float], height: float = 0.05,
                 stride: int = 50, biasfactor: Optional[float] = None, temperature: Optional[float] = None,
                 switch: Optional[ConfidenceSwitch] = None, **kwargs):
        super().__init__(inner, **kwargs)
        if len(cvs) != len(widths) or not cvs:
            raise ValueError(f"metadynamics needs one width per CV, got {len(cvs)} CVs and {len(widths)} widths")
        if biasfactor is not None and (biasfactor <= 1 or not temperature):
            raise ValueError("well-tempered metadynamics needs biasfactor > 1 and a temperature")
        self.cvs = list(cvs)
        self.widths = np.asarray(widths, dtype=np.float64)
        self.periodic = np.array([cv.periodic for cv in self.cvs])
        self.height, self.stride = float(height), int(stride)
        self.biasfactor, self.temperature = biasfactor, temperature
        self.switch = switch
        self.centers = np.zeros((0, len(self.cvs)))
        self.heights = np.zeros(0)
        self.hill_steps: list[int] = []

    @classmethod
    def from_config(cls, inner: Calculator, cfg, temperature: Optional[float]) -> "MetadCalculator":
        conf = getattr(cfg, "confidence", None)
        return cls(inner, [cv_from_config(c) for c in cfg.cvs], [c.width for c in cfg.cvs], cfg.height,
                   cfg.stride, cfg.biasfactor, temperature,
                   switch=ConfidenceSwitch.from_config(conf) if conf is not None else None)

    # ----------------------------------------------------------------- CVs and bias potential
    def cv_values(self, atoms) -> tuple[np.ndarray, np.ndarray]:
        """CV values (d,) and their gradients (d, N, 3)."""
        vals, grads = zip(*(cv(atoms) for cv in self.cvs))
        return np.array(vals, dtype=np.float64), np.stack(grads)

    def _diff(self, s: np.ndarray) -> np.ndarray:
        d = s[None, :] - self.centers
        if self.periodic.any():
            p = d[:, self.periodic]
            d[:, self.periodic] = p - TWO_PI * np.round(p / TWO_PI)
        return d

    def potential(self, s: np.ndarray) -> tuple[float, np.ndarray]:
        """V(s) (eV) and dV/ds (d,) from the hills deposited so far."""
        s = np.asarray(s, dtype=np.float64)
        if len(self.heights) == 0:
            return 0.0, np.zeros_like(s)
        d = self._diff(s) / self.widths
        w = self.heights * np.exp(-0.5 * np.sum(d * d, axis=1))
        return float(w.sum()), -(w[:, None] * d / self.widths).sum(axis=0)

    def bias(self, atoms, results):
        s, grads = self.cv_values(atoms)
        v, dv = self.potential(s)
        f = -np.tensordot(dv, grads, axes=(0, 0))
        if self.switch is None:
            return v, f
        w, dw = self.switch(*members(results))
        return w * v, w * f - v * dw

    # ----------------------------------------------------------------- hills
    def deposit(self, s: np.ndarray, step: int) -> float:
        w = self.height
        if self.biasfactor is not None:
            v, _ = self.potential(s)
            w *= math.exp(-v / (units.kB * (self.biasfactor - 1.0) * self.temperature))
        self.centers = np.vstack([self.centers, np.asarray(s, dtype=np.float64)[None]])
        self.heights = np.append(self.heights, w)
        self.hill_steps.append(int(step))
        return w

    def on_step(self, step, atoms):
        super().on_step(step, atoms)
        if self.switch is not None:
            self.switch.observe()
        if step <= 0 or step % self.stride or (self.hill_steps and self.hill_steps[-1] == step):
            return
        self.deposit(self.cv_values(atoms)[0], step)
        self.results = {}  # the cached forces lack the new hill: the next step recomputes them

    def write_hills(self, path: Path) -> None:
        names = " ".join(f"{cv.name}{i}" for i, cv in enumerate(self.cvs))
        table = np.column_stack([np.asarray(self.hill_steps, dtype=float), self.centers, self.heights]) \
            if len(self.heights) else np.zeros((0, len(self.cvs) + 2))
        np.savetxt(path, table, fmt="%12.6g", header=f"step {names} height_eV  (widths {self.widths.tolist()})")

    def write_colvar(self, path: Path, steps: Sequence[int], frames: Sequence) -> None:
        """CV values of recorded frames (one row per frame)."""
        names = " ".join(f"{cv.name}{i}" for i, cv in enumerate(self.cvs))
        rows = [[float(st), *self.cv_values(a)[0]] for st, a in zip(steps, frames)]
        np.savetxt(path, np.asarray(rows).reshape(-1, len(self.cvs) + 1), fmt="%14.6g", header=f"step {names}")
