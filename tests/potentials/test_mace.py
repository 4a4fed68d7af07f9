"""train.kind mace: a tiny MACE ensemble trained on EMT Cu frames obeys the potential interface
(forces = -dE/dR, stress = (1/V) dE/dε in eV/Å³, shapes), pickles for Dask, warm-starts from the
previous member, is deterministic for a seed and loads with elt.load_potential."""

from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from cu_frames import fd_force, fd_stress, rattled_cu

# not imported here: the plugin imports it (mace's import changes the process, see test_importing_mace...)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mace") is None,
                                reason="mace-torch (the optional extra elt[mace]) is not installed")

import elt  # noqa: E402
from elt import registry  # noqa: E402
from elt.config.train import MaceModel, MaceTrain  # noqa: E402
from elt.errors import SetupError  # noqa: E402
from elt.potentials import write_manifest  # noqa: E402

# small enough for the default suite: 8 atoms, 8 channels, max_L 1, two interactions
TINY = MaceModel(r_max=3.5, hidden_irreps="8x0e+8x1o", max_ell=1, correlation=2, num_bessel=4,
                 radial_mlp=[8], mlp_irreps="4x0e")


def tiny_config(**kw) -> MaceTrain:
    base = dict(kind="mace", model=TINY, epochs=3, min_steps=1, warm_epochs=2, warm_min_steps=1, valid_every=5,
                batch_size=2, threads=1)
    return MaceTrain(**{**base, **kw})


@pytest.fixture(scope="module")
def plugin():
    return registry.get("potential", "mace")


@pytest.fixture(scope="module")
def members(plugin, tmp_path_factory):
    """Two members trained from scratch on 6 EMT frames (seeds 10, 11): their paths and the frames."""
    d = tmp_path_factory.mktemp("mace")
    frames = rattled_cu(6, size=(2, 1, 1))
    paths = []
    for m in range(2):
        p = d / plugin.checkpoint_name(m)
        metrics = plugin.train_member(frames, tiny_config(), ["Cu"], m, 10 + m, p)
        assert metrics["steps"] >= 1 and metrics["virial_trained"] and not metrics["warm_start"]
        paths.append(p)
    return paths, frames


@pytest.fixture(scope="module")
def ens64(plugin, members):
    return plugin.load_ensemble(members[0], precision="float64")


def _rattled(seed=3) -> Atoms:
    a = rattled_cu(1, size=(2, 1, 1), seed=seed)[0]
    a.calc = None
    return a


def test_forces_are_minus_the_energy_gradient(ens64):
    atoms = _rattled()
    pred = ens64.predict(atoms)
    assert pred.energies.shape == (2,) and pred.forces.shape == (2, len(atoms), 3)
    assert np.abs(pred.forces).max() > 1e-3  # not a trivially flat model
    for i, c in [(0, 0), (3, 1), (7, 2)]:
        fd = fd_force(lambda x: ens64.predict(x).energies, atoms, i, c, h=1e-4)
        assert np.allclose(pred.forces[:, i, c], fd, atol=1e-5, rtol=1e-4), (i, c)


def test_stress_is_the_strain_derivative_in_ev_per_a3(ens64):
    """ASE's convention: stress = (1/V) dE/dε (eV/Å³), checked against the strain derivative."""
    atoms = _rattled()
    pred = ens64.predict(atoms, stress=True)
    assert pred.stress.shape == (2, 3, 3)
    assert np.allclose(pred.stress, pred.stress.transpose(0, 2, 1), atol=1e-10)
    for a, b in [(0, 0), (1, 1), (0, 1), (1, 2)]:
        fd = fd_stress(lambda x: ens64.predict(x).energies, atoms, a, b, h=1e-5)
        assert np.allclose(pred.stress[:, a, b], fd, atol=1e-6, rtol=1e-4), (a, b)


def test_ensemble_shapes_and_calculator(ens64):
    crystal = _rattled()
    cluster = Atoms("Cu4", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0], [0, 0, 2.5]])  # no cell, no stress
    preds = ens64.predict_many([crystal, cluster], stress=True)
    assert [p.forces.shape for p in preds] == [(2, 8, 3), (2, 4, 3)]
    assert preds[0].stress.shape == (2, 3, 3) and preds[1].stress is None
    # one batched call gives what one frame at a time gives
    assert np.allclose(preds[1].forces, ens64.predict(cluster).forces, atol=1e-10)
    assert ens64.size == 2 and ens64.elements == ("Cu",) and ens64.rcut == 3.5 and ens64.stress_trained
    crystal.calc = ens64.calculator()
    assert np.allclose(crystal.get_forces(), preds[0].forces.mean(0))
    s = preds[0].stress.mean(0)
    assert np.allclose(crystal.get_stress(), [s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])
    assert crystal.calc.results["max_devi_f"] > 0
    d = ens64.descriptors(crystal)
    assert d.shape[0] == 8 and d.shape[1] > 0 and np.isfinite(d).all()


