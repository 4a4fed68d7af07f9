"""Does the barrier follow the training steps? Retrain on a finished campaign's data set with the
bench's train section at several step caps and measure the NEB barrier error of each ensemble
(bench_rare_events.evaluate). Same frames, same member seeds: only the step cap changes.

    python bench/rare_train_steps.py bench-runs/rare-events/Cu-cmetad-0 --steps 400,2000 --members 2
    python bench/rare_train_steps.py RUN --steps 2000 --prefixes   # the data after each iteration
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--steps", default="400,2000")
    ap.add_argument("--members", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--prefixes", action="store_true",
                    help="train on the initial data plus the labels of iterations < k, for every k")
    args = ap.parse_args()

    import bench_rare_events as B
    from elt import registry
    from elt.config import parse_workflow
    from elt.data.frames import read_frames

    rows = json.loads((args.run / B.ROWS_FILE).read_text()) if (args.run / B.ROWS_FILE).exists() else None
    data = rows["data"] if rows else None
    if data is None:
        raise SystemExit(f"{args.run} has no {B.ROWS_FILE} (run bench_rare_events.py --reuse on it first)")
    ref = B.reference("Cu", args.reps, 800.0, Path("/tmp/rare-train-steps"))
    files = sorted((args.run / "data").glob("*.extxyz"))
    initial = [f for f in files if not f.name.startswith("iter_")]
    labeled = [f for f in files if f.name.startswith("iter_")]
    sets = [initial + labeled[:k] for k in range(len(labeled) + 1)] if args.prefixes else [files]
    plugin = registry.get("potential", "deepmd")
    for n, use in [(int(x), fs) for x in args.steps.split(",") for fs in sets]:
        frames = [a for f in use for a in read_frames(f)]
        d = json.loads(json.dumps(data))
        d["train"].update(max_steps=n, min_steps=min(n, d["train"].get("min_steps", n)))
        wf = parse_workflow({**d, "name": "steps"})
        out = Path(f"/tmp/rare-train-steps/{args.run.name}-{n}-{len(frames)}")
        out.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        members = []
        for m in range(args.members):
            p = out / plugin.checkpoint_name(m)
            met = plugin.train_member(frames, wf.train, ["Cu"], m, 1000 + m, p, None)
            members.append(str(p))
        ev = B.evaluate(members, ref)
        print(f"{args.run.name}: {len(frames)} frames, max_steps {n}: {time.perf_counter() - t:.0f} s, "
              f"barrier {ev['barrier']:.3f} eV (error {ev['barrier_error']:+.3f}), RMSE thermal/saddle "
              f"{ev['rmse_thermal']:.3f}/{ev['rmse_saddle']:.3f}; last metrics {json.dumps(met, default=str)[:160]}",
              flush=True)


if __name__ == "__main__":
    main()
