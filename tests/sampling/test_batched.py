"""The batched MD engine (elt.sampling.batched) against the ASE reference path, with a real Deep
Potential ensemble (4 members, Cu and Ag, trained for a few seconds on EMT frames)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT

from elt.data.frames import attach_labels
from elt.potentials.batch import PerFrameBatch
from elt.sampling.batched import run_batch
from elt.sampling.bias import HALCalculator, UDDCalculator
from elt.sampling.md import run_walker
from elt.sampling.metad import MetadCalculator
from elt.sampling.cv import Distance


def cuag(size=(2, 2, 2), ag=0.25, amp=0.0, seed=0, a=3.65) -> Atoms:
    rng = np.random.default_rng(seed)
    at = bulk("Cu", "fcc", a=a, cubic=True) * size
    sym = np.array(at.get_chemical_symbols())
    sym[rng.random(len(at)) < ag] = "Ag"
    at.set_chemical_symbols(sym)
    at.positions += rng.normal(0.0, amp, at.positions.shape)
    return at


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    from elt.config.train import DeepPotModel, TrainConfig
    from elt.potentials.deepmd import train_member

    rng = np.random.default_rng(0)
    frames = []
    for i in range(16):
        at = cuag(amp=0.05 * (1 + i % 3), seed=i)
        at.set_cell(at.cell * (1 + rng.normal(0, 0.01)), scale_atoms=True)
        at.calc = EMT()
        frames.append(attach_labels(at, at.get_potential_energy(), at.get_forces(), at.get_stress()))
    cfg = TrainConfig(model=DeepPotModel(rcut=4.0, rcut_smth=2.0, embedding=[8, 16], axis_neuron=4, fitting=[16, 16]),
                      epochs=30, min_steps=1, batch_size=2, threads=1, validation_fraction=0.0)
    d = tmp_path_factory.mktemp("cuag")
    paths = []
    for m in range(4):
        paths.append(d / f"member_{m}.pt")
        train_member(frames, cfg, ["Cu", "Ag"], m, 100 + m, paths[-1])
    return paths


@pytest.fixture(scope="module")
def pot64(members):
    from elt.potentials.deepmd import load_ensemble

    return load_ensemble(members, precision="float64")


def _same(r1, r2, tol=1e-9):
    assert r1.stop_reason == r2.stop_reason and r1.steps == r2.steps
    np.testing.assert_allclose(r1.devi_array(), r2.devi_array(), rtol=tol, atol=tol)
    for f1, f2 in zip(r1.frames, r2.frames):
        np.testing.assert_allclose(f1.positions, f2.positions, rtol=0, atol=tol)
        np.testing.assert_allclose(f1.cell.array, f2.cell.array, rtol=0, atol=tol)


NVE = dict(ensemble="nve", timestep=2.0, steps=60, record_every=10)


def test_nve_walker_matches_the_ase_path(pot64):
    start = cuag()
    ase = run_walker(start, pot64.calculator(), temperature=500, seed=7, **NVE)
    batched = run_batch([start], [{"temperature": 500, "seed": 7}], pot64, **NVE)[0]
    assert len(batched.steps) == 7 and batched.stop_reason == "completed"
    _same(ase, batched)
    assert batched.devi_array()[-1, 3] > 0  # a real deviation, not a zero column


@pytest.mark.parametrize("make", [
    lambda c: UDDCalculator(c, strength=0.5),
    lambda c: HALCalculator(c, tau=0.5, target_ratio=0.2),
    lambda c: UDDCalculator(MetadCalculator(c, [Distance([0, 1])], [0.1], height=0.05, stride=7), strength=0.5),
], ids=["udd", "hal", "metad+udd"])
def test_biased_walker_matches_the_ase_path(pot64, make):
    """The batch runs the wrappers' own bias and on_step code (hills, adaptation) per walker."""
    start = cuag()
    ase = run_walker(start, make(pot64.calculator()), temperature=500, seed=7, **NVE)
    chain = make(pot64.calculator())
    batched = run_batch([start, cuag(seed=1)], [{"temperature": 500, "seed": 7}, {"temperature": 300, "seed": 8}],
                        pot64, biases=[chain, None], **NVE)
    _same(ase, batched[0])
    metad = chain.inner if isinstance(chain.inner, MetadCalculator) else None
    if metad is not None:
        assert metad.hill_steps == [7, 14, 21, 28, 35, 42, 49, 56]