def _cluster() -> Atoms:
    """A labeled 13-atom Cu icosahedron: no cell (all zeros), not periodic, no stress."""
    from ase.cluster import Icosahedron
    from cu_frames import emt_label

    c = Icosahedron("Cu", 2)
    c.positions += np.random.default_rng(4).normal(0.0, 0.05, c.positions.shape)
    return emt_label(c)


def test_a_cluster_among_periodic_frames_trains_with_finite_metrics(plugin, tmp_path):
    """Regression: one frame without a cell in a batch with stress frames made every weight NaN
    (mace's own stress divides by |det cell| = 0: finite in value, NaN in its gradient)."""
    cluster = _cluster()
    frames = rattled_cu(3, size=(2, 1, 1), seed=5) + [cluster]
    # one batch of all four frames: every step has the cluster beside frames with stress
    metrics = plugin.train_member(frames, tiny_config(batch_size=4), ["Cu"], 0, 3, tmp_path / "m.pt")
    assert metrics["virial_trained"] and metrics["steps"] >= 3
    assert np.isfinite([metrics["train"]["rmse_e"], metrics["train"]["rmse_f"]]).all()
    ens = plugin.load_ensemble([tmp_path / "m.pt"])
    p_cluster, p_cell = ens.predict_many([cluster, frames[0]], stress=True)
    assert np.isfinite(p_cluster.energies).all() and np.isfinite(p_cluster.forces).all() and p_cluster.stress is None
    assert np.isfinite(p_cell.forces).all() and np.isfinite(p_cell.stress).all()


def test_the_stress_loss_reads_only_frames_with_stress(plugin):
    """The training stress is mace's stress (ASE's sign) on the periodic frames and 0 on the cluster,
    whose stress weight is 0; the loss's gradient on such a mixed batch is finite."""
    from elt.potentials.mace.training import _Data, _init_model, _losses, _stress_where_labeled
    from elt.potentials.neighbors import TypeMap

    cfg = tiny_config(model=TINY.model_copy(update={"precision": "float64"}))
    data = _Data(rattled_cu(2, size=(2, 1, 1), seed=6) + [_cluster()], TypeMap(["Cu"]), TINY.r_max)
    model, _ = _init_model(cfg, ["Cu"], data, None)
    graph, ref = data.labeled_batch([0, 2, 1], torch.float64)
    assert ref.stress_weight.tolist() == [1.0, 0.0, 1.0]
    out = model(dict(graph), training=True, compute_force=True, compute_virials=True, compute_stress=True)
    stress = _stress_where_labeled(out["virials"], ref)
    assert torch.allclose(stress[[0, 2]], out["stress"][[0, 2]], atol=1e-12) and stress[[0, 2]].abs().max() > 1e-6
    assert torch.equal(stress[1], torch.zeros(3, 3, dtype=torch.float64))
    _losses(cfg, torch.float64)[0](ref, dict(out, stress=stress)).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_ase_and_batched_explorers_drive_the_mace_ensemble(ens64):
    """The ASE MD path and the batched engine (through the per-frame fallback) give the same walker."""
    from elt.potentials.batch import PerFrameBatch
    from elt.sampling.batched import run_batch
    from elt.sampling.md import run_walker

    md = dict(ensemble="nve", timestep=2.0, steps=10, record_every=5)
    assert isinstance(ens64.batch_evaluator([_rattled()]), PerFrameBatch)
    ase = run_walker(_rattled(), ens64.calculator(), temperature=500, seed=7, **md)
    batched = run_batch([_rattled()], [{"temperature": 500, "seed": 7}], ens64, **md)[0]
    assert ase.stop_reason == batched.stop_reason == "completed" and ase.steps == batched.steps
    np.testing.assert_allclose(ase.devi_array(), batched.devi_array(), rtol=1e-8, atol=1e-9)
    assert batched.devi_array()[-1, 4] > 0  # max_devi_f: a real deviation


def test_config_and_ensemble_pickle_for_dask(ens64):
    cfg = tiny_config()
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    atoms = _rattled()
    again = pickle.loads(pickle.dumps(ens64))
    assert again.dtype == torch.float64 and again.size == 2
    assert np.array_equal(again.predict(atoms).forces, ens64.predict(atoms).forces)


def test_warm_start_starts_from_the_previous_weights(plugin, members, tmp_path):
    paths, frames = members
    ens = plugin.load_ensemble(paths, precision="float64")
    # a warm start at a learning rate too small to move the weights predicts what member 0 predicts
    cfg = tiny_config(learning_rate=1e-9, learning_rate_end=1e-9)
    out = tmp_path / "warm.pt"
    metrics = plugin.train_member(frames, cfg, ["Cu"], 0, 99, out, init_path=paths[0])
    assert metrics["warm_start"] and json.loads(out.with_suffix(".json").read_text())["init_path"] == str(paths[0])
    warm = plugin.load_ensemble([out, paths[1]], precision="float64")
    atoms = _rattled()
    f0, f1 = ens.predict(atoms).forces, warm.predict(atoms).forces
    assert np.abs(f1[0] - f0[0]).max() < 1e-4 < np.abs(f0[1] - f0[0]).max()
    other = tiny_config(model=TINY.model_copy(update={"hidden_irreps": "4x0e+4x1o"}))
    with pytest.raises(SetupError, match="cannot warm-start .* hidden_irreps"):
        plugin.train_member(frames, other, ["Cu"], 0, 99, tmp_path / "bad.pt", init_path=paths[0])
    with pytest.raises(SetupError, match="cannot warm-start .* elements"):
        plugin.train_member(frames, tiny_config(), ["Cu", "Ni"], 0, 99, tmp_path / "bad.pt", init_path=paths[0])


