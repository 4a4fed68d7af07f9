"""Benchmark of the built-in Deep Potential ensemble (prints a table; not a test).

Inference: µs per atom-step (energy + forces + stress) for Cu fcc with 32, 108 and 256 atoms,
one member against the stacked ensemble of 4, float32, measured side by side in one run.
Training: 4 members on 200 EMT-labeled Cu-32 frames (MD at 600 K), then the force RMSE on
held-out EMT frames from MD at 900 K.

    python bench/bench_potential.py [--threads 2] [--workers 2] [--skip-train] [--frames 200]

Inference uses ``--threads`` torch threads; training runs each member in its own process with one
thread, ``--workers`` at a time (the way the engine's Dask workers run them).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

from elt.config.train import TrainConfig
from elt.data.frames import attach_labels
from elt.potentials.deepmd import load_ensemble, train_member


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
    for _ in range(3):
        ens.predict(a, stress=True)
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < min_seconds or n < 5:
        a.positions += rng.normal(0, 1e-3, a.positions.shape)
        ens.predict(a, stress=True)
        n += 1
    scale = 1e6 / n / len(a)
    return (time.perf_counter() - t0) * scale, (time.process_time() - c0) * scale


def bench_inference(config: TrainConfig, workdir: Path, threads: int) -> None:
    frames = emt_md_frames(4, 300, 0, every=2)
    quick = config.model_copy(update={"epochs": 1})
    paths = []
    for m in range(4):
        p = workdir / f"member_{m}.pt"
        train_member(frames, quick, ["Cu"], m, m, p)
        paths.append(p)
    one, four = load_ensemble(paths[:1]), load_ensemble(paths)
    for n_threads in sorted({1, threads}):
        torch.set_num_threads(n_threads)
        kind = "CPU time (= wall on an idle core)" if n_threads == 1 else "wall time"
        print(f"\ninference, float32, {n_threads} torch thread(s): µs per atom-step (energy+forces+stress), {kind}")
        print(f"{'atoms':>6} {'1 member':>10} {'4 members':>10} {'ratio':>6} {'4 members/step':>15}")
        for size in [(2, 2, 2), (3, 3, 3), (4, 4, 4)]:
            atoms = bulk("Cu", "fcc", a=3.61, cubic=True) * size
            atoms.rattle(0.05, seed=1)
            (w1, c1), (w4, c4) = time_predict(one, atoms), time_predict(four, atoms)
            t1, t4 = (c1, c4) if n_threads == 1 else (w1, w4)
            print(f"{len(atoms):>6} {t1:>10.1f} {t4:>10.1f} {t4 / t1:>6.2f} {t4 * len(atoms) / 1000:>12.2f} ms")
        print(f"  (load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def _train_one(args):
    train, config, m, path = args
    torch.set_num_threads(config.threads)
    return train_member(train, config, ["Cu"], m, 10 + m, path)


def bench_training(config: TrainConfig, workdir: Path, n_frames: int, workers: int) -> None:
    train = emt_md_frames(n_frames, 600, 1)
    test = emt_md_frames(50, 900, 2)
    print(f"\ntraining 4 members on {len(train)} Cu-32 EMT frames (600 K MD), {workers} worker processes "
          f"x {config.threads} thread(s) (as the engine runs them); epochs={config.epochs} "
          f"max_steps={config.max_steps} batch={config.batch_size}")
    paths = [workdir / f"train_{m}.pt" for m in range(4)]
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        results = list(pool.map(_train_one, [(train, config, m, p) for m, p in enumerate(paths)]))
    seconds = time.perf_counter() - t0
    for m, metrics in enumerate(results):
        print(f"  member {m}: {metrics['seconds']:.1f} s wall, {metrics['cpu_seconds']:.1f} s CPU, {metrics['steps']} steps, train rmse_f "
              f"{metrics['train']['rmse_f']:.4f} eV/Å, rmse_e {metrics['train']['rmse_e'] * 1000:.2f} meV/atom")
    ens = load_ensemble(paths)
    preds = ens.predict_many(test)
    ref_f = np.stack([a.get_forces() for a in test])
    ref_e = np.array([a.get_potential_energy() for a in test]) / 32
    mean_f = np.stack([p.forces.mean(0) for p in preds])
    mean_e = np.array([p.energies.mean() for p in preds]) / 32
    member_f = np.stack([p.forces for p in preds])  # (T, k, N, 3)
    rmse_members = np.sqrt(((member_f - ref_f[:, None]) ** 2).mean(axis=(0, 2, 3)))
    cpu = sum(m["cpu_seconds"] for m in results)
    print(f"  4 members: {seconds:.1f} s wall here (load average {os.getloadavg()[0]:.1f}); {cpu:.1f} s CPU in all, "
          f"i.e. about {cpu / workers:.0f} s on {workers} idle cores")
    print(f"  held-out (900 K MD) force RMSE: ensemble mean {np.sqrt(((mean_f - ref_f) ** 2).mean()):.4f} eV/Å, "
          f"members {', '.join(f'{x:.4f}' for x in rmse_members)}; energy RMSE "
          f"{np.sqrt(((mean_e - ref_e) ** 2).mean()) * 1000:.2f} meV/atom")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2, help="training processes (1 torch thread each)")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--skip-inference", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainConfig(threads=1)
    print(f"model: {config.model.model_dump()}")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_inference:
            bench_inference(config, Path(tmp), args.threads)
        if not args.skip_train:
            bench_training(config, Path(tmp), args.frames, args.workers)


if __name__ == "__main__":
    main()
