"""Benchmark of the potentials: the built-in Deep Potential ensemble beside MACE (prints tables; not a test).

Kinds: ``deepmd`` (the defaults), ``mace`` (the default small MACE: 32x0e+32x1o, max_L 1,
r_max 5 Å, 2 interactions, max_ell 3, correlation 3) and ``mace-light`` (the model of
workflows/quickstart-mace.yaml: the same with max_ell 2, correlation 2). All float32.

Inference: µs per atom-step (energy + forces + stress) for Cu fcc with 32, 108 and 256 atoms,
one member against the ensemble of 4, every kind measured side by side in one run.
Training: one member of each kind on the same EMT-labeled Cu-32 frames (MD at 600 K, the same
validation split), one thread, CPU seconds until its validation force RMSE first reaches the
level that every kind reaches (the worst of their best), then the force RMSE on held-out EMT
frames from MD at 900 K. CPU time with one thread is what an idle core would take, whatever
else runs on the machine; the load average is printed next to the numbers.

    python bench/bench_potential.py [--kinds deepmd,mace,mace-light] [--frames 100] [--threads 1]
        [--mace-steps 600] [--skip-train] [--skip-inference] [--sizes 2,3,4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from elt import registry
from elt.config.train import DeepMDTrain, MaceModel, MaceTrain
from elt.data.frames import attach_labels

KINDS = {
    "deepmd": lambda: DeepMDTrain(threads=1),
    "mace": lambda: MaceTrain(kind="mace", threads=1),
    "mace-light": lambda: MaceTrain(kind="mace", threads=1, model=MaceModel(max_ell=2, correlation=2)),
}
SCORE_OF = {"deepmd": "elt.potentials.deepmd.training", "mace": "elt.potentials.mace.training"}


def emt_md_frames(n: int, temperature: float, seed: int, size=(2, 2, 2), every: int = 10) -> list:
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * size
    atoms.calc = EMT()
    rng = np.random.default_rng(seed)
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=rng, fixcm=False)
    dyn.run(100)
    out = []
    for _ in range(n):
        dyn.run(every)
        out.append(attach_labels(atoms, atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()))
    return out


def time_predict(ens, atoms, min_seconds: float = 1.0) -> tuple[float, float]:
    """(wall, CPU) µs per atom-step of energy + forces + stress. CPU time is what the process used;
    with one thread it is the wall time an idle core would take, whatever else runs on the machine."""
    a = atoms.copy()
    rng = np.random.default_rng(0)
    for _ in range(2):
        ens.predict(a, stress=True)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < min_seconds or n < 3:
        a.positions += rng.normal(0, 1e-3, a.positions.shape)
        ens.predict(a, stress=True)
        n += 1
    scale = 1e6 / n / len(a)
    return (time.perf_counter() - t0) * scale, (time.process_time() - c0) * scale


def _quick_members(name: str, frames: list, workdir: Path) -> list[Path]:
    """4 members after a couple of steps (inference cost does not depend on the weights)."""
    config = KINDS[name]().model_copy(update={"epochs": 1, "min_steps": 1, "max_steps": 2})
    plugin = registry.get("potential", config.kind)
    paths = []
    for m in range(4):
        p = workdir / f"{name}-{plugin.checkpoint_name(m)}"
        plugin.train_member(frames, config, ["Cu"], m, m, p)
        paths.append(p)
    return paths


def bench_inference(kinds: list[str], workdir: Path, threads: int, sizes: list[int]) -> None:
    frames = emt_md_frames(4, 300, 0, every=2)
    ensembles = {}
    for name in kinds:
        paths = _quick_members(name, frames, workdir)
        plugin = registry.get("potential", KINDS[name]().kind)
        ensembles[name] = plugin.load_ensemble(paths[:1]), plugin.load_ensemble(paths)
    torch.set_num_threads(threads)
    what = "CPU time (= wall on an idle core)" if threads == 1 else "wall time"
    print(f"\ninference, float32, {threads} torch thread(s): µs per atom-step (energy+forces+stress), {what}")
    print(f"{'atoms':>6} {'kind':>11} {'1 member':>10} {'4 members':>10} {'4/1':>5} {'4 members/step':>15} {'vs deepmd':>10}")
    for n in sizes:
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * (n, n, n)
        atoms.rattle(0.05, seed=1)
        ref = None
        for name in kinds:
            one, four = ensembles[name]
            (w1, c1), (w4, c4) = time_predict(one, atoms), time_predict(four, atoms)
            t1, t4 = (c1, c4) if threads == 1 else (w1, w4)
            ref = t4 if name == "deepmd" else ref
            vs = f"{t4 / ref:>9.1f}x" if ref else f"{'-':>10}"
            print(f"{len(atoms):>6} {name:>11} {t1:>10.1f} {t4:>10.1f} {t4 / t1:>5.2f} {t4 * len(atoms) / 1000:>12.2f} ms {vs}")
        print(f"  (load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def _train_logged(name: str, config, train: list, workdir: Path) -> tuple[dict, list, Path]:
    """Train one member, recording (CPU seconds, validation force RMSE) at every check."""
    import importlib

    module = importlib.import_module(SCORE_OF[config.kind])
    original, log = module.score, []
    c0 = time.process_time()

    def logged(rmse_e, rmse_f):
        log.append((time.process_time() - c0, float(rmse_f)))
        return original(rmse_e, rmse_f)

    plugin = registry.get("potential", config.kind)
    path = workdir / f"train-{name}-{plugin.checkpoint_name(0)}"
    module.score = logged
    try:
        metrics = plugin.train_member(train, config, ["Cu"], 0, 10, path)
    finally:
        module.score = original
    return metrics, log, path


def bench_training(kinds: list[str], workdir: Path, n_frames: int, mace_steps: int) -> None:
    train = emt_md_frames(n_frames, 600, 1)
    test = emt_md_frames(30, 900, 2)
    print(f"\ntraining one member of each kind on the same {len(train)} Cu-32 EMT frames (600 K MD), "
          f"one thread; validation: the same {int(0.1 * len(train))} held-out frames; MACE capped at {mace_steps} steps")
    runs = {}
    for name in kinds:
        config = KINDS[name]()
        if config.kind == "mace":
            config = config.model_copy(update={"max_steps": mace_steps})
        metrics, log, path = _train_logged(name, config, train, workdir)
        ens = registry.get("potential", config.kind).load_ensemble([path])
        preds = ens.predict_many(test)
        ref_f = np.stack([a.get_forces() for a in test])
        test_f = float(np.sqrt(((np.stack([p.forces[0] for p in preds]) - ref_f) ** 2).mean()))
        runs[name] = (metrics, log, test_f)
        print(f"  {name}: {metrics['steps']} steps ({metrics['stop_reason']}), {metrics['cpu_seconds']:.0f} s CPU, "
              f"best validation force RMSE {min(r for _, r in log):.4f} eV/Å (load {os.getloadavg()[0]:.1f})", flush=True)
    target = max(min(r for _, r in log) for _, log, _ in runs.values())
    print(f"\n  common level: validation force RMSE {target:.4f} eV/Å (the worst kind's best)")
    print(f"  {'kind':>11} {'CPU s to level':>15} {'CPU s total':>12} {'steps':>6} {'held-out 900 K force RMSE':>27}")
    for name, (metrics, log, test_f) in runs.items():
        reach = next(t for t, r in log if r <= target)
        print(f"  {name:>11} {reach:>15.1f} {metrics['cpu_seconds']:>12.1f} {metrics['steps']:>6} {test_f:>22.4f} eV/Å")
    print(f"  (load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; an ensemble of 4 costs 4 times "
          "this, spread over the workers)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="deepmd,mace,mace-light")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--sizes", default="2,3,4", help="Cu fcc supercells n x n x n of the 4-atom cell")
    ap.add_argument("--mace-steps", type=int, default=600, help="step cap of the MACE members (max_steps)")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-inference", action="store_true")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        ap.error(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    torch.set_num_threads(args.threads)
    for name in kinds:
        print(f"{name}: {KINDS[name]().model.model_dump()}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_inference:
            bench_inference(kinds, Path(tmp), args.threads, [int(x) for x in args.sizes.split(",")])
        if not args.skip_train:
            bench_training(kinds, Path(tmp), args.frames, args.mace_steps)


if __name__ == "__main__":
    main()
