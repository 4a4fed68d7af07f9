"""The native (C) kernels of the compressed Deep Potential (elt.potentials.deepmd.native) against
the torch kernels: same energies, forces and virials for two elements, periodic and non-periodic
systems, every member mode; the fallback without a compiler; the on-disk cache; the distances
the batched explorer takes from the Verlet lists."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from elt.potentials.deepmd import native
from elt.potentials.deepmd.ensemble import DeepPotEnsemble
from elt.potentials.deepmd.model import build
from elt.sampling.md import min_pair_distance


def random_ensemble(dtype=torch.float64, k: int = 3, embedding=(6, 12), axis: int = 3) -> DeepPotEnsemble:
    """An untrained, compressed ensemble with members that differ everywhere (M1 = 12: not a power
    of two, so the kernels' reduction folds)."""
    hyper = dict(rcut=4.0, rcut_smth=1.0, embedding=list(embedding), axis_neuron=axis, fitting=[16, 16])
    model = build(k, 2, hyper, dtype)
    gen = torch.Generator().manual_seed(0)
    model.reset(gen)
    with torch.no_grad():
        model.env_scale.copy_(torch.rand(model.env_scale.shape, generator=gen, dtype=dtype) + 0.5)
        model.shift.copy_(torch.randn(model.shift.shape, generator=gen, dtype=dtype))
        model.s_mean.fill_(0.3)
        model.s_std.fill_(0.2)
        model.desc_std.fill_(0.05)
    model.compress()
    return DeepPotEnsemble(model, ["Cu", "Ag"], [{} for _ in range(k)])


def cuag(size, seed: int, strain: float = 1.0) -> Atoms:
    rng = np.random.default_rng(seed)
    at = bulk("Cu", "fcc", a=3.65, cubic=True) * size
    sym = np.array(at.get_chemical_symbols())
    sym[rng.random(len(at)) < 0.3] = "Ag"
    at.set_chemical_symbols(sym)
    at.set_cell(at.cell * strain, scale_atoms=True)
    at.positions += rng.normal(0.0, 0.1, at.positions.shape)
    return at


def systems() -> list[Atoms]:
    cluster = cuag((2, 2, 2), 3)[:20]
    cluster.pbc = False
    cluster.cell = np.zeros((3, 3))
    return [cuag((2, 2, 2), 1), cuag((3, 3, 3), 2, strain=1.02), cluster]


def _inputs(frames):
    pos = torch.as_tensor(np.concatenate([a.positions for a in frames]))
    cells = torch.as_tensor(np.stack([a.cell.array for a in frames]))
    return pos, cells


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 1e-4)])
@pytest.mark.parametrize("members", ["all", "mean", "first"])
def test_native_kernels_give_the_torch_results(dtype, tol, members):
    if not native.available(dtype, 12, 3):
        pytest.skip("no C compiler")
    pot = random_ensemble(dtype)
    frames = systems()
    pos, cells = _inputs(frames)
    slow = pot.batch_evaluator(frames, compile=False).evaluate(pos, cells, members=members, virial=True)
    ev = pot.batch_evaluator(frames, compile=True)
    assert ev.native
    fast = ev.evaluate(pos, cells, members=members, virial=True)
    for a, b in ((fast.energies, slow.energies), (fast.forces, slow.forces), (fast.virials, slow.virials)):
        assert a.shape == b.shape
        scale = float(b.abs().max())
        assert scale > 0
        assert float((a - b).abs().max()) <= tol * scale
    assert float(slow.virials[:, 2].abs().max()) > 0  # the cluster's virial is a real sum too
    if members != "first":
        spread = float(slow.forces.std(dim=0).max()) if members == "all" else 1.0
        assert spread > 1e-3  # members differ: a mix-up of members would show


