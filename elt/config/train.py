"""Training sections: ``train.kind`` names the potential (a plugin of group ``potential``); each
kind has its own config model, validated through :mod:`elt.registry`.

:class:`TrainBase` holds what every potential shares (the engine reads ``ensemble_size``,
``warm_start`` and ``threads``); :class:`PlateauTraining` adds the knobs of elt's own training loop
(:mod:`elt.potentials.fitting`), which the built-in deepmd and the mace plugin both use. A plugin's
model subclasses one of them with its ``kind`` and its model-specific fields.
"""

from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import Field, field_validator, model_validator

from elt.config.base import PluginConfig, Strict


class TrainBase(PluginConfig):
    """What every potential's training section has: ensemble size, warm starts, data split, seed, threads."""

    ensemble_size: int = Field(4, ge=2, le=64, description="Number of ensemble members k (≥2: the deviation needs two).")
    warm_start: bool = Field(True, description="Start each iteration's members from the previous iteration's weights.")
    validation_fraction: float = Field(0.1, ge=0, lt=1, description="Fraction of frames held out (per member, a different random split) for validation and the plateau checks; none when the data set is too small to spare one.")
    bootstrap: bool = Field(False, description="Each member trains on a bootstrap resample of the frames (more diverse ensemble).")
    subsample: Optional[float] = Field(None, gt=0, le=1, description="Each member trains on its own random subset of this fraction of the (non-validation) frames, drawn without replacement (more diverse ensemble); null: all frames.")
    seed: int = Field(0, description="Base seed; member i uses a seed derived from it, the iteration and i.")
    threads: int = Field(1, ge=1, description="torch threads per training task.")


class PlateauTraining(TrainBase):
    """Knobs of elt's training loop (:mod:`elt.potentials.fitting`): Adam under an exponentially
    decaying learning rate, validation checks, plateaus that drop the rate and end training."""

    epochs: int = Field(400, ge=1, description="Step cap from scratch, scaled to the data set: at most this many passes over the training frames, but at least min_steps and at most max_steps optimisation steps. Training usually ends earlier, on a validation plateau (see patience).")
    min_steps: int = Field(1500, ge=1, description="Floor of the step cap when training from scratch (a small data set still gets this many steps, unless a plateau ends training first); max_steps wins when it is lower.")
    max_steps: int = Field(6000, ge=1, description="Ceiling of the step cap when training from scratch: training cost stays bounded as the data grows. The learning rate decays over the cap.")
    warm_epochs: int = Field(150, ge=1, description="Step cap when warm-starting from the previous iteration's member: at most this many passes over the data, within warm_min_steps..warm_max_steps.")
    warm_min_steps: int = Field(500, ge=1, description="Floor of the step cap when warm-starting; warm_max_steps wins when it is lower.")
    warm_max_steps: int = Field(2500, ge=1, description="Ceiling of the step cap when warm-starting.")
    max_seconds: Optional[float] = Field(None, gt=0, description="Wall-time cap of one member's training (s), checked at each validation check; null: steps only.")
    valid_every: int = Field(50, ge=1, description="Optimisation steps between validation checks (the score is the force RMSE and the energy RMSE per atom / 0.25 Å added in quadrature, on the validation frames, or on up to 32 training frames when none is held out).")
    patience: Optional[int] = Field(4, ge=1, description="Checks without a relative improvement of min_improvement before the learning rate drops by plateau_factor; at learning_rate_end, such a plateau ends training. The best weights are kept. null: no plateau handling (train to the cap).")
    min_improvement: float = Field(0.01, ge=0, lt=1, description="Relative fall of the validation score that counts as an improvement.")
    plateau_factor: float = Field(0.3, gt=0, lt=1, description="Factor on the learning rate at a plateau (the loss prefactors follow the learning rate).")
    batch_size: int = Field(4, ge=1, description="Frames per optimisation step.")
    learning_rate: float = Field(3e-3, gt=0, description="Initial Adam learning rate.")
    learning_rate_end: float = Field(3e-5, gt=0, description="Learning rate at the step cap (exponential decay over the cap; plateaus reach it sooner).")

    @model_validator(mode="after")
    def _check_rates(self):
        if self.learning_rate_end > self.learning_rate:
            raise ValueError(f"learning_rate_end ({self.learning_rate_end}) must not exceed learning_rate ({self.learning_rate})")
        return self


# ---------------------------------------------------------------- deepmd (built-in)
class DeepPotModel(Strict):
    """Hyperparameters of the built-in Deep Potential (se_e2_a) model."""

    rcut: float = Field(5.0, gt=0, description="Outer cutoff radius (Å).")
    rcut_smth: float = Field(0.5, ge=0, description="Inner cutoff (Å): the switching function starts here and reaches 0 at rcut.")
    embedding: list[int] = Field(default_factory=lambda: [8, 16], min_length=1, description="Widths of the embedding network layers (the last is M1); a layer twice or as wide as the one before gets a residual connection.")
    axis_neuron: int = Field(4, ge=1, description="M2: how many embedding columns enter the symmetric descriptor (M1*M2 features per atom).")
    fitting: list[int] = Field(default_factory=lambda: [32, 32], min_length=1, description="Widths of the fitting network's hidden layers (equal widths get residual connections).")
    precision: Literal["float32", "float64"] = Field("float32", description="Floating-point precision of weights and evaluation.")

    @model_validator(mode="after")
    def _check(self):
        if self.rcut_smth >= self.rcut:
            raise ValueError(f"rcut_smth ({self.rcut_smth}) must be smaller than rcut ({self.rcut})")
        if self.axis_neuron > self.embedding[-1]:
            raise ValueError(f"axis_neuron ({self.axis_neuron}) must not exceed the last embedding width ({self.embedding[-1]})")
        return self


