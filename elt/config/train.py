"""Training section: the ensemble's model and how it is fitted."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from elt.config.base import Strict


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


class TrainConfig(Strict):
    """How the ensemble is trained each iteration."""

    kind: Literal["deepmd"] = Field("deepmd", description="Potential family; the built-in Deep Potential ensemble.")
    ensemble_size: int = Field(4, ge=2, le=64, description="Number of ensemble members k (≥2: the deviation needs two).")
    model: DeepPotModel = Field(default_factory=DeepPotModel, description="Model hyperparameters.")
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
    warm_start: bool = Field(True, description="Start each iteration's members from the previous iteration's weights.")
    batch_size: int = Field(4, ge=1, description="Frames per optimisation step.")
    learning_rate: float = Field(3e-3, gt=0, description="Initial Adam learning rate.")
    learning_rate_end: float = Field(3e-5, gt=0, description="Learning rate at the step cap (exponential decay over the cap; plateaus reach it sooner).")
    energy_weight: tuple[float, float] = Field((0.02, 1.0), description="Energy-loss prefactor (start, end) on the energy per atom; DeePMD-style schedule: p = end + (start - end) * lr / learning_rate.")
    force_weight: tuple[float, float] = Field((1000.0, 1.0), description="Force-loss prefactor (start, end) on the force components.")
    stress_weight: tuple[float, float] = Field((0.02, 1.0), description="Virial-loss prefactor (start, end) on the virial per atom, used on the frames that carry stress and are periodic in all three directions (the members then predict stress); (0, 0): virials not trained, and the ensemble gives no stress.")
    validation_fraction: float = Field(0.1, ge=0, lt=1, description="Fraction of frames held out (per member, a different random split) for validation and the plateau checks; none when the data set is too small to spare one.")
    bootstrap: bool = Field(False, description="Each member trains on a bootstrap resample of the frames (more diverse ensemble).")
    subsample: Optional[float] = Field(None, gt=0, le=1, description="Each member trains on its own random subset of this fraction of the (non-validation) frames, drawn without replacement (more diverse ensemble); null: all frames.")
    seed: int = Field(0, description="Base seed; member i uses a seed derived from it, the iteration and i.")
    threads: int = Field(1, ge=1, description="torch threads per training task.")

    @model_validator(mode="after")
    def _check_rates(self):
        if self.learning_rate_end > self.learning_rate:
            raise ValueError(f"learning_rate_end ({self.learning_rate_end}) must not exceed learning_rate ({self.learning_rate})")
        return self
