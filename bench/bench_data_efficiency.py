"""Data efficiency of exploration and selection (issue 7), with the EMT oracle, side by side.

Campaigns from the same start data and seeds (32-atom fcc Cu, EMT labels, local Dask), each
labelling at most --labels frames per iteration:
  (a) plain MD + fixed trust levels (DP-GEN style: random picks among the frames between lo and hi);
  (b) uncertainty-biased MD (UDD or HAL) + adaptive lower trust level (the --pool frames of highest
      deviation below hi are the candidates) + diversity (farthest-point sampling on the
      ensemble's descriptors);
  (c) the same label budget chosen at random from plain-MD frames (every recorded frame is a
      candidate: lo ≈ 0, hi = ∞);
  (d) (b) without the bias: what the selection alone brings.
Every iteration trains its ensemble from scratch for the same number of steps (--train-steps),
with member seeds that depend on the iteration and member only, so at equal iteration the
campaigns differ by their data alone. Each ensemble is tested on a held-out set from EMT MD at the
explored temperatures and one above. The tables give the test force RMSE against the labels the
campaign chose (the shared initial frames not counted), the labels needed to reach a target RMSE
(default: the largest final RMSE, which every campaign reaches), and the paired ratio of (b)'s
RMSE to the others' at equal labels. Goal (issue 7): (b) needs at most half the labels of (c) and
fewer than (a) for the same test error.

    python bench/bench_data_efficiency.py                 # ~35 min on 2 cores (UDD bias, auto width)
    python bench/bench_data_efficiency.py --bias hal      # HAL bias (target force ratio 0.3)
    python bench/bench_data_efficiency.py --seeds 2       # mean over 2 exploration seeds (2x the time)
    python bench/bench_data_efficiency.py --reuse         # resume finished campaigns, retrain what is missing
    python bench/bench_data_efficiency.py --quick         # a smoke run (2 iterations, 1 seed, ~8 min)
"""

from __future__ import annotations

import argparse
import copy
import shutil
import time
from pathlib import Path

import numpy as np

TEMPS = [300.0, 600.0, 900.0]

BASE = {
    "seed": 5,
    "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}],
               "n_initial": 6, "perturb_positions": 0.08, "perturb_cell": 0.02},
    # every iteration trains from scratch for the same number of steps, whatever the data set size:
    # the test error then follows the data, not the optimisation budget (which grows with the data
    # set when training is counted in epochs)
    "train": {"ensemble_size": 4, "warm_start": False, "epochs": 100000, "max_steps": 1000, "batch_size": 4,
              "patience": None},
    "explore": {"stages": [{"temperatures": TEMPS, "steps": 300, "record_every": 10, "max_iterations": 100}]},
    "select": {"trust_lo": 0.05, "trust_hi": 0.35, "max_candidates": 5},
    "label": {"kind": "emt"},
    "converge": {"accurate_ratio": 1.0, "max_iterations": 4},
    "cluster": {"kind": "local", "n_workers": 2},
}


def variants(bias, pool: int) -> dict:
    """The campaigns, all from BASE (same start data, seeds and training)."""
    levels = {"adaptive_lo": {"candidates": pool, "lo_min": BASE["select"]["trust_lo"]}, "strategy": "fps"}
    a = copy.deepcopy(BASE)
    b = copy.deepcopy(BASE)
    if bias is not None:
        b["explore"]["stages"][0]["bias"] = bias
    b["select"].update(levels)
    c = copy.deepcopy(BASE)
    c["explore"]["stages"][0]["stop_at_failed"] = False
    c["select"].update(trust_lo=1e-9, trust_hi=1e9)
    d = copy.deepcopy(BASE)
    d["select"].update(levels)
    return {"a": ("plain MD + trust levels", a),
            "b": (f"{bias['kind'] if bias else 'no'} bias + adaptive lo + fps", b),
            "c": ("random labels from plain MD", c),
            "d": ("plain MD + adaptive lo + fps", d)}


