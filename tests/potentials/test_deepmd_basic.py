"""The deepmd plugin end to end: train, checkpoint, load, ASE calculator."""

from __future__ import annotations

import json

import numpy as np

import elt
from elt import registry
from elt.potentials.base import EnsembleCalculator, EnsemblePotential

from cu_frames import rattled_cu, small_config


def test_registry_train_and_load(tmp_path):
    plugin = registry.get("potential", "deepmd")
    frames = rattled_cu(5)
    metrics = plugin.train_member(frames, small_config(), ["Cu"], 0, 7, tmp_path / "member_0.pt")
    assert set(metrics) >= {"train", "valid", "epochs", "seconds", "n_frames"}
    assert metrics["epochs"] == 3 and metrics["n_frames"] == 5
    assert np.isfinite(metrics["train"]["rmse_f"]) and metrics["train"]["rmse_e"] >= 0
    json.dumps(metrics)
    meta = json.loads((tmp_path / "member_0.json").read_text())
    assert meta["elements"] == ["Cu"] and meta["model"]["rcut"] == 4.0 and meta["dataset_hash"]
    plugin.train_member(frames, small_config(), ["Cu"], 1, 8, tmp_path / "member_1.pt")
    ens = plugin.load_ensemble(sorted(tmp_path.glob("member_*.pt")))
    assert isinstance(ens, EnsemblePotential) and ens.size == 2 and ens.elements == ("Cu",)
    pred = ens.predict(frames[0], stress=True)
    assert pred.energies.shape == (2,) and pred.forces.shape == (2, 32, 3) and pred.stress.shape == (2, 3, 3)


def test_load_potential_calculator(small_ensemble):
    paths, frames = small_ensemble
    for source in (paths[0].parent, paths, [str(p) for p in paths]):
        calc = elt.load_potential(source)
        assert isinstance(calc, EnsembleCalculator)
        atoms = frames[1].copy()
        atoms.calc = calc
        e = atoms.get_potential_energy()
        f = atoms.get_forces()
        s = atoms.get_stress()
        assert np.isfinite(e) and f.shape == (32, 3) and s.shape == (6,)
        r = calc.results
        assert r["energies_members"].shape == (2,)
        assert r["max_devi_f"] >= r["avg_devi_f"] >= r["min_devi_f"] >= 0
        assert r["max_devi_f"] > 0
        np.testing.assert_allclose(e, r["energies_members"].mean())


def test_descriptors_for_diversity_selection(small_ensemble):
    from elt.potentials.deepmd import load_ensemble

    paths, frames = small_ensemble
    ens = load_ensemble(paths)
    d0, d1 = ens.descriptors(frames[0]), ens.descriptors(frames[1])
    m1, m2 = 16, 4  # SMALL_MODEL's embedding[-1] and axis_neuron
    assert d0.shape == (32, m1 * m2) and np.isfinite(d0).all()
    assert np.abs(d0 - d1).max() > 1e-6  # different structures, different descriptors
    perm = np.random.default_rng(0).permutation(32)
    np.testing.assert_allclose(ens.descriptors(frames[0][perm]), d0[perm], rtol=1e-5, atol=1e-6)
