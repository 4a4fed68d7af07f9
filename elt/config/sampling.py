"""Config sections of exploration and smarter selection: the explorer (the MD engine, a plugin
kind), uncertainty bias (udd | hal | flatten), metadynamics on collective variables (optionally
confidence-switched), what a biased walker does past trust_hi, and the adaptive lower trust
level."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from elt.config.base import PluginConfig, Strict


# ---------------------------------------------------------------- explorer
class AseExplorer(PluginConfig):
    """The reference explorer: each walker runs alone in its task with ASE's integrators (Langevin,
    velocity Verlet, Berendsen NPT) and the ensemble as an ASE calculator."""

    kind: Literal["ase"] = Field("ase", description="ASE molecular dynamics, one walker per task.")


class BatchedExplorer(PluginConfig):
    """The batched engine (:mod:`elt.sampling.batched`): all walkers of a task advance together
    with one ensemble call per MD step, integrators vectorised in torch (Langevin BAOAB, velocity
    Verlet, Berendsen NPT), Verlet neighbour lists."""

    kind: Literal["batched"] = Field("batched", description="Batched torch MD, many walkers per task.")
    propagate: Literal["mean", "member0"] = Field("mean", description="What drives the MD between recorded frames: the ensemble mean (every member every step) or member 0 alone (DP-GEN/LAMMPS's way, about half the cost, less stable); recorded frames always get the full ensemble's deviations.")
    skin: float = Field(1.0, ge=0, description="Verlet-list skin (Å): pairs within rcut + skin are listed; a walker's list is rebuilt when one of its atoms moved more than skin/2.")
    device: Literal["auto", "cpu", "cuda"] = Field("cpu", description="Where the MD runs: cpu, cuda, or auto (cuda when available).")
    compile: Literal["auto", "on", "off"] = Field("auto", description="The potential's compiled CPU kernels (built once per machine with the system C compiler, about a second): auto and on use them wherever they can be built (faster at every batch size), off keeps the torch kernels.")
    max_atoms: int = Field(4096, ge=1, description="Most atoms (all walkers together) in one exploration task.")
    max_walkers: Optional[int] = Field(None, ge=1, description="Most walkers in one exploration task; null: the walkers are spread evenly over the workers (the cluster profile's walkers_per_task wins when set).")


# ---------------------------------------------------------------- uncertainty bias
class UDDBias(Strict):
    """Uncertainty-driven dynamics (Kulichenko et al. 2023): E_bias = A·[exp(−σ_E²/(k·N·B²)) − 1],
    σ_E² the variance of the k members' energies, N the number of atoms."""

    kind: Literal["udd"] = "udd"
    strength: float = Field(1.0, gt=0, description="A (eV): depth of the bias; E_bias lies in (−A, 0].")
    width: Optional[float] = Field(None, gt=0, description="B (eV): the bias acts while σ_E² ≲ k·N·B² and saturates beyond (σ_E = std of the member energies). null: set on each walker's start frame so that σ_E² = k·N·B² there.")
    from_iteration: int = Field(0, ge=0, description="The bias is on in iterations ≥ this (plain MD before).")


class HALBias(Strict):
    """HAL-style bias E − τ·σ_E (σ_E = std of the member energies), τ adapted to a target force ratio."""

    kind: Literal["hal"] = "hal"
    tau: float = Field(1.0, ge=0, description="τ (dimensionless); the start value when target_ratio is set.")
    target_ratio: Optional[float] = Field(0.2, gt=0, description="Adapt τ so that the mean |bias force| is this fraction of the mean |force| (running means); null keeps τ fixed.")
    memory: int = Field(20, ge=1, description="Steps over which the running means that adapt τ average.")
    from_iteration: int = Field(0, ge=0, description="The bias is on in iterations ≥ this (plain MD before).")


class Confidence(Strict):
    """Where the ensemble counts as confident: a smooth switch w(σ) from 1 (σ ≤ lo) to 0 (σ ≥ hi),
    σ the std over members of their energy change since the walker's start frame, per atom
    (eV/atom; constant offsets between members do not count)."""

    lo: Optional[float] = Field(None, ge=0, description="σ (eV/atom) below which the ensemble is confident (w = 1); null: lo_factor × the mean σ of the warm-up.")
    hi: Optional[float] = Field(None, gt=0, description="σ (eV/atom) above which it is not (w = 0); null: hi_factor × the mean σ of the warm-up.")
    lo_factor: float = Field(2.0, ge=0, description="lo = this × the mean σ over the walker's warm-up when lo is null.")
    hi_factor: float = Field(4.0, gt=0, description="hi = this × the mean σ over the walker's warm-up when hi is null.")
    warmup: int = Field(100, ge=1, description="MD steps at the start of each walker with the bias off (w = 0) over which σ is averaged to set the levels left null; unused when lo and hi are both given.")

    @model_validator(mode="after")
    def _check(self):
        if self.lo is not None and self.hi is not None and self.lo >= self.hi:
            raise ValueError(f"confidence lo ({self.lo}) must be below hi ({self.hi})")
        if self.lo_factor >= self.hi_factor:
            raise ValueError(f"confidence lo_factor ({self.lo_factor}) must be below hi_factor ({self.hi_factor})")
        return self