def test_member0_propagation_follows_member_0(pot64, members):
    """propagate=member0: the trajectory is member 0's (as the ASE path with member 0 alone), the
    recorded deviations are still the full ensemble's."""
    from elt.potentials.deepmd import load_ensemble

    start = cuag()
    one = load_ensemble(members[:1], precision="float64")
    ase = run_walker(start, one.calculator(), temperature=500, seed=7, **NVE)
    stats = {}
    rec = run_batch([start], [{"temperature": 500, "seed": 7}], pot64, propagate="member0", stats=stats, **NVE)[0]
    for f1, f2 in zip(ase.frames, rec.frames):
        np.testing.assert_allclose(f1.positions, f2.positions, atol=1e-9)
    full = [pot64.predict(f) for f in rec.frames]
    from elt.potentials.deviation import frame_deviation

    want = [frame_deviation(p.energies, p.forces).max_devi_f for p in full]
    np.testing.assert_allclose(rec.devi_array()[:, 3], want, rtol=1e-9)
    assert stats["evaluations"] == 61


def test_nve_energy_is_conserved(pot64):
    start = cuag()
    rec = run_batch([start], [{"temperature": 300, "seed": 1}], pot64, ensemble="nve", timestep=1.0,
                    steps=2000, record_every=20)[0]
    assert rec.stop_reason == "completed"
    e = np.array([pot64.predict(f).energies.mean() + f.get_kinetic_energy() for f in rec.frames]) / len(start)
    t_ps = np.asarray(rec.steps) * 1e-3
    slope = np.polyfit(t_ps, e, 1)[0]
    assert abs(slope) < 1e-3, f"drift {slope * 1e3:.3f} meV/atom/ps"
    assert np.ptp(e) < 5e-3  # fluctuations of a stable integrator


def test_nvt_holds_the_target_temperature(pot64):
    starts = [cuag(seed=s) for s in range(4)]
    recs = run_batch(starts, [{"temperature": 300.0, "seed": s} for s in range(4)], pot64, ensemble="nvt",
                     timestep=2.0, steps=1000, record_every=10, friction=0.05)
    temps = [f.get_kinetic_energy() / (1.5 * units.kB * len(f)) for r in recs for f in r.frames[20:]]
    assert [r.stop_reason for r in recs] == ["completed"] * 4, [(r.stop_reason, r.steps_done) for r in recs]
    assert np.mean(temps) == pytest.approx(300.0, rel=0.05)


def test_mixed_batch_gives_each_walker_its_record_alone(pot64):
    """32- and 108-atom walkers, pure Cu and CuAg, a molecule-like cluster and a walker that stops
    at step 0 (too_close) in one batch: each record equals the walker's record when run alone."""
    close = cuag()
    close.positions[1] = close.positions[0] + [0.3, 0.0, 0.0]
    starts = [cuag(ag=0.0), cuag((3, 3, 3), ag=0.3, seed=2), close, cuag((3, 3, 3), ag=0.1, seed=3)]
    specs = [{"temperature": t, "seed": s} for t, s in [(300, 1), (600, 2), (300, 3), (450, 4)]]
    kw = dict(ensemble="nvt", timestep=2.0, steps=60, record_every=10, max_energy_jump=1.0)
    together = run_batch(starts, specs, pot64, **kw)
    assert together[2].stop_reason == "too_close" and together[2].steps == [0]
    assert [len(r.frames[0]) for r in together] == [32, 108, 32, 108]
    for start, spec, rec in zip(starts, specs, together):
        _same(run_batch([start], [spec], pot64, **kw)[0], rec, tol=1e-8)
    assert together[1].stop_reason == "completed" and len(together[1].steps) == 7


def test_npt_barostat_moves_the_volume_towards_the_target_pressure(pot64):
    """From the same start and seed, a target above the start's pressure compresses the cell and
    one below expands it; each walker's record is the same as when it runs alone."""
    start = cuag()
    p0 = -np.trace(pot64.predict(start, stress=True).stress.mean(axis=0)) / 3 / units.GPa
    specs = [{"temperature": 300, "pressure": p0 + dp, "seed": 1} for dp in (5.0, -5.0)]
    kw = dict(ensemble="npt", timestep=2.0, steps=40, record_every=20)
    recs = run_batch([start, start], specs, pot64, **kw)
    v0 = start.get_volume()
    assert [r.stop_reason for r in recs] == ["completed"] * 2
    assert recs[0].frames[1].get_volume() < v0 < recs[1].frames[1].get_volume()
    f = recs[0].frames[-1]
    assert np.linalg.norm(f.cell.array - start.cell.array * np.cbrt(f.get_volume() / v0)) < 1e-9  # isotropic
    _same(run_batch([start], specs[1:], pot64, **kw)[0], recs[1], 1e-8)


