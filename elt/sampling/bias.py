"""Uncertainty-driven bias: ASE calculator wrappers that add E_bias(σ_E²) to an ensemble calculator.

The inner calculator puts the members' energies (k,) eV and forces (k, N, 3) eV/Å in
``results["energies_members"]`` and ``results["forces_members"]`` (:class:`EnsembleCalculator`
does). With the variance of the member energies

    σ_E² = (1/k) Σ_m (E_m − Ē)²                                  (population variance, eV²)

its gradient needs no extra autograd pass: since Σ_m (E_m − Ē) = 0 the dĒ/dR term drops and

    dσ_E²/dR = (2/k) Σ_m (E_m − Ē) dE_m/dR = −(2/k) Σ_m (E_m − Ē) F_m.

UDD (Kulichenko et al., Nat. Comput. Sci. 3, 230 (2023)), with k members and N atoms:

    E_b = A·[exp(−σ_E²/(k·N·B²)) − 1]  ∈ (−A, 0]
    F_b = −dE_b/dR = A/(k·N·B²)·exp(−σ_E²/(k·N·B²))·dσ_E²/dR

HAL (van der Oord et al., npj Comput. Mater. 9, 168 (2023)): E_b = −τ·σ_E and
F_b = τ·dσ_E/dR = τ/(2σ_E)·dσ_E²/dR, with τ optionally adapted after every MD step so that the
running mean of |F_b| over the running mean of |F| (per-atom force norms) is ``target_ratio``.

What a wrapper puts in ``results``: ``energy``/``free_energy``/``forces`` include the bias (the MD
follows them); every other key of the inner results (member energies and forces, the deviations
``max_devi_f`` ...) is the inner, unbiased value; ``energy_unbiased``, ``bias_energy`` (eV) and
``bias_forces`` (N, 3) are added. ``stress`` is passed through unbiased: the bias has no cell
derivative here, so an npt barostat sees the unbiased stress.

Confidence switch (:class:`ConfidenceSwitch`), shared by the flattening bias and the switched
metadynamics. σ is the std over the k members of their energy change since the walker's start
frame R₀, per atom: with ΔE_m = E_m(R) − E_m(R₀),

    σ = std_m(ΔE_m)/N  (eV/atom),   dσ/dR = dσ_ΔE²/dR / (2·σ_ΔE·N)   (energy_variance of ΔE_m)

so constant offsets between members (often larger than their disagreement on energy
differences) do not count. With x = (σ − lo)/(hi − lo) clipped to [0, 1]:

    w(σ) = 1 − (6x⁵ − 15x⁴ + 10x³)      (quintic smoothstep: 1 below lo, 0 above hi, C²)
    dw/dR = w'(σ)·dσ/dR

Levels not given are calibrated on the walker itself: for its first ``warmup`` MD steps w = 0
(the bias is off: plain MD in the start basin), then lo = ``lo_factor``·⟨σ⟩ and
hi = ``hi_factor``·⟨σ⟩ with ⟨σ⟩ the mean σ of the warm-up, and kept.

Flattening, the seeds' bias (reinforced dynamics, Zhang, Wang & E, J. Chem. Phys. 148, 124113
(2018)): where the ensemble is confident the walker feels the learned landscape flattened by
1 − λ, so it leaves known basins; where the ensemble is unsure it feels the ensemble's own
landscape Ē:

    E_b = −λ·w(σ)·(Ē − E_ref),           λ ∈ [0, 1) the strength
    F_b = −dE_b/dR = −λ·w·F̄ + λ·(Ē − E_ref)·dw/dR        (F̄ = mean of the members' forces)

so the total is (1 − λ·w)·Ē + λ·w·E_ref: in the confident region the force is exactly (1 − λ)·F̄
(barriers lowered by the factor 1 − λ, as if the configurational temperature were T/(1 − λ)),
and E_ref enters only through the switch. E_ref is the walker's running mean of Ē (set on the
start frame, then after every MD step E_ref ← E_ref + (Ē − E_ref)/memory), so the step of
λ·(Ē − E_ref) at the confidence boundary averages to zero: the boundary is neither a wall (as a
fixed start energy or a running minimum, below the thermal mean, would make it) nor a sink.
Between two MD steps E_ref, R₀'s energies and the levels are constants, so the forces are the exact gradient
of the energy the walker feels at that step (checked by finite differences); the history
dependence is that of metadynamics' hills.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from ase.calculators.calculator import Calculator, all_changes


def energy_variance(energies: np.ndarray, forces: np.ndarray) -> tuple[float, np.ndarray]:
    """Members' energies (k,) and forces (k, N, 3) -> (σ_E² in eV², dσ_E²/dR (N, 3) in eV²/Å)."""
    e = np.asarray(energies, dtype=np.float64)
    f = np.asarray(forces, dtype=np.float64)
    k = e.shape[0]
    de = e - e.mean()
    var = float(np.mean(de * de))
    grad = -(2.0 / k) * np.tensordot(de, f, axes=(0, 0))
    return var, grad


