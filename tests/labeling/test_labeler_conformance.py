"""Every built-in labeler passes the same checks on the same small frame (stretched H2):
registry lookup, picklability (labelers travel to Dask workers), the Labels contract (float eV,
(N, 3) eV/Å forces, no stress for a molecule), Newton's third law, and units sanity (a DFT
labeler's restoring force of a 0.075 Å stretch is a few eV/Å and its energy is about -31.5 eV;
Hartree, Hartree/Bohr or Bohr slips move these by factors of 2 to 50)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from lab_helpers import CP2K_BINARY, NO_CP2K, bond_unit, h2_frame

from elt import registry
from elt.config.label import CP2KLabel, EMTLabel, PySCFLabel
from elt.labeling.base import ExecSettings, Labeler, Labels

needs_cp2k = [pytest.mark.cp2k, pytest.mark.skipif(CP2K_BINARY is None, reason=NO_CP2K)]

# kind, config, energy range (eV), whether it is DFT (physical H2 bond)
CASES = [
    pytest.param(EMTLabel(), (-20.0, 20.0), False, id="emt"),
    pytest.param(PySCFLabel(kind="pyscf", basis="def2-svp"), (-32.5, -30.5), True, id="pyscf"),
    # cheapest sound CP2K: 250 Ry (150 Ry gives ~1 eV/Å grid errors on H), a 6 Å wavelet box
    pytest.param(CP2KLabel(kind="cp2k", cutoff=250, rel_cutoff=40, vacuum=2.5),
                 (-32.5, -30.5), True, id="cp2k", marks=needs_cp2k),
]


@pytest.fixture(scope="module")
def labeled(tmp_path_factory):
    """One computation per labeler, shared by the checks below."""
    cache = {}

    def get(cfg):
        if cfg.kind not in cache:
            atoms = h2_frame()
            before = atoms.copy()
            labeler = registry.get("labeler", cfg.kind)(cfg, ExecSettings(threads=1))
            workdir = tmp_path_factory.mktemp(f"conf_{cfg.kind}")
            labels = labeler.compute(atoms, workdir)
            cache[cfg.kind] = (labeler, labels, atoms, before, workdir)
        return cache[cfg.kind]

    return get


@pytest.mark.parametrize("cfg,energy_range,dft", CASES)
def test_labels_contract(labeled, cfg, energy_range, dft):
    labeler, labels, atoms, before, workdir = labeled(cfg)
    assert isinstance(labeler, Labeler)
    assert isinstance(labels, Labels)
    assert isinstance(labels.energy, float) and np.isfinite(labels.energy)
    assert energy_range[0] < labels.energy < energy_range[1]
    assert isinstance(labels.forces, np.ndarray) and labels.forces.shape == (2, 3)
    assert labels.forces.dtype == np.float64 and np.all(np.isfinite(labels.forces))
    assert labels.stress is None  # a molecule has no stress
    # the frame handed in is not changed (CP2K centres a copy in its box)
    assert np.array_equal(atoms.positions, before.positions) and atoms.calc is None


@pytest.mark.parametrize("cfg,energy_range,dft", CASES)
def test_newton_third_law_and_units(labeled, cfg, energy_range, dft):
    _, labels, atoms, _, _ = labeled(cfg)
    f = labels.forces
    assert np.abs(f.sum(axis=0)).max() < 0.02  # eV/Å
    if dft:
        u = bond_unit(atoms)
        along = f[0] @ u  # atom 0 is pulled towards atom 1: a stretched bond restores
        assert 1.0 < along < 8.0, f"restoring force {along} eV/Å: unit slip?"
        assert np.linalg.norm(f[0] - along * u) < 0.05  # central force


@pytest.mark.parametrize("cfg,energy_range,dft", CASES)
def test_forces_are_minus_the_energy_gradient(labeled, cfg, energy_range, dft, tmp_path):
    """The force on atom 0 along the bond equals -dE/dx by central differences (h = 0.005 Å):
    energy and forces in consistent units (a Bohr or Hartree slip is off by a factor 1.9 to 51)."""
    labeler, labels, atoms, _, _ = labeled(cfg)
    u = bond_unit(atoms)
    h = 0.005
    e = []
    for s in (+1, -1):
        b = atoms.copy()
        b.positions[0] += s * h * u
        e.append(labeler.compute(b, tmp_path / f"d{s}").energy)
    fd = -(e[0] - e[1]) / (2 * h)
    assert labels.forces[0] @ u == pytest.approx(fd, rel=0.05, abs=0.02)


@pytest.mark.parametrize("cfg,energy_range,dft", CASES)
def test_pickles_and_checks(labeled, cfg, energy_range, dft):
    labeler, labels, _, _, _ = labeled(cfg)
    again = pickle.loads(pickle.dumps(labeler))
    assert type(again) is type(labeler) and again.config == labeler.config
    back = pickle.loads(pickle.dumps(labels))
    assert back.energy == labels.energy and np.array_equal(back.forces, labels.forces)
    assert labeler.check(["H"]) == [] and labeler.check(["H"], periodic=False) == []


def test_registry_knows_the_builtins():
    from elt.labeling.cp2k import CP2KLabeler
    from elt.labeling.emt import EMTLabeler
    from elt.labeling.pyscf import PySCFLabeler

    assert registry.get("labeler", "emt") is EMTLabeler
    assert registry.get("labeler", "pyscf") is PySCFLabeler
    assert registry.get("labeler", "cp2k") is CP2KLabeler

