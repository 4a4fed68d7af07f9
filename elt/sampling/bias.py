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


def find_wrapper(calc, cls):
    """The first calculator of type ``cls`` in a chain of wrappers (following ``.inner``), or None."""
    while calc is not None:
        if isinstance(calc, cls):
            return calc
        calc = getattr(calc, "inner", None)
    return None


def wrap_calculator(calc: Calculator, stage, iteration: int, temperature: float) -> Calculator:
    """The exploration calculator of a stage: ``calc`` with the stage's metadynamics hills and its
    uncertainty bias (when ``iteration >= bias.from_iteration``) on top."""
    if getattr(stage, "metad", None) is not None:
        from elt.sampling.metad import MetadCalculator

        calc = MetadCalculator.from_config(calc, stage.metad, temperature)
    b = getattr(stage, "bias", None)
    if b is not None and iteration >= b.from_iteration:
        if b.kind == "udd":
            calc = UDDCalculator(calc, strength=b.strength, width=b.width)
        elif b.kind == "hal":
            calc = HALCalculator(calc, tau=b.tau, target_ratio=b.target_ratio, memory=b.memory)
        else:  # pragma: no cover - the config's discriminated union admits no other kind
            raise ValueError(f"unknown bias kind {b.kind!r}")
    return calc