def test_the_process_switch_moves_the_ase_path_to_the_native_kernels():
    if not native.available(torch.float64, 12, 3):
        pytest.skip("no C compiler")
    pot = random_ensemble()
    frames = systems()[:2]
    slow = pot.predict_many(frames, stress=True)
    try:
        assert native.compile_kernels()
        fast = pot.predict_many(frames, stress=True)
        assert native.bound(pot.model, torch.zeros(1, 1, 3, dtype=torch.float64), None) is not None
    finally:
        native.compile_kernels(False)
    assert native.bound(pot.model, torch.zeros(1, 1, 3, dtype=torch.float64), None) is None
    for p, q in zip(fast, slow):
        np.testing.assert_allclose(p.energies, q.energies, rtol=1e-12)
        np.testing.assert_allclose(p.forces, q.forces, rtol=0, atol=1e-11 * np.abs(q.forces).max())
        np.testing.assert_allclose(p.stress, q.stress, rtol=0, atol=1e-11 * np.abs(q.stress).max())


def test_without_a_compiler_the_torch_kernels_stay(monkeypatch, tmp_path):
    monkeypatch.setenv("ELT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    monkeypatch.setattr(native, "_LIBS", {})
    warned = []  # the CLI's logging set-up (other tests) may keep records from pytest's caplog
    monkeypatch.setattr(native.log, "warning", lambda msg, *args: warned.append(msg % args))
    pot = random_ensemble()  # a model the kernels were never bound to
    frames = systems()
    ev = pot.batch_evaluator(frames, compile=True)
    assert not ev.native and len(warned) == 1 and "native model kernels unavailable" in warned[0]
    pos, cells = _inputs(frames)
    out = ev.evaluate(pos, cells, members="mean")
    ref = pot.batch_evaluator(frames, compile=False).evaluate(pos, cells, members="mean")
    assert torch.equal(out.forces, ref.forces)
    assert not native.compile_kernels()
    assert native.bound(pot.model, pos, True) is None


def test_kernels_are_built_once_and_loaded_from_the_cache(monkeypatch, tmp_path):
    import shutil

    real_cc = shutil.which("cc") or shutil.which("gcc")
    if real_cc is None:
        pytest.skip("no C compiler")
    calls = tmp_path / "calls"
    wrapper = tmp_path / "counting-cc"
    wrapper.write_text(f'#!/bin/sh\necho x >> "{calls}"\nexec "{real_cc}" "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("ELT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(wrapper))
    for _ in range(2):  # as two processes would: nothing loaded yet
        monkeypatch.setattr(native, "_LIBS", {})
        assert native.load(torch.float64, 12, 3) is not None
    assert calls.read_text().count("x") == 1
    built = sorted((tmp_path / "cache" / "kernels").glob("*.so"))
    assert len(built) == 1 and "double_12x3" in built[0].name
    assert native.load(torch.float64, 16, 4) is not None  # another model shape: its own build
    assert calls.read_text().count("x") == 2


def test_list_distances_match_min_pair_distance():
    pot = random_ensemble()
    frames = systems()
    close = frames[1]
    close.positions[5] = close.positions[9] + [0.3, 0.1, 0.0]  # a pair at 0.32 Å
    pos, cells = _inputs(frames)
    for compile_ in (False, True):
        out = pot.batch_evaluator(frames, compile=compile_).evaluate(pos, cells, distances=0.5)
        want = [min_pair_distance(a, 0.5) for a in frames]
        assert want[1] < 0.5 and np.isinf(want[0]) and np.isinf(want[2])
        np.testing.assert_allclose(out.min_distance.numpy(), want, rtol=1e-12)
    out = pot.batch_evaluator(frames).evaluate(pos, cells, distances=10.0)  # beyond rcut: unknown
    assert out.min_distance is None


def test_a_nan_displacement_gives_nan_not_a_silent_number():
    if not native.available(torch.float64, 12, 3):
        pytest.skip("no C compiler")
    from elt.potentials.deepmd.graph import build_graph

    pot = random_ensemble()
    frame = systems()[0]
    g = build_graph([frame], pot.typemap, pot.rcut)
    vec = torch.as_tensor(g.vec).clone()
    vec[3, 0, 1] = float("nan")
    out = pot.model(g, vec, forces=True, virial=True, native=True)
    assert torch.isnan(out["energy"]).all() and torch.isnan(out["forces"]).any() and torch.isnan(out["virial"]).all()
