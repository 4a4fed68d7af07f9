"""Training behaviour: determinism, warm start, validation/early stopping, bootstrap, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from cu_frames import SMALL_MODEL, emt_label, rattled_cu, small_config

from elt.config.train import DeepPotModel
from elt.data.frames import attach_labels
from elt.errors import SetupError
from elt.potentials.deepmd import load_ensemble, train_member


def _state(path):
    return torch.load(path, weights_only=True)["state"]


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    frames = rattled_cu(4)
    cfg = small_config(epochs=2)
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        train_member(frames, cfg, ["Cu"], 0, seed, tmp_path / f"{name}.pt")
    a, b, c = (_state(tmp_path / f"{n}.pt") for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_warm_start_continues_and_lowers_error(tmp_path):
    frames = rattled_cu(6, seed=2)
    cold = train_member(frames, small_config(epochs=2), ["Cu"], 0, 1, tmp_path / "cold.pt")
    warm = train_member(frames, small_config(warm_epochs=6, validation_fraction=0.0), ["Cu"], 0, 1,
                        tmp_path / "warm.pt", init_path=tmp_path / "cold.pt")
    assert warm["epochs"] == 6 and warm["warm_start"] and warm["valid"] is None
    assert warm["train"]["rmse_f"] < cold["train"]["rmse_f"]
    # the warm start began from the cold member: its data statistics are carried over unchanged
    # (a fresh start on other frames measures other ones)
    other = rattled_cu(6, seed=7, amplitude=0.15)
    train_member(other, small_config(warm_epochs=2), ["Cu"], 0, 1, tmp_path / "w2.pt", init_path=tmp_path / "cold.pt")
    train_member(other, small_config(epochs=2), ["Cu"], 0, 1, tmp_path / "fresh.pt")
    c, w, f = (_state(tmp_path / f"{n}.pt") for n in ("cold", "w2", "fresh"))
    assert torch.equal(c["desc_mean"], w["desc_mean"]) and not torch.equal(c["desc_mean"], f["desc_mean"])


def test_energy_shift_fitted_per_element(tmp_path):
    """Mixed Cu/Au frames: the per-element shift is the least-squares fit of E on the counts, refitted
    to the residual after training (forces do not see it): the residuals are orthogonal to the counts."""
    frames = []
    rng = np.random.default_rng(0)
    for n_au in (0, 2, 5, 9):
        a = rattled_cu(1, size=(2, 2, 1), seed=n_au)[0].copy()
        a.symbols[:n_au] = "Au"
        a.positions += rng.normal(0, 0.02, a.positions.shape)
        frames.append(emt_label(a))
    train_member(frames, small_config(epochs=1, validation_fraction=0.0), ["Au", "Cu"], 0, 0, tmp_path / "m.pt")
    counts = np.array([[(a.symbols == "Au").sum(), (a.symbols == "Cu").sum()] for a in frames])
    energies = np.array([a.get_potential_energy() for a in frames])
    ens = load_ensemble([tmp_path / "m.pt"], precision="float64")
    resid = energies - np.array([p.energies[0] for p in ens.predict_many(frames)])
    assert np.abs(counts.T @ resid / counts.sum(axis=0)).max() < 1e-3  # eV per atom of each element
    assert np.abs(counts.T @ (energies - counts @ [1.0, 0.0]) / counts.sum(axis=0)).max() > 0.1  # not trivially so
    p = ens.predict(frames[2], stress=True)
    assert np.isfinite(p.energies).all() and p.forces.shape == (1, 16, 3)


def _plateau_config(**kw):
    base = dict(epochs=10000, min_steps=3000, max_steps=3000, valid_every=25, patience=4, validation_fraction=0.25)
    return small_config(**{**base, **kw})


def test_training_stops_on_a_plateau_and_not_while_the_loss_still_falls(tmp_path):
    frames = rattled_cu(8, seed=3)
    short = train_member(frames, _plateau_config(min_steps=300, max_steps=300), ["Cu"], 0, 0, tmp_path / "s.pt")
    # at 300 steps the loss still falls: the run ends at its cap, with a warning that says so
    assert short["stop_reason"] == "cap" and short["steps"] == 300 and not short["fit_ok"]
    assert any("longer training would likely fit better" in w for w in short["warnings"])
    full = train_member(frames, _plateau_config(), ["Cu"], 0, 0, tmp_path / "f.pt")
    # given room, it runs past 300 steps while the loss falls, then stops on the plateau well before its cap
    assert full["stop_reason"] == "plateau" and 300 < full["steps"] < 3000, full
    assert full["best_step"] <= full["steps"] and full["fit_ok"] and full["warnings"] == []
    assert full["valid"]["rmse_f"] < 0.8 * short["valid"]["rmse_f"]
    assert full["train"]["rmse_f"] < 0.8 * short["train"]["rmse_f"]


def test_unfitted_energies_are_flagged(tmp_path):
    """Energies that the forces do not explain (EMT forces, energies off by ±0.1 eV/atom at random, as
    from a labeler that mixes settings) cannot be fitted: the metrics say so."""
    rng = np.random.default_rng(0)
    frames = [attach_labels(a, a.get_potential_energy() + len(a) * rng.choice([-0.1, 0.1]), a.get_forces())
              for a in rattled_cu(8, seed=3)]
    m = train_member(frames, _plateau_config(max_steps=600), ["Cu"], 0, 0, tmp_path / "m.pt")
    assert not m["fit_ok"] and any(w.startswith("energies not fitted") for w in m["warnings"])
    assert m["train"]["rmse_e"] > 0.25 * m["train"]["rmse_f"]
    clean = train_member(rattled_cu(8, seed=3), _plateau_config(max_steps=600), ["Cu"], 0, 0, tmp_path / "c.pt")
    assert not any(w.startswith("energies not fitted") for w in clean["warnings"])


def test_bootstrap_resamples_the_training_frames(tmp_path):
    frames = rattled_cu(10, seed=3)
    m = train_member(frames, small_config(validation_fraction=0.3, bootstrap=True), ["Cu"], 0, 0, tmp_path / "m.pt")
    assert m["valid"]["n_frames"] == 3
    assert m["train"]["n_frames"] < 7  # distinct frames of a resample of 7 (7 distinct: p = 7!/7^7 < 0.01)


def test_empty_and_unlabeled_data(tmp_path):
    with pytest.raises(SetupError, match="empty data set"):
        train_member([], small_config(), ["Cu"], 0, 0, tmp_path / "m.pt")
    bare = rattled_cu(2)[0].copy()
    bare.calc = None
    with pytest.raises(SetupError, match="no energy/forces labels"):
        train_member([bare], small_config(), ["Cu"], 0, 0, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_unknown_element_in_training_and_prediction(small_ensemble, tmp_path):
    frames = rattled_cu(2)
    ag = frames[0].copy()
    ag.symbols[0] = "Ag"
    with pytest.raises(SetupError, match="Ag"):
        train_member([emt_label(ag)], small_config(), ["Cu"], 0, 0, tmp_path / "m.pt")
    ens = load_ensemble(small_ensemble[0])
    with pytest.raises(SetupError, match=r"element\(s\) Ag .*trained for Cu"):
        ens.predict(ag)


def test_wrong_checkpoints(small_ensemble, tmp_path):
    paths, frames = small_ensemble
    junk = tmp_path / "member_9.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SetupError, match="not a readable torch checkpoint"):
        load_ensemble([junk])
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(SetupError, match="not an elt Deep Potential checkpoint"):
        load_ensemble([other])
    with pytest.raises(SetupError, match="does not exist"):
        load_ensemble([tmp_path / "missing.pt"])
    # a member of another architecture cannot join the ensemble, nor be warm-started from
    bigger = small_config(model=DeepPotModel(**{**SMALL_MODEL.model_dump(), "rcut": 4.5}))
    odd = tmp_path / "odd.pt"
    train_member(frames, bigger, ["Cu"], 0, 0, odd)
    with pytest.raises(SetupError, match="differs .* in rcut"):
        load_ensemble([paths[0], odd])
    with pytest.raises(SetupError, match="cannot warm-start"):
        train_member(frames, small_config(), ["Cu"], 0, 0, tmp_path / "w.pt", init_path=odd)
    with pytest.raises(SetupError, match="cannot warm-start .* elements"):
        train_member(frames, small_config(), ["Au", "Cu"], 0, 0, tmp_path / "w.pt", init_path=paths[0])


def test_isolated_atom_and_single_member_calculator(small_ensemble):
    ens = load_ensemble(small_ensemble[0][:1])
    atom = Atoms("Cu", positions=[(0, 0, 0)])
    p = ens.predict(atom)
    assert p.forces.shape == (1, 1, 3) and np.all(p.forces == 0)
    atom.calc = ens.calculator()
    assert np.isfinite(atom.get_potential_energy()) and "max_devi_f" not in atom.calc.results


def _strained_cu(n: int, seed: int):
    from ase.build import bulk

    from elt.data.structures import perturbed_copies

    base = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    return [emt_label(a) for a in perturbed_copies([base], n, 0.05, 0.03, seed)]


def _voigt(s):
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


def test_virials_trained_by_default_and_an_untrained_model_gives_no_stress(tmp_path):
    from ase.calculators.calculator import PropertyNotImplementedError

    frames, test = _strained_cu(10, 0), _strained_cu(4, 1)
    cfg = dict(epochs=1000, min_steps=400, max_steps=400, validation_fraction=0.0)
    on = train_member(frames, small_config(**cfg), ["Cu"], 0, 0, tmp_path / "on.pt")
    off = train_member(frames, small_config(stress_weight=(0.0, 0.0), **cfg), ["Cu"], 0, 0, tmp_path / "off.pt")
    assert on["virial_trained"] and not off["virial_trained"]
    ens_on, ens_off = load_ensemble([tmp_path / "on.pt"]), load_ensemble([tmp_path / "off.pt"])
    assert ens_on.stress_trained and not ens_off.stress_trained

    def stress_rmse(ens):
        return np.sqrt(np.mean([(_voigt(ens.predict(a, stress=True).stress[0]) - a.get_stress()) ** 2 for a in test]))

    # 400 steps of a small model: the trained stress is not accurate yet, but much closer than the untrained one
    assert stress_rmse(ens_on) < 0.6 * stress_rmse(ens_off)
    atoms = test[0].copy()
    atoms.calc = ens_on.calculator()
    np.testing.assert_allclose(atoms.get_stress(), _voigt(ens_on.predict(test[0], stress=True).stress[0]), atol=1e-9)
    atoms.calc = ens_off.calculator()
    assert np.isfinite(atoms.get_forces()).all() and "stress" not in atoms.calc.results
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    # labels without stress: nothing to train the virial on, whatever the prefactor
    bare = [attach_labels(a, a.get_potential_energy(), a.get_forces(), None) for a in frames]
    assert not train_member(bare, small_config(**cfg), ["Cu"], 0, 0, tmp_path / "bare.pt")["virial_trained"]
    assert not load_ensemble([tmp_path / "bare.pt"]).stress_trained


def test_no_stress_for_frames_not_periodic_in_all_three_directions(small_ensemble):
    from ase.build import fcc111
    from ase.calculators.calculator import PropertyNotImplementedError

    paths, frames = small_ensemble
    ens = load_ensemble(paths)
    assert ens.stress_trained and ens.predict(frames[0], stress=True).stress is not None
    slab = fcc111("Cu", size=(2, 2, 3), a=3.61, vacuum=6.0)
    slab.pbc = (True, True, False)  # a full-rank cell with a vacuum direction: no diluted stress
    assert ens.predict(slab, stress=True).stress is None
    slab.calc = ens.calculator()
    assert np.isfinite(slab.get_potential_energy()) and "stress" not in slab.calc.results
    with pytest.raises(PropertyNotImplementedError):
        slab.get_stress()