def smooth_switch(x: float) -> tuple[float, float]:
    """(w, dw/dx) of w = 1 − (6x⁵ − 15x⁴ + 10x³) with x clipped to [0, 1] (w = 1 at x ≤ 0, 0 at x ≥ 1)."""
    if x <= 0.0:
        return 1.0, 0.0
    if x >= 1.0:
        return 0.0, 0.0
    return 1.0 - x ** 3 * (10.0 - 15.0 * x + 6.0 * x * x), -30.0 * x * x * (1.0 - x) ** 2


class ConfidenceSwitch:
    """w(σ): 1 where the ensemble is confident (σ ≤ lo), 0 where it is not (σ ≥ hi), C² between.
    σ is the std over members of their energy change since the walker's start frame, per atom
    (eV/atom): constant offsets between members (common after short trainings, and often larger
    than the disagreement on energy differences) do not count. Levels left None are set after a
    warm-up of ``warmup`` MD steps to ``lo_factor``/``hi_factor`` times the mean σ of the warm-up;
    during the warm-up w = 0 (the bias is off, the walker samples its start basin). The owner
    calls :meth:`observe` after every MD step (see the module docstring)."""

    def __init__(self, lo: Optional[float] = None, hi: Optional[float] = None, lo_factor: float = 2.0,
                 hi_factor: float = 4.0, warmup: int = 100, floor: float = 1e-6):
        if not 0 <= lo_factor < hi_factor:
            raise ValueError(f"confidence factors need 0 ≤ lo_factor < hi_factor, got {lo_factor}, {hi_factor}")
        if lo is not None and hi is not None and not 0 <= lo < hi:
            raise ValueError(f"confidence levels need 0 ≤ lo < hi (eV/atom), got lo={lo}, hi={hi}")
        self.lo, self.hi = lo, hi
        self.lo_factor, self.hi_factor, self.floor = float(lo_factor), float(hi_factor), float(floor)
        self.warmup = max(int(warmup), 1)
        self.e0: Optional[np.ndarray] = None  # the members' energies on the start frame
        self.sigma: Optional[float] = None  # σ at the last evaluation
        self._seen: list[float] = []

    @classmethod
    def from_config(cls, cfg) -> "ConfidenceSwitch":
        return cls(cfg.lo, cfg.hi, cfg.lo_factor, cfg.hi_factor, cfg.warmup)

    @property
    def calibrated(self) -> bool:
        return self.lo is not None and self.hi is not None

    def observe(self) -> None:
        """After an MD step: during the warm-up, count that step's σ; at its end set the levels."""
        if self.calibrated or self.sigma is None:
            return
        self._seen.append(self.sigma)
        if len(self._seen) >= self.warmup:
            ref = max(float(np.mean(self._seen)), self.floor)
            if self.lo is None:
                self.lo = self.lo_factor * ref if self.hi is None else min(self.lo_factor * ref, 0.5 * self.hi)
            if self.hi is None:
                self.hi = max(self.hi_factor * ref, self.lo + self.floor)

    def __call__(self, energies: np.ndarray, forces: np.ndarray) -> tuple[float, np.ndarray]:
        """Members' energies (k,) and forces (k, N, 3) -> (w, dw/dR (N, 3) in 1/Å)."""
        e = np.asarray(energies, dtype=np.float64)
        n = np.asarray(forces).shape[1]
        if self.e0 is None:
            self.e0 = e.copy()
        var, dvar = energy_variance(e - self.e0, forces)  # the offsets e0 are constants
        sd = math.sqrt(var)
        self.sigma = sd / n
        if not self.calibrated:
            return 0.0, np.zeros_like(dvar)
        w, dw_dx = smooth_switch((self.sigma - self.lo) / (self.hi - self.lo))
        if dw_dx == 0.0:
            return w, np.zeros_like(dvar)
        dsigma = dvar / (2.0 * max(sd, 1e-300) * n)
        return w, (dw_dx / (self.hi - self.lo)) * dsigma


