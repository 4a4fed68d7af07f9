"""Config models of the plugins: pydantic models that subclass elt's bases, one ``kind`` each.

A field's value enters the task ids of the work it configures (label ids come from the label
section): give every field a default that keeps the old behaviour when you add one later, and
name it in ``ADDED`` so that runs made before keep their ids.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from elt.config.base import PluginConfig
from elt.config.cluster import LocalProfile
from elt.config.label import LabelBase
from elt.registry import register_config


@register_config("labeler", "morse")
class MorseLabel(LabelBase):
    """A Morse pair potential, V(r) = D [exp(-2a(r - r0)) - 2 exp(-a(r - r0))], smoothly cut off
    between ``cutoff_on`` and ``cutoff`` (a quintic smoothstep)."""

    kind: Literal["morse"] = Field(description="Morse pair potential (the example plugin).")
    depth: float = Field(0.3429, gt=0, description="D: depth of the well (eV); default: Cu (Girifalco-Weizer).")
    alpha: float = Field(1.3588, gt=0, description="a: inverse width of the well (1/Å).")
    r0: float = Field(2.866, gt=0, description="r0: distance of the minimum (Å).")
    cutoff_on: float = Field(5.4, gt=0, description="Distance where the smooth cutoff starts (Å).")
    cutoff: float = Field(7.7, gt=0, description="Distance beyond which pairs do not interact (Å).")
    min_distance: float = Field(0.5, gt=0, description="Closer atoms are a broken frame: a physics failure (Å).")

    @model_validator(mode="after")
    def _order(self):
        if not self.r0 < self.cutoff_on < self.cutoff:
            raise ValueError(f"need r0 < cutoff_on < cutoff, got {self.r0}, {self.cutoff_on}, {self.cutoff}")
        return self


@register_config("explorer", "metropolis")
class MetropolisExplorer(PluginConfig):
    """Metropolis Monte Carlo at the walker's temperature on the ensemble's mean energy: each MC
    step moves every atom by a Gaussian displacement; a stage's ``steps`` are MC steps."""

    kind: Literal["metropolis"] = Field(description="Metropolis Monte Carlo (the example plugin).")
    step_size: float = Field(0.05, gt=0, description="Standard deviation of each atom's trial displacement (Å).")


@register_config("cluster", "local-env")
class LocalEnvProfile(LocalProfile):
    """elt's local cluster, with environment variables set in every worker process."""

    kind: Literal["local-env"] = Field(description="Local worker processes with extra environment variables.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables of the worker processes, "
                                "e.g. {OMP_NUM_THREADS: '1'}.")