def emt_test_set(temps, per_temp: int, seed: int = 123):
    """Frames of EMT Langevin MD (2 fs) of the start cell: 100 steps to equilibrate, then one every 20."""
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    out = []
    for T in temps:
        rng = np.random.RandomState(seed + int(T))
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        a.calc = EMT()
        MaxwellBoltzmannDistribution(a, temperature_K=T, rng=rng)
        dyn = Langevin(a, 2 * units.fs, temperature_K=T, friction=0.02 / units.fs, rng=rng)
        dyn.run(100)
        for _ in range(per_temp):
            dyn.run(20)
            out.append((T, a.positions.copy(), a.cell.array.copy(), a.get_forces().copy()))
    return out


def force_rmse(members, test) -> dict:
    from ase import Atoms

    from elt.potentials.deepmd import load_ensemble

    pot = load_ensemble([Path(m) for m in members])
    err: dict = {}
    for T, pos, cell, f_ref in test:
        a = Atoms("Cu" * len(pos), positions=pos, cell=cell, pbc=True)
        p = pot.predict(a)
        err.setdefault(T, []).append((p.forces.mean(axis=0) - f_ref).ravel())
    out = {T: float(np.sqrt(np.mean(np.concatenate(e) ** 2))) for T, e in err.items()}
    out["all"] = float(np.sqrt(np.mean(np.concatenate([np.concatenate(e) for e in err.values()]) ** 2)))
    return out


def run_campaign(name: str, data: dict, workdir: Path, test, reuse: bool = False) -> dict:
    from elt.config import parse_workflow
    from elt.engine.loop import run_workflow
    from elt.engine.state import open_readonly

    wf = parse_workflow({**data, "name": f"bench-{name}"})
    run_dir = workdir / name
    if not reuse:
        shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()  # with reuse, a finished run of the same workflow resumes at its end
    summary = run_workflow(wf, run_dir)
    seconds = time.perf_counter() - t0
    with open_readonly(run_dir) as st:
        recs = st.iterations()
    curve = []  # (labeled frames the ensemble was trained on, test RMSEs)
    for r in recs:
        curve.append((r["dataset_size"] - r["labels_ok"], force_rmse(r["members"], test)))
    curve.append((summary.dataset_size, force_rmse(summary.final_members, test)))
    return {"curve": curve, "seconds": seconds, "status": summary.status, "run_dir": run_dir,
            "data_files": [str(run_dir / "data" / "init.extxyz")] + [r["data_file"] for r in recs],
            "lo_hi_cands": [(r["candidates"], r["selected"], round(r["accurate_ratio"], 2)) for r in recs],
            "stops": [r["stop_reasons"] for r in recs]}


def _train_one(files: list, steps: int, seed: int, out: str) -> str:
    """One member from scratch on the frames of ``files`` (run in a worker process)."""
    import torch

    from elt.config import TrainConfig
    from elt.data.frames import read_frames
    from elt.potentials.deepmd import train_member

    torch.set_num_threads(1)
    frames = [a for f in files for a in read_frames(Path(f))]
    cfg = TrainConfig(**{**BASE["train"], "max_steps": steps})
    train_member(frames, cfg, ["Cu"], 0, seed, Path(out))
    return out


