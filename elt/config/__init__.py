"""Pydantic models of workflow.yaml and cluster profiles. Imports no torch, pyscf or dask."""

from elt.config.cluster import AddressProfile, LocalProfile, SlurmPool, SlurmProfile, load_profile, parse_profile
from elt.config.label import AseLabel, CP2KLabel, EMTLabel, PySCFLabel
from elt.config.train import DeepMDTrain, DeepPotModel, MaceModel, MaceTrain, TrainBase, TrainConfig
from elt.config.workflow import (
    ConvergeConfig, ExploreConfig, SelectConfig, StageConfig, SystemConfig, Workflow,
    load_workflow, parse_workflow,
)

__all__ = [
    "AddressProfile", "LocalProfile", "SlurmPool", "SlurmProfile", "load_profile", "parse_profile",
    "AseLabel", "CP2KLabel", "EMTLabel", "PySCFLabel", "DeepPotModel", "TrainConfig", "TrainBase", "DeepMDTrain", "MaceModel", "MaceTrain", "ConvergeConfig",
    "ExploreConfig", "SelectConfig", "StageConfig", "SystemConfig", "Workflow", "load_workflow",
    "parse_workflow",
]