class FlattenBias(Strict):
    """The seeds' flattening bias (reinforced dynamics): E_bias = −λ·w(σ)·(Ē − E_ref). Where the
    ensemble is confident the walker feels its landscape scaled by 1 − λ (barriers lowered), where
    it is not the ensemble's own landscape; E_ref is the walker's running mean of Ē."""

    kind: Literal["flatten"] = "flatten"
    strength: float = Field(0.5, ge=0, lt=1, description="λ in [0, 1): how much of the learned landscape is flattened where the ensemble is confident (forces there are (1 − λ)·F).")
    confidence: Confidence = Field(default_factory=Confidence, description="Levels of the confidence switch w(σ).")
    memory: int = Field(200, ge=1, description="MD steps over which the running mean E_ref of the ensemble energy averages.")
    from_iteration: int = Field(0, ge=0, description="The bias is on in iterations ≥ this (plain MD before).")


Bias = Annotated[Union[UDDBias, HALBias, FlattenBias], Field(discriminator="kind")]


class BeyondHi(Strict):
    """What a walker does when a frame reaches trust_hi. Frames at or above trust_hi are classified
    failed and never labeled, whatever the mode."""

    mode: Literal["stop", "continue", "restart"] = Field(description="stop: end the walker there; continue: keep going while at most `steps` MD steps in a row are at or above trust_hi; restart: go back to the last frame below trust_hi with fresh velocities, at most `restarts` times.")
    steps: int = Field(100, ge=1, description="continue: the walker ends once this many MD steps in a row were at or above trust_hi.")
    restarts: int = Field(5, ge=0, description="restart: how many times a walker goes back to its last frame below trust_hi before it ends.")

    def summary(self) -> str:
        if self.mode == "continue":
            return f"continue for up to {self.steps} steps in a row past trust_hi"
        if self.mode == "restart":
            return f"restart from the last frame below trust_hi up to {self.restarts} times"
        return "stop"


# the default of stages with a bias or metadynamics (chosen on bench/bench_rare_events.py)
BIASED_BEYOND_HI = BeyondHi(mode="continue", steps=100)


# ---------------------------------------------------------------- metadynamics
class _Atoms(Strict):
    @field_validator("atoms", check_fields=False)
    @classmethod
    def _distinct(cls, v):
        if len(set(v)) != len(v) or any(i < 0 for i in v):
            raise ValueError(f"atom indices must be distinct and ≥ 0, got {v}")
        return v


class DistanceCV(_Atoms):
    kind: Literal["distance"] = "distance"
    atoms: list[int] = Field(min_length=2, max_length=2, description="Indices (0-based) of the two atoms.")
    width: float = Field(0.1, gt=0, description="Hill width σ (Å).")


class AngleCV(_Atoms):
    kind: Literal["angle"] = "angle"
    atoms: list[int] = Field(min_length=3, max_length=3, description="Indices i, j, k of the angle i–j–k (vertex j).")
    width: float = Field(0.1, gt=0, description="Hill width σ (radians).")


class DihedralCV(_Atoms):
    kind: Literal["dihedral"] = "dihedral"
    atoms: list[int] = Field(min_length=4, max_length=4, description="Indices i, j, k, l of the dihedral.")
    width: float = Field(0.2, gt=0, description="Hill width σ (radians); the dihedral is periodic.")


class CoordinationCV(Strict):
    kind: Literal["coordination"] = "coordination"
    group_a: list[int] = Field(min_length=1, description="Atom indices of group A.")
    group_b: Optional[list[int]] = Field(None, description="Atom indices of group B; default: A (pairs within A).")
    r0: float = Field(2.5, gt=0, description="Switching distance r0 (Å): f(r) = (1 − (r/r0)^n)/(1 − (r/r0)^m).")
    n: int = Field(6, ge=1, description="Switching function exponent n.")
    m: int = Field(12, ge=2, description="Switching function exponent m (> n).")
    width: float = Field(0.2, gt=0, description="Hill width σ (coordination units).")

    @model_validator(mode="after")
    def _check(self):
        if self.m <= self.n:
            raise ValueError(f"m ({self.m}) must exceed n ({self.n})")
        if any(i < 0 for i in self.group_a + (self.group_b or [])):
            raise ValueError("atom indices must be ≥ 0")
        return self


CVSpec = Annotated[Union[DistanceCV, AngleCV, DihedralCV, CoordinationCV], Field(discriminator="kind")]


