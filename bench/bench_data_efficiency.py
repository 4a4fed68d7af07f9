"""Data efficiency of exploration and selection (issue 7), with the EMT oracle, side by side.

Three campaigns from the same start data and seeds (32-atom fcc Cu, EMT labels, local Dask):
  (a) plain MD + trust levels (DP-GEN style: random picks among the frames between lo and hi);
  (b) uncertainty-biased MD (UDD or HAL) + trust levels + diversity (farthest-point sampling on
      the ensemble's descriptors);
  (c) the same label budget chosen at random from plain-MD frames (every recorded frame is a
      candidate: lo ≈ 0, hi = ∞).
and (d), for reference, (a) with the fps diversity selection of (b) but no bias.
The ensemble of every iteration (and the final one) is tested on a held-out set from EMT MD at the
explored temperatures and one above; the table gives the force RMSE against the number of labeled
frames, and the labels each campaign needed to reach a target RMSE (default: the largest of the
final RMSEs, so that every campaign reaches it). Goal (issue 7): (b) needs at most half the
labels of (c) and fewer than (a) for the same test error.

    python bench/bench_data_efficiency.py               # ~6 min on 2 cores (UDD bias, auto width)
    python bench/bench_data_efficiency.py --bias hal    # HAL bias (target force ratio 0.3)
    python bench/bench_data_efficiency.py --quick       # a smoke run (2 iterations, ~3 min)
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
    "train": {"ensemble_size": 3, "epochs": 60, "warm_epochs": 25, "batch_size": 4,
              "model": {"rcut": 4.0, "rcut_smth": 2.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}},
    "explore": {"stages": [{"temperatures": TEMPS, "steps": 200, "record_every": 10, "max_iterations": 100}]},
    "select": {"trust_lo": 0.2, "trust_hi": 0.8, "max_candidates": 6},
    "label": {"kind": "emt"},
    "converge": {"accurate_ratio": 1.0, "max_iterations": 4},
    "cluster": {"kind": "local", "n_workers": 2},
}


def variants(bias) -> dict:
    a = copy.deepcopy(BASE)
    b = copy.deepcopy(BASE)
    if bias is not None:
        b["explore"]["stages"][0]["bias"] = bias
    b["select"]["strategy"] = "fps"
    c = copy.deepcopy(BASE)
    c["explore"]["stages"][0]["stop_at_failed"] = False
    c["select"].update(trust_lo=1e-9, trust_hi=1e9)
    d = copy.deepcopy(BASE)
    d["select"]["strategy"] = "fps"
    return {"a": ("plain MD + trust levels", a),
            "b": (f"{bias['kind'] if bias else 'no'} bias + trust levels + fps", b),
            "c": ("random labels from plain MD", c),
            "d": ("plain MD + trust levels + fps", d)}


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


def run_campaign(name: str, data: dict, workdir: Path, test) -> dict:
    from elt.config import parse_workflow
    from elt.engine.loop import run_workflow
    from elt.engine.state import open_readonly

    wf = parse_workflow({**data, "name": f"bench-{name}"})
    run_dir = workdir / name
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    summary = run_workflow(wf, run_dir)
    seconds = time.perf_counter() - t0
    with open_readonly(run_dir) as st:
        recs = st.iterations()
    curve = []  # (labeled frames the ensemble was trained on, test RMSEs)
    for r in recs:
        curve.append((r["dataset_size"] - r["labels_ok"], force_rmse(r["members"], test)))
    curve.append((summary.dataset_size, force_rmse(summary.final_members, test)))
    return {"curve": curve, "seconds": seconds, "status": summary.status,
            "lo_hi_cands": [(r["candidates"], r["selected"], round(r["accurate_ratio"], 2)) for r in recs],
            "stops": [r["stop_reasons"] for r in recs]}


def labels_to_reach(curve, target: float):
    for n, rm in curve:
        if rm["all"] <= target:
            return n
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("bench-runs/data-efficiency"))
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--labels", type=int, default=6, help="labels per iteration (max_candidates)")
    ap.add_argument("--bias", choices=["udd", "hal", "none"], default="udd")
    ap.add_argument("--strength", type=float, default=None, help="UDD A (eV, default 1) or HAL target_ratio (default 0.3)")
    ap.add_argument("--width", type=float, default=None, help="UDD B (eV); default: auto (set on each walker's start frame)")
    ap.add_argument("--variants", default="abcd", help="which campaigns to run (e.g. abc); d: fps without bias")
    ap.add_argument("--target", type=float, default=None, help="target force RMSE (eV/Å); default: the largest final RMSE")
    ap.add_argument("--test-frames", type=int, default=12, help="test frames per temperature")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.iterations, args.test_frames = 2, 6
    BASE["converge"]["max_iterations"] = args.iterations
    BASE["select"]["max_candidates"] = args.labels
    bias = {"hal": {"kind": "hal", "target_ratio": args.strength or 0.3},
            "udd": {"kind": "udd", "strength": args.strength or 1.0, "width": args.width}, "none": None}[args.bias]
    args.dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    test_temps = TEMPS + [TEMPS[-1] + 300.0]
    test = emt_test_set(test_temps, args.test_frames)
    print(f"test set: {len(test)} EMT MD frames at {test_temps} K ({time.perf_counter() - t0:.0f} s)")
    results = {}
    chosen = {k: v for k, v in variants(bias).items() if k in args.variants}
    for key, (label, data) in chosen.items():
        results[key] = run_campaign(key, data, args.dir, test)
        r = results[key]
        print(f"({key}) {label}: {r['status']}, {r['seconds']:.0f} s; per iteration (candidates, selected, "
              f"accurate ratio): {r['lo_hi_cands']}")

    target = args.target or max(r["curve"][-1][1]["all"] for r in results.values())
    print()
    print("force RMSE (eV/Å) on the held-out EMT test set vs labeled frames (6 shared initial frames included)")
    head = f"{'campaign':<36} {'labels':>6} " + " ".join(f"{int(T):>6}K" for T in test_temps) + f" {'all':>7}"
    print(head)
    print("-" * len(head))
    for key, (label, _) in chosen.items():
        for i, (n, rm) in enumerate(results[key]["curve"]):
            name = f"({key}) {label}" if i == 0 else ""
            tag = "final" if i == len(results[key]["curve"]) - 1 else f"it {i}"
            print(f"{name:<30} {tag:>5} {n:>6} " + " ".join(f"{rm[T]:7.3f}" for T in test_temps) + f" {rm['all']:7.3f}")
    print()
    print(f"labels needed to reach force RMSE ≤ {target:.3f} eV/Å (all test temperatures):")
    need = {k: labels_to_reach(results[k]["curve"], target) for k in results}
    for key, (label, _) in chosen.items():
        print(f"  ({key}) {label:<34} {need[key] if need[key] is not None else 'not reached'}")
    if all(need.get(k) for k in "abc"):
        print(f"  ratios: (b)/(c) = {need['b'] / need['c']:.2f} (goal ≤ 0.5), (b)/(a) = {need['b'] / need['a']:.2f} (goal < 1)")
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