def test_training_is_deterministic_for_a_seed(plugin, members, tmp_path):
    paths, frames = members
    plugin.train_member(frames, tiny_config(), ["Cu"], 0, 10, tmp_path / "again.pt")  # member 0's seed
    a = torch.load(paths[0], weights_only=True)["state"]
    b = torch.load(tmp_path / "again.pt", weights_only=True)["state"]
    c = torch.load(paths[1], weights_only=True)["state"]  # seed 11
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_load_potential_of_a_mace_model_folder(members, ens64, tmp_path):
    paths, _ = members
    folder = tmp_path / "model"
    folder.mkdir()
    for p in paths:
        shutil.copy(p, folder / p.name)
    write_manifest(folder, "mace", paths)
    atoms = _rattled()
    atoms.calc = elt.load_potential(folder, precision="float64")
    assert type(atoms.calc.potential).__name__ == "MaceEnsemble"
    assert np.allclose(atoms.get_forces(), ens64.predict(atoms).forces.mean(0), atol=1e-10)
    # member files name their kind in their JSON twins; kind= still wins
    assert type(elt.load_potential(paths).potential).__name__ == "MaceEnsemble"
    with pytest.raises(SetupError, match="not an elt Deep Potential checkpoint"):
        elt.load_potential(paths, kind="deepmd")


def test_old_deepmd_folder_without_manifest_still_loads(small_ensemble, tmp_path):
    paths, _ = small_ensemble
    for p in paths:
        shutil.copy(p, tmp_path / p.name)  # member_*.pt only, as runs before the manifest wrote
    assert type(elt.load_potential(tmp_path).potential).__name__ == "DeepPotEnsemble"


def test_missing_mace_torch_is_a_setup_error_saying_what_to_install():
    code = ("import sys; sys.modules['mace'] = None\n"
            "from elt import registry\nfrom elt.errors import SetupError\n"
            "try:\n    registry.get('potential', 'mace')\nexcept SetupError as e:\n    print(e.message, '|', e.hint)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "needs mace-torch" in out.stdout and "pip install 'elt[mace]'" in out.stdout, out.stdout + out.stderr


def test_importing_mace_leaves_torch_load_safe():
    """mace sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD for the process; the plugin puts it back."""
    import os

    assert registry.get("potential", "mace") is not None
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


def test_one_loop_iteration_with_mace_on_dask_workers(tmp_path, capsys):
    """A tiny campaign with train.kind mace on two real local Dask worker processes: trains,
    explores with the MACE ensemble, labels, trains the final ensemble, publishes it with its kind;
    a second run finds everything done."""
    import yaml

    from elt.cli.main import main
    from elt.engine.state import open_readonly

    wf = {
        "name": "tiny-mace", "seed": 5,
        "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 1, 1]}],
                   "n_initial": 4},
        "train": {"kind": "mace", "ensemble_size": 2, "model": TINY.model_dump(), "epochs": 3, "min_steps": 1,
                  "warm_epochs": 2, "warm_min_steps": 1, "valid_every": 5, "batch_size": 2},
        "explore": {"stages": [{"temperatures": [500], "steps": 20, "record_every": 5}]},
        "select": {"trust_lo": 0.01, "trust_hi": 5.0, "max_candidates": 2},
        "converge": {"max_iterations": 1},
        "cluster": {"kind": "local", "n_workers": 2},
    }
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(wf))
    assert main(["run", str(path)]) == 0
    run = tmp_path / "tiny-mace"
    with open_readonly(run) as st:
        [rec] = st.iterations()
    assert rec["frames"] == 5 and rec["labels_ok"] >= 1  # steps 0, 5, ..., 20; candidates labeled
    assert all(m.endswith(".pt") and "/mace_" in m for m in rec["members"])
    assert json.loads((run / "model" / "potential.json").read_text()) == {
        "kind": "mace", "members": ["mace_0.pt", "mace_1.pt"]}
    atoms = rattled_cu(1, size=(2, 1, 1))[0]
    atoms.calc = elt.load_potential(run / "model")
    assert np.isfinite(atoms.get_forces()).all() and atoms.calc.potential.size == 2
    capsys.readouterr()
    assert main(["run", str(path)]) == 0
    assert "resuming after iteration 0" in capsys.readouterr().out
