"""How well the ensemble's max force deviation ranks the true max force error (issue 16), side by side.

For each EMT metal (Cu a = 3.61 Å, Ni a = 3.52 Å; 32-atom fcc cells) the data set is what a
quickstart campaign holds after one or two iterations: 12 randomly perturbed copies (0.08 Å, 3 %
strain) plus 12 frames of EMT MD at 300 and 600 K. Each ensemble recipe trains 4 members on it;
walkers driven by that ensemble (Langevin, 2 fs) explore at several temperatures; a RANDOM sample
of ALL recorded frames (not only candidates; frames that stopped a walker are excluded) is
labelled with EMT. Reported per recipe: Spearman(max_devi_f, true max force error), top-decile
recall (the share of the 10 % worst-error frames among the 10 % highest-deviation frames), the
calibration scale (median error/deviation, elt.sampling.levels.calibrate) and the mean test force
RMSE. Goal: Spearman ≥ 0.7 and top-decile recall ≥ 0.6.

    python bench/bench_indicator.py                       # ~25 min on 2 shared cores
    python bench/bench_indicator.py --quick               # smoke run: fewer walkers, 2 recipes
    python bench/bench_indicator.py --json out.json --recipes current,default
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

METALS = {"Cu": 3.61, "Ni": 3.52}
# the recipe before issue 16 (the quickstart's): fixed step budget, no plateau checks, members
# differ only by seed (initial weights, batch order, validation split); trained by this version's
# code, so with the energy-offset realignment. Measured (2 data seeds x Cu, Ni): no diversity
# option (bootstrap, subsample 0.8 / 0.6) ranked errors better than the defaults consistently, and
# each raised the ensemble's error, so the defaults keep neither.
CURRENT = {"epochs": 200, "min_steps": 1, "max_steps": 1200, "patience": None, "stress_weight": (0.0, 0.0),
           "learning_rate": 1e-3, "learning_rate_end": 1e-4}
RECIPES = {
    "current": CURRENT,
    "default": {},                                   # this version's TrainConfig defaults
    "bootstrap": {"bootstrap": True},
    "subsample": {"subsample": 0.6},
    "subsample80": {"subsample": 0.8},
}


def emt_label(atoms):
    from ase.calculators.emt import EMT

    from elt.data.frames import attach_labels

    a = atoms.copy()
    a.calc = EMT()
    return attach_labels(a, a.get_potential_energy(), a.get_forces(), a.get_stress())


def emt_md(base, temperature: float, n: int, seed: int, every: int = 20):
    from elt.labeling.emt import emt_md_frames

    return [emt_label(a) for a in emt_md_frames(base, n, temperature, every=every, equilibrate=100, seed=seed)]


def dataset(element: str, a0: float, seed: int):
    from ase.build import bulk

    from elt.data.structures import perturbed_copies

    base = bulk(element, "fcc", a=a0, cubic=True) * (2, 2, 2)
    frames = [emt_label(a) for a in perturbed_copies([base], 12, 0.08, 0.03, seed)]
    for T in (300.0, 600.0):
        frames += emt_md(base, T, 6, seed + int(T))
    return base, frames


def train(frames, element: str, recipe: dict, workdir: Path, k: int, seed: int):
    import torch

    from elt.config.train import TrainConfig
    from elt.potentials.deepmd import load_ensemble, train_member

    torch.set_num_threads(1)
    cfg = TrainConfig(**recipe)
    workdir.mkdir(parents=True, exist_ok=True)
    paths, metrics = [], []
    for m in range(k):
        p = workdir / f"member_{m}.pt"
        metrics.append(train_member(frames, cfg, [element], m, seed * 100 + m, p))
        paths.append(p)
    return load_ensemble(paths), metrics


def explore(ens, base, temps, walkers: int, steps: int, seed: int):
    from elt.sampling.md import run_walker

    frames = []
    for T in temps:
        for w in range(walkers):
            rec = run_walker(base, ens.calculator(), temperature=T, steps=steps, record_every=10,
                             seed=seed + 1000 * w + int(T), max_energy_jump=1.0)
            keep = rec.frames[:-1] if rec.stopped_on_bad_frame else rec.frames
            frames += [(T, a) for a in keep]
    return frames


def indicator(ens, sample, valid_rmse_f: float, rng: np.random.Generator) -> dict:
    """Indicator quality on the sample; auto levels calibrated on one half, checked on the other."""
    from elt.config.sampling import AutoLevels
    from elt.potentials.deviation import frame_deviation
    from elt.reporting.stats import force_errors, spearman, top_fraction_recall
    from elt.sampling.levels import auto_levels, calibrate

    devi, err, rms = [], [], []
    preds = ens.predict_many([a for _, a in sample])
    for (_, a), p in zip(sample, preds):
        ref = emt_label(a).get_forces()
        devi.append(frame_deviation(p.energies, p.forces).max_devi_f)
        e_max, e_rms = force_errors(p.forces.mean(axis=0), ref)
        err.append(e_max)
        rms.append(e_rms)
    devi, err, rms = np.array(devi), np.array(err), np.array(rms)
    temps = np.array([T for T, _ in sample])
    per_t = {f"{T:g}": spearman(devi[temps == T], err[temps == T]) for T in sorted(set(temps.tolist()))}
    half = rng.permutation(len(sample))
    fit, check = half[: len(half) // 2], half[len(half) // 2:]
    scale = calibrate(devi[fit], err[fit])
    lv = auto_levels(valid_rmse_f, scale, AutoLevels())
    acc = devi[check] < lv.lo
    return {"n": len(sample), "spearman": spearman(devi, err), "top_decile_recall": top_fraction_recall(devi, err),
            "spearman_per_temperature": per_t,
            "spearman_within_temperature": float(np.mean([v for v in per_t.values() if v is not None])),
            "scale": calibrate(devi, err), "rmse_f": float(np.sqrt(np.mean(np.square(rms)))),
            "max_over_rms": float(np.median(err / np.maximum(rms, 1e-12))),
            "auto_levels": lv.as_dict(),
            # on the other half: the share the auto lo calls accurate, and how many of those truly
            # have a max force error below the target the levels promise
            "accurate_ratio": float(acc.mean()),
            "accurate_within_target": float(np.mean(err[check][acc] < lv.target)) if acc.any() and lv.target else None,
            "devi_median": float(np.median(devi)), "err_median": float(np.median(err))}


def run_one(element: str, a0: float, name: str, recipe: dict, args, out: Path) -> dict:
    t0 = time.perf_counter()
    base, frames = dataset(element, a0, args.seed)
    ens, metrics = train(frames, element, recipe, out / element / name, args.members, args.seed)
    t_train = time.perf_counter() - t0
    explored = explore(ens, base, args.temps, args.walkers, args.steps, args.seed)
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(explored), size=min(args.sample, len(explored)), replace=False)
    valid_f = float(np.mean([m["valid"]["rmse_f"] for m in metrics if m["valid"]]))
    res = indicator(ens, [explored[i] for i in sorted(pick)], valid_f, rng)
    res.update(explored=len(explored), train_seconds=round(t_train, 1), valid_rmse_f=valid_f,
               steps=[m["steps"] for m in metrics], stop=[m["stop_reason"] for m in metrics],
               fit_ok=[m["fit_ok"] for m in metrics], seconds=round(time.perf_counter() - t0, 1))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 walker per temperature, 2 recipes")
    ap.add_argument("--json", type=Path, help="write the results to this JSON file")
    ap.add_argument("--recipes", help="comma-separated recipe names (default: all; --quick: current,default)")
    ap.add_argument("--metals", default="Cu,Ni", help="comma-separated: Cu, Ni")
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=Path("bench-runs/indicator"))
    args = ap.parse_args()
    args.temps = [300.0, 600.0, 900.0, 1200.0]
    args.walkers, args.steps, args.sample = (1, 200, 60) if args.quick else (2, 300, 200)
    names = args.recipes.split(",") if args.recipes else (["current", "default"] if args.quick else list(RECIPES))
    unknown = sorted(set(names) - set(RECIPES))
    if unknown:
        ap.error(f"unknown recipe(s) {', '.join(unknown)}; choose from {', '.join(RECIPES)}")
    results: dict = {}
    for element in args.metals.split(","):
        for name in names:
            r = run_one(element, METALS[element], name, RECIPES[name], args, args.workdir)
            results.setdefault(element, {})[name] = r
            lv = r["auto_levels"]
            print(f"{element:3s} {name:10s} n={r['n']:4d} spearman={r['spearman']:+.3f} "
                  f"recall@10%={r['top_decile_recall']:.2f} within-T={r['spearman_within_temperature']:+.3f} "
                  f"scale={r['scale']:.2f} rmse_f={r['rmse_f']:.3f} valid_rmse_f={r['valid_rmse_f']:.3f} "
                  f"max/rms={r['max_over_rms']:.2f} auto lo/hi={lv['trust_lo']:.3f}/{lv['trust_hi']:.3f} "
                  f"accurate={r['accurate_ratio']:.2f} (within target {r['accurate_within_target']}) "
                  f"steps={r['steps']} stop={r['stop']} ({r['seconds']:.0f} s)", flush=True)
    print("\nelement recipe      spearman  recall@10%  within-T  rmse_f  (goal: spearman >= 0.70, recall >= 0.60)")
    for element, rs in results.items():
        for name, r in rs.items():
            print(f"{element:7s} {name:10s} {r['spearman']:+9.3f} {r['top_decile_recall']:11.2f} "
                  f"{r['spearman_within_temperature']:+9.3f} {r['rmse_f']:7.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