class DeepMDTrain(PlateauTraining):
    """train.kind deepmd (the default): the built-in Deep Potential ensemble, with DeePMD's loss schedule."""

    kind: Literal["deepmd"] = Field("deepmd", description="Potential family; the built-in Deep Potential ensemble.")
    model: DeepPotModel = Field(default_factory=DeepPotModel, description="Model hyperparameters.")
    energy_weight: tuple[float, float] = Field((0.02, 1.0), description="Energy-loss prefactor (start, end) on the energy per atom; DeePMD-style schedule: p = end + (start - end) * lr / learning_rate.")
    force_weight: tuple[float, float] = Field((1000.0, 1.0), description="Force-loss prefactor (start, end) on the force components.")
    stress_weight: tuple[float, float] = Field((0.02, 1.0), description="Virial-loss prefactor (start, end) on the virial per atom, used on the frames that carry stress and are periodic in all three directions (the members then predict stress); (0, 0): virials not trained, and the ensemble gives no stress.")


TrainConfig = DeepMDTrain  # the default kind's model, under its older name


# ---------------------------------------------------------------- mace (mace-torch, optional extra)
_IRREPS = re.compile(r"^\s*\d+x\d+[eo](\s*\+\s*\d+x\d+[eo])*\s*$")


class MaceModel(Strict):
    """Hyperparameters of a MACE model (mace-torch's ScaleShiftMACE). The default is small: 32
    channels of scalars and vectors (max_L 1), two interactions, a 5 Å cutoff."""

    r_max: float = Field(5.0, gt=0, description="Cutoff radius (Å).")
    hidden_irreps: str = Field("32x0e+32x1o", description="Irreps of the hidden node features (e3nn notation): CHANNELSx0e for max_L 0, +CHANNELSx1o for max_L 1, +CHANNELSx2e for max_L 2.")
    num_interactions: int = Field(2, ge=1, le=6, description="Message-passing layers (the receptive field is num_interactions × r_max).")
    max_ell: int = Field(3, ge=1, le=4, description="Highest degree of the spherical harmonics of the edges.")
    correlation: int = Field(3, ge=1, le=4, description="Body order - 1 of the product basis (MACE's correlation order).")
    num_bessel: int = Field(8, ge=1, description="Radial Bessel functions.")
    num_polynomial_cutoff: int = Field(5, ge=1, description="Power p of the polynomial cutoff envelope.")
    radial_mlp: list[int] = Field(default_factory=lambda: [64, 64, 64], min_length=1, description="Hidden widths of the radial MLP.")
    mlp_irreps: str = Field("16x0e", description="Irreps of the hidden layer of the last (non-linear) readout.")
    precision: Literal["float32", "float64"] = Field("float32", description="Floating-point precision of weights and evaluation.")

    @field_validator("hidden_irreps", "mlp_irreps")
    @classmethod
    def _irreps(cls, v):
        if not _IRREPS.match(v):
            raise ValueError(f"expected irreps in e3nn notation such as 32x0e+32x1o, received {v!r}")
        return v.replace(" ", "")


class MaceTrain(PlateauTraining):
    """train.kind mace: an ensemble of MACE models (mace-torch, ``pip install 'elt[mace]'``),
    trained by elt's loop with MACE's weighted energy/forces/stress loss."""

    kind: Literal["mace"] = Field(description="Potential family; MACE via mace-torch.")
    model: MaceModel = Field(default_factory=MaceModel, description="Model hyperparameters.")
    epochs: int = Field(200, ge=1, description=PlateauTraining.model_fields["epochs"].description)
    min_steps: int = Field(300, ge=1, description=PlateauTraining.model_fields["min_steps"].description)
    max_steps: int = Field(3000, ge=1, description=PlateauTraining.model_fields["max_steps"].description)
    warm_epochs: int = Field(60, ge=1, description=PlateauTraining.model_fields["warm_epochs"].description)
    warm_min_steps: int = Field(100, ge=1, description=PlateauTraining.model_fields["warm_min_steps"].description)
    warm_max_steps: int = Field(1000, ge=1, description=PlateauTraining.model_fields["warm_max_steps"].description)
    valid_every: int = Field(25, ge=1, description=PlateauTraining.model_fields["valid_every"].description)
    learning_rate: float = Field(1e-2, gt=0, description="Initial Adam (amsgrad) learning rate.")
    learning_rate_end: float = Field(1e-4, gt=0, description=PlateauTraining.model_fields["learning_rate_end"].description)
    energy_weight: float = Field(1.0, ge=0, description="Weight of the energy-per-atom term (eV²/atom²) of MACE's weighted loss.")
    forces_weight: float = Field(100.0, ge=0, description="Weight of the force term (eV²/Å²).")
    stress_weight: float = Field(1000.0, ge=0, description="Weight of the stress term ((eV/Å³)²), on the frames that carry stress and are periodic in all three directions (the members then predict stress); 0: stress not trained, and the ensemble gives no stress.")
    clip_grad: Optional[float] = Field(10.0, gt=0, description="Clip the gradient norm to this (MACE's default); null: no clipping.")