def members(results: dict) -> tuple[np.ndarray, np.ndarray]:
    """The members' energies (k,) and forces (k, N, 3) from an ensemble calculator's results."""
    if "energies_members" not in results or "forces_members" not in results:
        raise ValueError("a confidence-switched bias needs an ensemble calculator (energies_members and "
                         "forces_members in its results), got results with keys " + ", ".join(sorted(results)))
    return np.asarray(results["energies_members"], np.float64), np.asarray(results["forces_members"], np.float64)


class WrappedCalculator(Calculator):
    """An inner calculator plus a bias term; subclasses implement :meth:`bias`.

    :meth:`on_step` is called by the MD driver after every step (step number, atoms); wrappers
    that deposit hills or adapt parameters override it and call ``super().on_step``.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, inner: Calculator, **kwargs):
        super().__init__(**kwargs)
        self.inner = inner

    def bias(self, atoms, results: dict) -> tuple[float, np.ndarray]:  # pragma: no cover - abstract
        """(bias energy in eV, bias forces (N, 3) in eV/Å) from the inner results."""
        raise NotImplementedError

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        props = list(dict.fromkeys(["energy", "forces", *properties]))
        self.inner.calculate(self.atoms, props, all_changes)
        res = dict(self.inner.results)
        e_b, f_b = self.bias(self.atoms, res)
        e = float(res["energy"]) + e_b
        res.update(energy=e, free_energy=e, forces=np.asarray(res["forces"], dtype=np.float64) + f_b,
                   energy_unbiased=float(self.inner.results["energy"]), bias_energy=float(e_b), bias_forces=f_b)
        # a wrapper inside a wrapper: the unbiased energy is the innermost one
        if "energy_unbiased" in self.inner.results:
            res["energy_unbiased"] = float(self.inner.results["energy_unbiased"])
            res["bias_energy"] = e - res["energy_unbiased"]
        self.results = res

    def on_step(self, step: int, atoms) -> None:
        hook = getattr(self.inner, "on_step", None)
        if hook is not None:
            hook(step, atoms)
            if not self.inner.results:  # the inner bias changed (a new hill): recompute next time
                self.results = {}


class UDDCalculator(WrappedCalculator):
    """Uncertainty-driven dynamics: E_b = A·[exp(−σ_E²/(k·N·B²)) − 1]; ``strength`` A, ``width`` B (eV).

    ``width`` None: B is set at the first evaluation (the walker's start frame) so that
    σ_E²/(k·N·B²) = 1 there, then kept: the bias acts from the start and flattens once the walker
    has reached a few times the start's σ_E. (How large σ_E is depends on the ensemble, e.g. on
    constant energy offsets between members, so a fixed B can leave the bias saturated at zero force.)
    """

    def __init__(self, inner: Calculator, strength: float = 1.0, width: Optional[float] = None, **kwargs):
        super().__init__(inner, **kwargs)
        if strength <= 0 or (width is not None and width <= 0):
            raise ValueError(f"UDD strength and width must be positive, got A={strength}, B={width}")
        self.strength = float(strength)
        self.width = None if width is None else float(width)

    def bias(self, atoms, results):
        e, f = results["energies_members"], results["forces_members"]
        var, dvar = energy_variance(e, f)
        if self.width is None:
            self.width = max(math.sqrt(var / (len(e) * len(atoms))), 1e-6)
        c = len(e) * len(atoms) * self.width ** 2
        ex = math.exp(-var / c)
        return self.strength * (ex - 1.0), (self.strength / c) * ex * dvar


class HALCalculator(WrappedCalculator):
    """HAL-style bias E_b = −τ·σ_E. With ``target_ratio`` τ is set at the first evaluation and
    adapted after every MD step from running means (over about ``memory`` steps) of the per-atom
    norms of the true and the unit-τ bias forces: τ = target_ratio·⟨|F|⟩/⟨|dσ_E/dR|⟩."""

    def __init__(self, inner: Calculator, tau: float = 1.0, target_ratio: Optional[float] = None,
                 memory: int = 20, eps: float = 1e-10, **kwargs):
        super().__init__(inner, **kwargs)
        self.tau = float(tau)
        self.target_ratio = target_ratio
        self.memory = max(int(memory), 1)
        self.eps = eps
        self._norms: Optional[tuple[float, float]] = None  # (mean |F|, mean |dσ/dR|) at the last evaluation
        self._avg: Optional[list[float]] = None
        self._last_step: Optional[int] = None

    def bias(self, atoms, results):
        var, dvar = energy_variance(results["energies_members"], results["forces_members"])
        sigma = math.sqrt(var)
        g = dvar / (2.0 * max(sigma, self.eps))  # dσ_E/dR (N, 3)
        self._norms = (float(np.linalg.norm(results["forces"], axis=-1).mean()),
                       float(np.linalg.norm(g, axis=-1).mean()))
        if self.target_ratio is not None and self._avg is None:
            self._avg = list(self._norms)
            self._adapt()
        return -self.tau * sigma, self.tau * g

    def _adapt(self) -> None:
        f, g = self._avg
        if g > self.eps:
            self.tau = self.target_ratio * f / g

    def on_step(self, step, atoms):
        super().on_step(step, atoms)
        if self.target_ratio is None or self._norms is None or step == self._last_step:
            return
        self._last_step = step
        w = 1.0 / self.memory
        self._avg = [(1 - w) * a + w * b for a, b in zip(self._avg, self._norms)]
        self._adapt()


class FlattenCalculator(WrappedCalculator):
    """The seeds' flattening bias E_b = −λ·w(σ)·(Ē − E_ref) (module docstring): ``strength`` λ,
    ``switch`` a :class:`ConfidenceSwitch` (default: levels from the start frame), E_ref the
    running mean of Ē over about ``memory`` MD steps."""

    def __init__(self, inner: Calculator, strength: float = 0.5, switch: Optional[ConfidenceSwitch] = None,
                 memory: int = 200, **kwargs):
        super().__init__(inner, **kwargs)
        if not 0 <= strength < 1:
            raise ValueError(f"flatten strength λ must lie in [0, 1), got {strength}")
        self.strength = float(strength)
        self.switch = switch or ConfidenceSwitch()
        self.memory = max(int(memory), 1)
        self.e_ref: Optional[float] = None
        self._e_last: Optional[float] = None
        self._last_step: Optional[int] = None
        self.w: Optional[float] = None  # the switch at the last evaluation

    def bias(self, atoms, results):
        e, f = members(results)
        e_bar = float(e.mean())
        w, dw = self.switch(e, f)
        if self.e_ref is None:
            self.e_ref = e_bar
        self._e_last, self.w = e_bar, w
        lam, d = self.strength, e_bar - self.e_ref
        return -lam * w * d, -lam * w * f.mean(axis=0) + (lam * d) * dw

    def on_step(self, step, atoms):
        super().on_step(step, atoms)
        if self._e_last is None or step == self._last_step:
            return
        self._last_step = step
        self.switch.observe()
        # the forces cached at the current positions keep the E_ref they were computed with
        # (recomputing would double the model calls); the next evaluation uses the new one
        self.e_ref += (self._e_last - self.e_ref) / self.memory
