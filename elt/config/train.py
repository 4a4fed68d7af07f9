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
    epochs: int = Field(200, ge=1, description="Passes over the training frames when training from scratch (capped by max_steps).")
    warm_epochs: int = Field(60, ge=1, description="Passes over the data when warm-starting from the previous iteration's member (capped by warm_max_steps).")
    max_steps: int = Field(2000, ge=1, description="Most optimisation steps when training from scratch: a large data set gets fewer epochs, so training cost stays bounded as the data grows.")
    warm_max_steps: int = Field(600, ge=1, description="Most optimisation steps when warm-starting.")
    warm_start: bool = Field(True, description="Start each iteration's members from the previous iteration's weights.")
    batch_size: int = Field(4, ge=1, description="Frames per optimisation step.")
    learning_rate: float = Field(1e-3, gt=0, description="Initial Adam learning rate.")
    learning_rate_end: float = Field(1e-4, gt=0, description="Learning rate at the last step (exponential decay).")
    energy_weight: tuple[float, float] = Field((0.02, 1.0), description="Energy-loss prefactor (start, end) on the energy per atom; DeePMD-style schedule: p = end + (start - end) * lr / learning_rate.")
    force_weight: tuple[float, float] = Field((1000.0, 1.0), description="Force-loss prefactor (start, end) on the force components.")
    stress_weight: tuple[float, float] = Field((0.0, 0.0), description="Virial-loss prefactor (start, end) on the virial per atom; used when frames carry stress.")
    validation_fraction: float = Field(0.1, ge=0, lt=1, description="Fraction of frames held out for validation and early stopping (none when the data set is too small to spare one).")
    patience: Optional[int] = Field(None, ge=1, description="Stop a member early when the validation loss has not improved for this many epochs (the best weights are kept).")
    bootstrap: bool = Field(False, description="Each member trains on a bootstrap resample of the frames (more diverse ensemble).")
    seed: int = Field(0, description="Base seed; member i uses a seed derived from it, the iteration and i.")
    threads: int = Field(1, ge=1, description="torch threads per training task.")
