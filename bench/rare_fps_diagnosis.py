"""Why are explored saddle frames rarely labeled? Diagnosis on a campaign of bench_rare_events.py.

For each iteration of a run directory (``--dir`` of bench_rare_events.py, one campaign), with the
ensemble that explored it: how many recorded frames are past a hop's midpoint and how many in the
transition region (an atom farther than 0.3 nearest-neighbour distances from every site of the
ideal lattice), how the transition-region frames are classified (accurate below trust_lo,
candidate between the levels, failed above trust_hi) and their max force deviation against all
frames', and how many of them FPS labels (budget) from the pooled candidates, against their share
of the pool, under each per-frame vector rule: ``mean`` (the engine's: per-element mean of the
per-atom descriptors), ``mean+max`` (also the per-feature max over atoms), ``mean+worst`` (also
the descriptor of the atom with the largest force deviation); each both as the engine runs FPS
(from the highest deviation, among the candidates) and started from the training frames.

    python bench/rare_fps_diagnosis.py bench-runs/rare-events/Cu-cmetad-0 [--lo 0.05 --hi 0.35 --budget 8]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_rare_events import off_site as lattice_off_site, past_midpoint


def off_site(frames, a: float, reps: int, d_nn: float, frac: float = 0.3):
    """bench_rare_events.off_site with the sites of the ideal fcc lattice (the vacancy site included)."""
    from ase.build import bulk

    lat = bulk("Cu", "fcc", a=a, cubic=True) * (reps, reps, reps)
    return lattice_off_site(frames, lat, lat.positions[0], d_nn, frac)


def vectors(pot, frames):
    """Per rule: (n, ...) frame vectors."""
    out = {"mean": [], "mean+max": [], "mean+worst": []}
    preds = pot.predict_many(frames)
    for a, p in zip(frames, preds):
        d = pot.descriptors(a)
        f = np.asarray(p.forces)  # (M, N, 3)
        dev = np.sqrt(((f - f.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0))  # per-atom force deviation
        out["mean"].append(d.mean(axis=0))
        out["mean+max"].append(np.concatenate([d.mean(axis=0), d.max(axis=0)]))
        out["mean+worst"].append(np.concatenate([d.mean(axis=0), d[int(np.argmax(dev))]]))
    return {k: np.asarray(v) for k, v in out.items()}


def fps_from(known: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """FPS among the rows of ``x`` that starts from the rows of ``known`` (the training frames) as
    already picked: each pick is the candidate farthest from the training set and earlier picks
    (features standardised over both)."""
    allx = np.concatenate([known, x])
    std = allx.std(0)
    z = (allx - allx.mean(0)) / np.where(std > 1e-12, std, 1.0)
    zk, zx = z[:len(known)], z[len(known):]
    dist = np.linalg.norm(zx[:, None] - zk[None], axis=2).min(axis=1)
    picked = []
    for _ in range(min(k, len(x))):
        i = int(np.argmax(dist))
        picked.append(i)
        dist = np.minimum(dist, np.linalg.norm(zx - zx[i], axis=1))
        dist[picked] = -1.0
    return np.asarray(picked)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--start", type=Path, default=None, help="the relaxed start (default: ../start-Cu-31.extxyz)")
    ap.add_argument("--lo", type=float, default=0.05)
    ap.add_argument("--hi", type=float, default=0.35)
    ap.add_argument("--budget", type=int, default=8)
    ap.add_argument("--a", type=float, default=3.61)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()

    from elt.data.frames import read_frames
    from elt.potentials.deepmd import load_ensemble
    from elt.sampling.fps import farthest_point_sampling

    start = args.start or next(args.run.parent.glob("start-*.extxyz"))
    ref = read_frames(start)[0]
    d_nn = args.a / np.sqrt(2.0)
    for it_dir in sorted(args.run.glob("iter_*")):
        walkers = sorted((it_dir / "explore").glob("*/frames.extxyz"))
        members = sorted(it_dir.glob("train/*/member_*.pt"))
        if not walkers or not members:
            continue
        pot = load_ensemble(members)
        cls = {"accurate": 0, "candidate": 0, "failed": 0}
        cand_frames, cand_devi, all_devi = [], [], []
        sad_devi, n_trans, n_past, n_all = [], 0, 0, 0
        for w in walkers:
            fr = read_frames(w)
            devi = np.loadtxt(w.parent / "model_devi.out", ndmin=2)[:, 4]
            n = min(len(fr), len(devi))
            fr, devi = fr[:n], devi[:n]
            sad = past_midpoint(fr, ref, d_nn)
            trans = off_site(fr, args.a, args.reps, d_nn)
            n_trans += int(trans.sum())
            n_past += int(sad.sum())
            n_all += len(fr)
            sad = trans  # the classes and the FPS ranks below are those of the transition region
            sad_devi.extend(devi[sad].tolist())
            all_devi.append(devi)
            cls["accurate"] += int((sad & (devi < args.lo)).sum())
            cls["candidate"] += int((sad & (devi >= args.lo) & (devi < args.hi)).sum())
            cls["failed"] += int((sad & ~(devi < args.hi)).sum())
            c = (devi >= args.lo) & (devi < args.hi)
            cand_frames.extend(f for f, m in zip(fr, c) if m)
            cand_devi.extend(devi[c].tolist())
        cand_devi = np.asarray(cand_devi)
        sad_c = off_site(cand_frames, args.a, args.reps, d_nn) if cand_frames else np.zeros(0, bool)
        print(f"{args.run.name} {it_dir.name}: {n_all} frames, {n_past} past a hop's midpoint, {n_trans} with an "
              f"off-site atom (transition region)")
        print(f"  transition-region frames by class {cls}; their max_devi_f "
              f"{np.round(np.percentile(sad_devi, [0, 50, 100]), 3).tolist() if sad_devi else '-'}; "
              f"(all frames {np.round(np.percentile(np.concatenate(all_devi), [0, 50, 100]), 3).tolist()}); "
              f"pool {len(cand_frames)} candidates, {int(sad_c.sum())} in the transition region")
        if len(cand_frames) <= args.budget or not sad_c.any():
            continue
        first = int(np.argmax(cand_devi))
        it = int(it_dir.name.split("_")[1])
        train = read_frames(args.run / "data" / "init.extxyz")
        for i in range(it):
            f = args.run / "data" / f"iter_{i:03d}.extxyz"
            if f.exists():
                train += read_frames(f)
        vt = vectors(pot, train)
        for rule, x in vectors(pot, cand_frames).items():
            picked = fps_from(vt[rule], x, args.budget)
            print(f"  {rule:<10} FPS from the {len(train)} training frames: labeled in transition region "
                  f"{int(sad_c[picked].sum())}/{args.budget}")
            order = farthest_point_sampling(x, len(x), first=first)
            rank = np.empty(len(x), int)
            rank[order] = np.arange(len(x))
            z = (x - x.mean(0)) / np.where(x.std(0) > 1e-12, x.std(0), 1.0)
            dist = np.linalg.norm(z - np.median(z, axis=0), axis=1)
            picked = order[:args.budget]
            print(f"  {rule:<10} labeled in transition region {int(sad_c[picked].sum())}/{args.budget} "
                  f"(pool share {sad_c.mean():.2f}); FPS rank of transition candidates median "
                  f"{np.median(rank[sad_c]):.0f} (others {np.median(rank[~sad_c]):.0f}); distance from the pool's "
                  f"median, standardised: transition {np.median(dist[sad_c]):.2f}, others {np.median(dist[~sad_c]):.2f}")


if __name__ == "__main__":
    main()