def test_skin_list_gives_the_forces_of_a_fresh_list(pot64):
    rng = np.random.default_rng(3)
    systems = [cuag(amp=0.05), cuag((3, 3, 3), seed=4, amp=0.05)]
    ev = pot64.batch_evaluator(systems, skin=1.0)
    pos0 = torch.as_tensor(np.concatenate([a.positions for a in systems]))
    cells = torch.as_tensor(np.stack([a.cell.array for a in systems]))

    def check(pos, cells):
        out = ev.evaluate(pos, cells, virial=True)
        for w, a in enumerate(systems):
            b = a.copy()
            b.positions = pos[ev.offsets[w]:ev.offsets[w + 1]].numpy()
            b.cell = cells[w].numpy()
            p = pot64.predict(b, stress=True)
            np.testing.assert_allclose(out.energies[:, w].numpy(), p.energies, rtol=1e-12)
            np.testing.assert_allclose(out.forces[:, ev.offsets[w]:ev.offsets[w + 1]].numpy(), p.forces, atol=1e-10)
            np.testing.assert_allclose(-out.virials[:, w].numpy() / b.get_volume(), p.stress, atol=1e-10)

    check(pos0, cells)
    assert ev.builds == 2
    small = pos0 + torch.as_tensor(rng.uniform(-0.25, 0.25, pos0.shape)) / np.sqrt(3)  # < skin/2 per atom
    check(small, cells)
    assert ev.builds == 2
    big = small.clone()
    big[40] += torch.tensor([0.6, 0.0, 0.0])  # one atom of walker 1 moved more than skin/2
    big[:32] += torch.tensor([7.3, 0.0, 0.0])  # walker 0 a whole periodic image away (unwrapped positions)
    check(big, cells)
    assert ev.builds == 4
    strained = cells * 1.02
    check(big * 1.02, strained)  # a changed cell (npt): 2 % strain keeps every pair within rcut listed
    assert ev.builds == 4
    check(big * 1.3, cells * 1.3)  # 30 %: it could bring pairs from beyond rcut + skin inside rcut
    assert ev.builds == 6


def test_per_frame_fallback_agrees_with_the_batched_model(pot64):
    systems = [cuag(amp=0.05), cuag((3, 3, 3), seed=4, amp=0.05)]
    pos = torch.as_tensor(np.concatenate([a.positions for a in systems]))
    cells = torch.as_tensor(np.stack([a.cell.array for a in systems]))
    for members in ("first", "mean", "all"):
        fast = pot64.batch_evaluator(systems).evaluate(pos, cells, members=members, virial=True)
        slow = PerFrameBatch(pot64, systems, torch.device("cpu")).evaluate(pos, cells, members=members, virial=True)
        assert fast.forces.shape == slow.forces.shape == ((4 if members == "all" else 1), 140, 3)
        assert fast.energies.shape == ((1 if members == "first" else 4), 2)
        for x, y in [(fast.energies, slow.energies), (fast.forces, slow.forces), (fast.virials, slow.virials)]:
            np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-10)


def test_bad_arguments_are_refused(pot64):
    with pytest.raises(ValueError, match="propagate"):
        run_batch([cuag()], [{"seed": 0}], pot64, propagate="median", steps=10)
    with pytest.raises(ValueError, match="npt needs a periodic cell"):
        run_batch([Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]])], [{"seed": 0}], pot64, ensemble="npt", steps=10)


def test_batched_explorer_runs_each_walkers_bias_chain(members, tmp_path):
    """explorer.kind batched through the registry: two walkers in one batch, the second biased
    (UDD on from iteration 1) and with metadynamics hills written to its folder."""
    from elt import registry
    from elt.config.workflow import StageConfig
    from elt.potentials.deepmd import load_ensemble
    from elt.records import SelectionLevels, WalkerSpec

    stage = StageConfig(steps=20, record_every=10, explorer={"kind": "batched", "propagate": "member0"},
                        bias={"kind": "udd", "strength": 0.5, "from_iteration": 1},
                        metad={"cvs": [{"kind": "distance", "atoms": [0, 1]}], "stride": 5})
    walkers = [WalkerSpec(id=f"w{i}", temperature=300.0 + 100 * i, pressure=None, seed=i, iteration=i)
               for i in range(2)]
    dirs = [tmp_path / w.id for w in walkers]
    for d in dirs:
        d.mkdir()
    explorer = registry.get("explorer", stage.explorer.kind)(stage.explorer)
    recs = explorer.run(walkers, [cuag(), cuag((3, 3, 3), seed=1)], load_ensemble(members), stage,
                        SelectionLevels(lo=0.0, hi=float("inf")), dirs)
    assert [r.steps for r in recs] == [[0, 10, 20]] * 2
    assert [r.bias for r in recs] == ["MetadCalculator", "UDDCalculator"] and [r.hills for r in recs] == [4, 4]
    assert np.loadtxt(dirs[1] / "hills.out", ndmin=2).shape == (4, 3)


