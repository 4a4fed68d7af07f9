"""Scaling: MD cost per atom-step versus system size, and the cost of selection and of reading
deviation records versus the number of recorded frames (issue 10). Side by side in one run.

    python bench/bench_scaling.py                   # atoms 32..2048, frames 1e3..1e6
    python bench/bench_scaling.py --max-atoms 500 --max-frames 100000

- MD: the ensemble of 4 (default model, float32, 1 thread; weights from a few training steps:
  cost does not depend on accuracy) drives Langevin MD of fcc Cu; µs per atom-step and its ratio
  to the smallest system (flat = linear in atoms).
- Selection: classify + choose (random and highest) on synthetic deviations; time per frame and
  peak memory (tracemalloc), which must grow linearly.
- Records: write a model_devi.out of n frames and read it back with the report's reader.
- Report: the whole `elt report RUN --html` (collect, tables, aggregated model_devi files, the four
  PNGs, the HTML page) on a real small EMT run whose walkers' model_devi.out files are refilled
  with n frames in all; wall time and peak memory (max RSS) of a fresh process per size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def tiny_ensemble(tmp: Path):
    import torch
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from elt.config import TrainConfig
    from elt.data.frames import attach_labels
    from elt.potentials.deepmd import load_ensemble, train_member

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(4):
        a = bulk("Cu", cubic=True, a=3.61).repeat(2)
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.calc = EMT()
        frames.append(attach_labels(a, a.get_potential_energy(), a.get_forces(), a.get_stress()))
    cfg = TrainConfig(max_steps=5, epochs=5)
    paths = []
    for m in range(4):
        p = tmp / f"member_{m}.pt"
        train_member(frames, cfg, ["Cu"], m, m, p)
        paths.append(p)
    return load_ensemble(paths)


def md_scaling(max_atoms: int, steps: int) -> list[tuple[int, float]]:
    from ase.build import bulk

    from elt.sampling.md import run_walker

    out = []
    with tempfile.TemporaryDirectory() as d:
        pot = tiny_ensemble(Path(d))
        for n in (2, 3, 4, 5, 6, 8):
            atoms = bulk("Cu", cubic=True, a=3.61).repeat(n)
            if len(atoms) > max_atoms:
                break
            calc = pot.calculator()
            run_walker(atoms, calc, steps=2, record_every=1, temperature=300, seed=0)  # warm-up
            t = time.perf_counter()
            run_walker(atoms, calc, steps=steps, record_every=steps, temperature=300, seed=0)
            dt = time.perf_counter() - t
            out.append((len(atoms), 1e6 * dt / ((steps + 1) * len(atoms))))
    return out


def selection_scaling(max_frames: int) -> list[tuple[int, float, float, float]]:
    from elt.data.modeldevi import classify
    from elt.sampling.select import choose

    out = []
    n = 1000
    while n <= max_frames:
        rng = np.random.default_rng(0)
        devi = rng.lognormal(-2.0, 0.7, n)
        tracemalloc.start()
        t = time.perf_counter()
        cls = classify(devi, 0.1, 0.4)
        cand = np.flatnonzero(cls == "candidate")
        choose(devi[cand], 50, "random", rng)
        choose(devi[cand], 50, "highest", rng)
        dt = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out.append((n, 1e6 * dt / n, peak / n, 0.0))
        n *= 10
    return out


def records_scaling(max_frames: int) -> list[tuple[int, float]]:
    from elt.data.modeldevi import read_model_devi

    out = []
    n = 1000
    with tempfile.TemporaryDirectory() as d:
        while n <= max_frames:
            table = np.column_stack([np.arange(n) * 10.0, np.random.default_rng(0).random((n, 7))])
            p = Path(d) / f"md{n}.out"
            np.savetxt(p, table, fmt=["%12d"] + ["%19.6e"] * 7)
            t = time.perf_counter()
            read_model_devi(p)
            out.append((n, 1e6 * (time.perf_counter() - t) / n))
            n *= 10
    return out


TINY_RUN = {
    "name": "bench-report", "seed": 3,
    "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}], "n_initial": 4},
    "train": {"ensemble_size": 2, "epochs": 8, "warm_epochs": 4, "batch_size": 2,
              "model": {"rcut": 4.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}},
    "explore": {"stages": [{"temperatures": [300, 600, 900, 1200], "steps": 40, "record_every": 10}]},
    "select": {"trust_lo": 0.03, "trust_hi": 0.6, "max_candidates": 3},
    "label": {"kind": "emt"},
    "converge": {"max_iterations": 2},
    "evaluate": {"frames": 0},
    "cluster": {"kind": "local", "n_workers": 2},
}

_REPORT = """
import resource, sys, time
t = time.perf_counter()
from elt.cli.main import main
rc = main(["report", sys.argv[1], "--out", sys.argv[2], "--html"])
dt = time.perf_counter() - t
print("BENCH", rc, dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def report_scaling(max_frames: int) -> list[tuple[int, float, float]]:
    """(frames, seconds, max RSS bytes) of `elt report --html` on a real run refilled with n frames."""
    import os
    import shutil
    import subprocess
    import sys

    from elt.config import parse_workflow
    from elt.engine.loop import run_workflow
    from elt.data.modeldevi import COLUMNS

    out = []
    with tempfile.TemporaryDirectory() as d:
        base = Path(d) / "run"
        run_workflow(parse_workflow(TINY_RUN), base)
        files = sorted(base.rglob("model_devi.out"))
        if not files:
            raise RuntimeError(f"the bench run in {base} wrote no model_devi.out files")
        n = 1000
        while n <= max_frames:
            run = Path(d) / f"run{n}"
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(base, run)
            rng = np.random.default_rng(n)
            per = np.diff(np.linspace(0, n, len(files) + 1).astype(int))
            for f, k in zip(sorted(run.rglob("model_devi.out")), per):
                t = np.column_stack([np.arange(k) * 10.0, rng.lognormal(-2.5, 0.8, (k, len(COLUMNS) - 1))])
                np.savetxt(f, t, fmt=["%12d"] + ["%19.6e"] * (len(COLUMNS) - 1), header=" ".join(COLUMNS))
            p = subprocess.run([sys.executable, "-c", _REPORT, str(run), str(Path(d) / f"report{n}")],
                               capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
            line = [x for x in p.stdout.splitlines() if x.startswith("BENCH")]
            if p.returncode != 0 or not line or line[0].split()[1] != "0":
                raise RuntimeError(f"elt report failed on {n} frames:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
            _, _, secs, rss = line[0].split()
            out.append((n, float(secs), float(rss)))
            shutil.rmtree(run)
            n *= 10
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-atoms", type=int, default=2048)
    ap.add_argument("--max-frames", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--parts", default="md,select,report", help="comma-separated: md, select, report")
    args = ap.parse_args()
    parts = set(args.parts.split(","))
    if parts - {"md", "select", "report"}:
        ap.error(f"unknown part(s) {sorted(parts - {'md', 'select', 'report'})}: choose from md, select, report")

    if "md" in parts:
        md = md_scaling(args.max_atoms, args.steps)
        print("MD with the ensemble of 4 (float32, 1 thread)")
        print(f"{'atoms':>7}{'µs/atom-step':>15}{'ratio to smallest':>20}")
        for n, us in md:
            print(f"{n:>7}{us:>15.1f}{us / md[0][1]:>20.2f}")
    if "select" in parts:
        sel = selection_scaling(args.max_frames)
        rec = dict(records_scaling(args.max_frames))
        print("\nselection and deviation records versus recorded frames")
        print(f"{'frames':>9}{'select µs/frame':>17}{'select bytes/frame':>20}{'read µs/frame':>15}")
        for n, us, b, _ in sel:
            print(f"{n:>9}{us:>17.3f}{b:>20.1f}{rec.get(n, float('nan')):>15.2f}")
    if "report" not in parts:
        return
    rep = report_scaling(args.max_frames)
    print("\n`elt report RUN --html` (collect, tables, aggregated model_devi, 4 PNGs, HTML), fresh process per size")
    print(f"{'frames':>9}{'seconds':>10}{'µs/frame':>10}{'max RSS MB':>12}{'RSS above 1e3 frames, B/frame':>31}")
    for n, secs, rss in rep:
        extra = (rss - rep[0][2]) / n if n > rep[0][0] else float("nan")
        print(f"{n:>9}{secs:>10.2f}{1e6 * secs / n:>10.2f}{rss / 2**20:>12.0f}{extra:>31.0f}")
    print("\nlinear scaling: per-atom and per-frame costs stay flat as the size grows")


if __name__ == "__main__":
    main()
