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
    from elt.sampling.select import choose, classify

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
    from elt.reporting.modeldevi import read_model_devi

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-atoms", type=int, default=2048)
    ap.add_argument("--max-frames", type=int, default=1_000_000)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()

    md = md_scaling(args.max_atoms, args.steps)
    print("MD with the ensemble of 4 (float32, 1 thread)")
    print(f"{'atoms':>7}{'µs/atom-step':>15}{'ratio to smallest':>20}")
    for n, us in md:
        print(f"{n:>7}{us:>15.1f}{us / md[0][1]:>20.2f}")
    sel = selection_scaling(args.max_frames)
    rec = dict(records_scaling(args.max_frames))
    print("\nselection and deviation records versus recorded frames")
    print(f"{'frames':>9}{'select µs/frame':>17}{'select bytes/frame':>20}{'read µs/frame':>15}")
    for n, us, b, _ in sel:
        print(f"{n:>9}{us:>17.3f}{b:>20.1f}{rec.get(n, float('nan')):>15.2f}")
    print("\nlinear scaling: per-atom and per-frame costs stay flat as the size grows")


if __name__ == "__main__":
    main()
