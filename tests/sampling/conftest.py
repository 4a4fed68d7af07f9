"""Fixtures of the sampling tests: one torch thread and a small Deep Potential ensemble trained
quickly on EMT Cu frames (once per test session)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from elt.data.frames import attach_labels
from elt.potentials.base import EnsemblePotential, EnsemblePrediction


def cu_frames(n: int, amplitude: float = 0.05, seed: int = 0, size=(2, 2, 2)):
    """EMT-labeled rattled copies of a 32-atom fcc Cu cell."""
    base = bulk("Cu", "fcc", a=3.61, cubic=True) * size
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = base.copy()
        a.positions += rng.normal(0.0, amplitude, a.positions.shape)
        a.calc = EMT()
        out.append(attach_labels(a, a.get_potential_energy(), a.get_forces(), a.get_stress()))
    return out


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cu_ensemble(tmp_path_factory):
    """Three members trained for a few seconds each on 8 EMT Cu frames; (member paths, frames)."""
    from elt.config.train import DeepPotModel, TrainConfig
    from elt.potentials.deepmd import train_member

    d = tmp_path_factory.mktemp("cu_ensemble")
    frames = cu_frames(8)
    cfg = TrainConfig(model=DeepPotModel(rcut=4.0, rcut_smth=2.0, embedding=[8, 16], axis_neuron=4, fitting=[16, 16]),
                      epochs=30, min_steps=1, batch_size=2, threads=1, validation_fraction=0.0,
                      # the schedule this fixture was made with (not the defaults, which move on):
                      # the bias tests measure effects on this very ensemble
                      learning_rate=1e-3, learning_rate_end=1e-4, patience=None, stress_weight=(0.0, 0.0))
    paths = []
    for m in range(3):
        p = d / f"member_{m}.pt"
        train_member(frames, cfg, ["Cu"], m, 100 + m, p)
        paths.append(p)
    return paths, frames


@pytest.fixture(scope="session")
def cu_pot64(cu_ensemble):
    """The ensemble evaluated in float64 (finite differences need it)."""
    from elt.potentials.deepmd import load_ensemble

    return load_ensemble(cu_ensemble[0], precision="float64")



class ScaledEMTEnsemble(EnsemblePotential):
    """A real EMT ensemble for bias tests: member m has E_m = (1 + eps_m)·E_EMT (mean eps 0), so
    the ensemble mean is EMT exactly and the members disagree in proportion to EMT's energy and
    forces; one EMT call per frame."""

    def __init__(self, eps=(-0.03, -0.01, 0.01, 0.03)):
        self.eps = np.asarray(eps, dtype=np.float64)
        self.size, self.elements, self.rcut = len(self.eps), ("Cu",), 5.0
        self._emt = EMT()

    def predict(self, atoms, *, stress=False):
        a = atoms.copy()
        a.calc = self._emt
        s = 1.0 + self.eps
        return EnsemblePrediction(a.get_potential_energy() * s, a.get_forces()[None] * s[:, None, None])


@pytest.fixture(scope="session")
def emt_ensemble():
    return ScaledEMTEnsemble()