class MetadConfig(Strict):
    """Metadynamics: Gaussian hills on 1–3 collective variables, deposited along each walker."""

    cvs: list[CVSpec] = Field(min_length=1, max_length=3, description="Collective variables (distance, angle, dihedral, coordination).")
    height: float = Field(0.05, gt=0, description="Hill height (eV).")
    stride: int = Field(50, ge=1, description="Deposit a hill every this many MD steps.")
    biasfactor: Optional[float] = Field(None, gt=1, description="Well-tempered metadynamics bias factor γ (> 1); null: plain metadynamics.")
    confidence: Optional[Confidence] = Field(None, description="Confidence-switched metadynamics: the hills' bias times w(σ), so it acts only where the ensemble is confident; null: hills act everywhere.")

    def check_atoms(self, n_atoms: int) -> list[str]:
        """Problems with the CVs' atom indices for a structure of ``n_atoms`` atoms."""
        out = []
        for i, cv in enumerate(self.cvs):
            idx = cv.atoms if hasattr(cv, "atoms") else cv.group_a + (cv.group_b or [])
            bad = sorted(j for j in set(idx) if j >= n_atoms)
            if bad:
                out.append(f"metad.cvs[{i}] ({cv.kind}) uses atom index(es) {bad}, but a start structure "
                           f"has {n_atoms} atoms (valid: 0..{n_atoms - 1})")
        return out


# ---------------------------------------------------------------- adaptive lower trust level
class AdaptiveLo(Strict):
    """dpgen2's adaptive-lower: lo chosen so that a number or fraction of the frames below trust_hi
    become candidates (the larger of the two when both are given)."""

    candidates: Optional[int] = Field(None, ge=1, description="Number of frames below trust_hi that become candidates (over all walkers of an iteration).")
    fraction: Optional[float] = Field(None, gt=0, le=1, description="Fraction of the frames below trust_hi that become candidates.")
    lo_min: Optional[float] = Field(None, gt=0, description="Floor of the adaptive lo (eV/Å): frames below it stay accurate, so the accurate ratio can reach the convergence threshold. Without it the accurate ratio is at most 1 − fraction.")

    @model_validator(mode="after")
    def _check(self):
        if self.candidates is None and self.fraction is None:
            raise ValueError("adaptive_lo needs candidates (a number) or fraction (of the frames below trust_hi)")
        return self


# ---------------------------------------------------------------- automatic trust levels
class AutoLevels(Strict):
    """How select.trust_lo / trust_hi: auto are derived each iteration (elt.sampling.levels.auto_levels):
    target = lo_factor × max_over_rms × the members' mean force RMSE on their training frames (what the
    model achieves where it has data; the validation error of a small data set measures the lack of
    data instead, and would loosen the levels exactly when the model knows least); trust_lo = target / c
    with c the calibration (true max force error ≈ c × max force deviation, fitted on labeled frames
    the ensemble was not trained on; c = 1 before any); trust_hi = hi_factor × trust_lo; each clipped
    to its floor and ceiling."""

    lo_factor: float = Field(1.5, gt=0, description="Accurate means an expected max force error up to this many times what training reached on its training frames (> 1 leaves room for the spread of frame errors).")
    max_over_rms: float = Field(3.5, gt=0, description="Ratio of a frame's max-over-atoms force error to its force-component RMSE (3.5 measured on 32-atom EMT Cu and Ni frames by bench/bench_indicator.py; it grows slowly with the number of atoms).")
    hi_factor: float = Field(3.0, gt=1, description="trust_hi = hi_factor × trust_lo (before its floor and ceiling).")
    lo_min: float = Field(0.03, gt=0, description="Floor of the automatic trust_lo (eV/Å).")
    lo_max: float = Field(0.3, gt=0, description="Ceiling of the automatic trust_lo (eV/Å); also its value while nothing is known yet.")
    hi_min: float = Field(0.15, gt=0, description="Floor of the automatic trust_hi (eV/Å).")
    hi_max: float = Field(1.0, gt=0, description="Ceiling of the automatic trust_hi (eV/Å).")
    min_frames: int = Field(5, ge=1, description="Fewest held-out labeled frames for a calibration; with fewer, c = 1 (or the last calibration).")
    calibration_frames: int = Field(2, ge=0, description="Frames labeled each iteration at random among all explored frames below trust_hi (not only candidates): the calibration sample is then not range-restricted, and an iteration whose frames are all accurate still tests that. They join the data set. Until min_frames such labeled frames calibrate the deviation, an accurate iteration does not count towards convergence.")

    @model_validator(mode="after")
    def _check(self):
        if self.lo_min >= self.lo_max:
            raise ValueError(f"lo_min ({self.lo_min}) must be below lo_max ({self.lo_max})")
        if self.hi_min >= self.hi_max:
            raise ValueError(f"hi_min ({self.hi_min}) must be below hi_max ({self.hi_max})")
        if self.lo_max >= self.hi_max:
            raise ValueError(f"lo_max ({self.lo_max}) must be below hi_max ({self.hi_max})")
        return self