def retrained_curves(runs: dict, test, steps: int, members: int, workdir: Path) -> dict:
    """Learning curves of the campaigns' data sets with one training recipe and one set of member
    seeds for every prefix (first k iterations' labels) of every campaign: only the data differ,
    so seed-to-seed spread of training does not enter the comparison. Shared prefixes (the
    initial frames) are trained once."""
    import hashlib
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from elt.data.frames import read_frames

    jobs: dict = {}  # data hash -> (files, [member paths])
    plan: dict = {}  # (campaign, seed) -> [(data size, data hash)]
    sizes = {}
    for key, rs in runs.items():
        for i, r in enumerate(rs):
            files = r["data_files"]
            plan[key, i] = []
            for k in range(1, len(files) + 1):
                h = hashlib.sha256("".join(Path(f).read_text() for f in files[:k]).encode()).hexdigest()[:12]
                for f in files[:k]:
                    sizes.setdefault(f, len(read_frames(Path(f))))
                plan[key, i].append((sum(sizes[f] for f in files[:k]), h))
                jobs.setdefault(h, (files[:k], [str(workdir / "retrain" / f"{h}-s{steps}-{m}.pt") for m in range(members)]))
    (workdir / "retrain").mkdir(parents=True, exist_ok=True)
    todo = [(files, steps, 1000 + m, out) for files, outs in jobs.values() for m, out in enumerate(outs)
            if not Path(out).exists()]
    t = time.perf_counter()
    with ProcessPoolExecutor(BASE["cluster"]["n_workers"], mp_context=multiprocessing.get_context("spawn")) as ex:
        list(ex.map(_train_one, *zip(*todo))) if todo else None
    print(f"retrained {len(todo)} members ({len(jobs)} data sets x {members}, {steps} steps) in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    rmse = {h: force_rmse(outs, test) for h, (_, outs) in jobs.items()}
    return {key: mean_curve([[(n, rmse[h]) for n, h in plan[key, i]] for i in range(len(rs))])
            for key, rs in runs.items()}


def labels_interpolated(curve, target: float, n0: int):
    """Chosen labels at which the curve first reaches ``target``, interpolating log(RMSE) linearly
    between the two points around the crossing (None when never reached)."""
    prev = None
    for n, rm in curve:
        r = rm["all"]
        if r <= target:
            if prev is None or prev[1] <= r:
                return n - n0
            (n1, r1) = prev
            return n1 - n0 + (n - n1) * (np.log(r1) - np.log(target)) / (np.log(r1) - np.log(r))
        prev = (n, r)
    return None


def labels_to_reach(curve, target: float):
    for n, rm in curve:
        if rm["all"] <= target:
            return n
    return None


def mean_curve(curves: list) -> list:
    """Point-wise mean over seeds of (labels, RMSEs) curves (cut to the shortest)."""
    k = min(len(c) for c in curves)
    out = []
    for i in range(k):
        pts = [c[i] for c in curves]
        rm = {T: float(np.mean([p[1][T] for p in pts])) for T in pts[0][1]}
        out.append((float(np.mean([p[0] for p in pts])), rm))
    return out


def print_curves(title: str, curves: dict, per_seed: dict, chosen: dict, test_temps, target, n0: int) -> dict:
    """RMSE-versus-labels table, labels needed for ``target``, and the paired ratios at equal labels."""
    print(f"\n{title}")
    head = f"{'campaign':<36} {'labels':>6} {'data':>5} " + " ".join(f"{int(T):>6}K" for T in test_temps) + f" {'all':>7}"
    print(head)
    print("-" * len(head))
    for key, (label, _) in chosen.items():
        for i, (n, rm) in enumerate(curves[key]):
            name = f"({key}) {label}" if i == 0 else ""
            print(f"{name:<36} {n - n0:>6.0f} {n:>5.0f} " + " ".join(f"{rm[T]:7.3f}" for T in test_temps) + f" {rm['all']:7.3f}")
    print(f"labels chosen until the force RMSE (all test temperatures) is ≤ {target:.3f} eV/Å "
          f"(first point reaching it; interpolated{'; per seed' if per_seed else ''}):")
    need = {k: labels_interpolated(c, target, n0) for k, c in curves.items()}
    for key, (label, _) in chosen.items():
        first = labels_to_reach(curves[key], target)
        seeds = [labels_to_reach(c, target) for c in per_seed.get(key, [])]
        seeds = [None if x is None else round(x - n0) for x in seeds]
        shown = "not reached" if first is None else f"{first - n0:.0f}"
        interp = "" if need[key] is None else f"{need[key]:.1f}"
        print(f"  ({key}) {label:<34} {shown:>11} {interp:>6}  {seeds if len(seeds) > 1 else ''}")
    if all(need.get(k) is not None for k in "abc") and need["a"] and need["c"]:
        print(f"  ratios (interpolated): (b)/(c) = {need['b'] / need['c']:.2f} (goal ≤ 0.5), "
              f"(b)/(a) = {need['b'] / need['a']:.2f} (goal < 1)")
    # at equal iteration the campaigns trained with the same member seeds, so they differ only by
    # their data: the paired ratio is the cleaner signal when the spread between seeds (visible
    # along one curve) is larger than the effect of the data
    others = [k for k in "acd" if k in curves]
    if "b" in curves and others:
        print("  paired at equal labels, RMSE of (b) over the others:")
        print(f"  {'labels':>8}" + "".join(f"{'(b)/(' + k + ')':>10}" for k in others))
        for i in range(min(len(curves[k]) for k in ["b", *others])):
            print(f"  {curves['b'][i][0] - n0:>8.0f}"
                  + "".join(f"{curves['b'][i][1]['all'] / curves[k][i][1]['all']:>10.2f}" for k in others))
    return need


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("bench-runs/data-efficiency"))
    ap.add_argument("--iterations", type=int, default=BASE["converge"]["max_iterations"])
    ap.add_argument("--labels", type=int, default=BASE["select"]["max_candidates"], help="labels per iteration (max_candidates)")
    ap.add_argument("--train-steps", type=int, default=BASE["train"]["max_steps"], help="optimisation steps of every training in the campaigns (from scratch)")
    ap.add_argument("--retrain-steps", type=int, default=2000, help="steps of each member retrained on the campaigns' data sets")
    ap.add_argument("--retrain-members", type=int, default=2, help="members (fixed seeds) retrained per data set; 0: skip the retraining")
    ap.add_argument("--seeds", type=int, default=1, help="repeat every campaign with this many seeds; the tables show means")
    ap.add_argument("--bias", choices=["udd", "hal", "none"], default="udd")
    ap.add_argument("--strength", type=float, default=None, help="UDD A (eV, default 1) or HAL target_ratio (default 0.3)")
    ap.add_argument("--width", type=float, default=None, help="UDD B (eV); default: auto (set on each walker's start frame)")
    ap.add_argument("--pool", type=int, default=15, help="(b), (d): the adaptive lo makes this many of an iteration's frames below trust_hi candidates; fps picks the labels among them")
    ap.add_argument("--variants", default="abcd", help="which campaigns to run (e.g. abc); d: (b) without the bias")
    ap.add_argument("--target", type=float, default=None, help="target force RMSE (eV/Å); default: the largest final RMSE")
    ap.add_argument("--test-frames", type=int, default=16, help="test frames per temperature")
    ap.add_argument("--reuse", action="store_true", help="resume finished campaigns in --dir instead of running them anew (same settings)")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.iterations, args.test_frames, args.seeds, args.retrain_steps = 2, 6, 1, 300
    BASE["converge"]["max_iterations"] = args.iterations
    BASE["select"]["max_candidates"] = args.labels
    BASE["train"]["max_steps"] = args.train_steps
    bias = {"hal": {"kind": "hal", "target_ratio": args.strength or 0.3},
            "udd": {"kind": "udd", "strength": args.strength or 1.0, "width": args.width}, "none": None}[args.bias]
    args.dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    test_temps = TEMPS + [TEMPS[-1] + 300.0]
    test = emt_test_set(test_temps, args.test_frames)
    print(f"test set: {len(test)} EMT MD frames at {test_temps} K ({time.perf_counter() - t0:.0f} s)")
    chosen = {k: v for k, v in variants(bias, args.pool).items() if k in args.variants}
    runs: dict = {k: [] for k in chosen}
    for seed in range(args.seeds):
        for key, (label, data) in chosen.items():
            r = run_campaign(f"{key}{seed}", {**data, "seed": BASE["seed"] + seed}, args.dir, test, args.reuse)
            runs[key].append(r)
            print(f"({key}) seed {seed} {label}: {r['status']}, {r['seconds']:.0f} s; per iteration (candidates, "
                  f"selected, accurate ratio): {r['lo_hi_cands']}", flush=True)
    n0 = BASE["system"]["n_initial"]
    curves = {k: mean_curve([r["curve"] for r in v]) for k, v in runs.items()}
    per_seed = {k: [r["curve"] for r in v] for k, v in runs.items()}
    target = args.target or max(c[-1][1]["all"] for c in curves.values())
    print_curves(f"the campaigns' own ensembles (member seeds differ from one iteration to the next): force RMSE "
                 f"(eV/Å) on the held-out test set vs labels chosen (data: with the {n0} shared initial frames), "
                 f"mean of {args.seeds} seed(s)", curves, per_seed, chosen, test_temps, target, n0)
    if args.retrain_members:
        re = retrained_curves(runs, test, args.retrain_steps, args.retrain_members, args.dir)
        target = args.target or max(c[-1][1]["all"] for c in re.values())
        print_curves(f"retrained: {args.retrain_members} members with the same seeds on every campaign's first k "
                     f"iterations of data ({args.retrain_steps} steps): only the data differ", re, {}, chosen,
                     test_temps, target, n0)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