def test_explore_task_runs_the_batched_explorer(members, tmp_path):
    """The engine's walker task with explorer: batched writes what it writes with the ASE path."""
    from elt.config.workflow import StageConfig
    from elt.engine.tasks import ExploreJob, explore_task
    from elt.records import SelectionLevels, WalkerSpec

    stage = StageConfig(steps=30, record_every=10, stop_at_failed=False, explorer="batched")
    walker = WalkerSpec(id="w0", temperature=400.0, pressure=None, seed=3, iteration=0)
    r = explore_task(tmp_path, ExploreJob([walker], [cuag()], [str(p) for p in members], "deepmd", stage,
                                          SelectionLevels(lo=0.0, hi=float("inf"))))
    table = np.loadtxt(tmp_path / "model_devi.out", ndmin=2)
    assert r["stop_reason"] == "completed" and r["n_frames"] == 4 and table.shape == (4, 8)
    assert len(r["candidates"]) == 4 and (tmp_path / "candidates.extxyz").exists()


def test_split_batches_fills_workers_and_respects_the_atom_budget():
    from elt.sampling.batching import split_batches

    assert split_batches([32] * 8, workers=2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert split_batches([108] * 5, workers=1, max_atoms=256) == [[0, 1], [2, 3], [4]]
    assert split_batches([32] * 6, workers=1, max_walkers=4) == [[0, 1, 2, 3], [4, 5]]
    assert split_batches([5000, 32], workers=1) == [[0], [1]]
    assert split_batches([], workers=3) == []


@pytest.mark.slow
def test_compiled_table_kernels_give_the_eager_forces(members):
    """Compiled (native) kernels (compile=True): same energies, forces and records as the torch kernels."""
    from elt.potentials.deepmd import load_ensemble
    from elt.potentials.deepmd.compress import compile_kernels

    pot = load_ensemble(members)  # float32, as explorations run
    starts = [cuag(), cuag((3, 3, 3), seed=2)]
    specs = [{"temperature": 300, "seed": 1}, {"temperature": 500, "seed": 2}]
    eager = run_batch(starts, specs, pot, steps=20, record_every=10, compile=False)
    try:
        assert compile_kernels()
        compiled = run_batch(starts, specs, pot, steps=20, record_every=10, compile=True)
    finally:
        compile_kernels(False)
    for r1, r2 in zip(eager, compiled):
        np.testing.assert_allclose(r1.devi_array(), r2.devi_array(), rtol=1e-3, atol=1e-5)
        np.testing.assert_allclose(r1.frames[-1].positions, r2.frames[-1].positions, atol=1e-4)


def test_device_choice(pot64):
    from elt.errors import SetupError
    from elt.potentials.batch import resolve_device

    rec = run_batch([cuag()], [{"seed": 0}], pot64, steps=10, record_every=10, device="auto")[0]
    assert rec.steps == [0, 10]
    if not torch.cuda.is_available():
        with pytest.raises(SetupError, match="CUDA"):
            resolve_device("cuda")


@pytest.mark.parametrize("mode", ["continue", "restart"])
def test_walkers_past_trust_hi_go_on_as_on_the_ase_path(pot64, mode):
    """beyond_hi continue / restart: the batched walker keeps, counts and restarts exactly as
    run_walker (NVE, so the only randomness is the restarts' fresh velocities from the seed)."""
    from elt.config.sampling import BeyondHi

    start = cuag()
    beyond = BeyondHi(mode=mode, steps=20, restarts=2)
    probe = run_walker(start, pot64.calculator(), temperature=500, seed=7, **NVE)
    hi = float(np.median(probe.devi_array()[1:, 3]))  # about half the frames at or above it
    kw = dict(NVE, stop_at=hi, beyond=beyond)
    ase = run_walker(start, pot64.calculator(), temperature=500, seed=7, **kw)
    batched = run_batch([start, cuag(seed=3)], [{"temperature": 500, "seed": 7}, {"temperature": 300, "seed": 1}],
                        pot64, **kw)[0]
    _same(ase, batched)
    assert (batched.beyond_frames, batched.restarts) == (ase.beyond_frames, ase.restarts)
    assert batched.beyond_frames > 0 and (mode == "continue" or batched.restarts > 0)
