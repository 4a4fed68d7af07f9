"""Engine overhead, Dask dispatch cost and worker utilisation of real campaigns, side by side.

    python bench/bench_engine.py              # EMT campaign + PySCF-labelled campaign + dispatch micro-benchmark
    python bench/bench_engine.py --quick      # smaller campaigns

For each campaign (run fresh, in this process, on a local Dask cluster of --workers processes):
- engine overhead: the share of the driver's wall time (after the cluster is up) during which no
  task was executing anywhere (scheduling, state writes, selection, data handling). Goal < 2 %.
- utilisation: busy worker-seconds / available worker-seconds, overall and per phase kind.
- straggler wait: the share of phase time spent with fewer tasks running than workers (the tail
  of a phase waiting for its slowest task).
Dispatch: per-task round trip (submit → result) of a no-op through the same wrapper, for each task
kind's real arguments, minus the time inside the task.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from elt.config import parse_workflow
from elt.engine.loop import Campaign
from elt.engine.runner import Reporter

CU = {
    "name": "bench-emt", "seed": 2,
    "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}], "n_initial": 8},
    "train": {"ensemble_size": 4},
    "explore": {"stages": [{"temperatures": [300, 600, 900, 1200], "steps": 300, "record_every": 10, "max_iterations": 3}]},
    "select": {"trust_lo": 0.04, "trust_hi": 0.4, "max_candidates": 16},
    "converge": {"max_iterations": 3},
}
WATER = {
    "name": "bench-pyscf", "seed": 2,
    "system": {"structures": [{"kind": "molecule", "name": "H2O"}], "n_initial": 6},
    "train": {"ensemble_size": 2},
    "explore": {"stages": [{"temperatures": [300, 500, 700, 900], "steps": 200, "record_every": 5, "max_iterations": 2}]},
    "select": {"trust_lo": 0.02, "trust_hi": 1.0, "max_candidates": 24},
    "label": {"kind": "pyscf", "xc": "pbe", "basis": "def2-svp"},
    "converge": {"max_iterations": 2},
}


def union_length(intervals):
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def busy_profile(intervals, t0, t1):
    """Seconds in [t0, t1] during which exactly n tasks ran, as {n: seconds}."""
    events = []
    for a, b in intervals:
        a, b = max(a, t0), min(b, t1)
        if b > a:
            events += [(a, 1), (b, -1)]
    events.sort()
    prof, n, last = {}, 0, t0
    for t, d in events:
        prof[n] = prof.get(n, 0.0) + t - last
        n, last = n + d, t
    prof[n] = prof.get(n, 0.0) + t1 - last
    return prof


def overhead_split(journal: Path, up: float, end: float) -> dict:
    """Where the time with no task executing lies, from the workers' own start/end records
    (execution journal, wall clock): before the first task starts, between tasks, after the last."""
    import json

    ev = sorted((json.loads(x) for x in journal.read_text().splitlines() if x.strip()), key=lambda e: e["t"])
    running, idle, last_end = set(), 0.0, None
    for e in ev:
        if e["event"] == "start":
            if not running and last_end is not None:
                idle += e["t"] - last_end
            running.add(e["task"])
        elif e["event"] == "end":
            running.discard(e["task"])
            if not running:
                last_end = e["t"]
    first = next(e["t"] for e in ev if e["event"] == "start")
    span = end - up
    return {"before": (first - up) / span, "between": idle / span, "after": (end - last_end) / span}


def campaign(data: dict, workers: int, root: Path) -> dict:
    import elt.dispatch.local as local

    run_dir = root / data["name"]
    shutil.rmtree(run_dir, ignore_errors=True)
    wf = parse_workflow({**data, "cluster": {"kind": "local", "n_workers": workers}}, base_dir=root)
    camp = Campaign(wf, run_dir, None, Reporter())
    marks = {}
    orig, orig_close = local.LocalDaskCluster.start, local.LocalDaskCluster.close

    def start(self):
        out = orig(self)
        marks["up"] = time.perf_counter()
        marks["up_wall"] = time.time()
        return out

    def close(self):  # the campaign is over when the cluster is asked to shut down
        marks.setdefault("down", time.perf_counter())
        marks.setdefault("down_wall", time.time())
        return orig_close(self)

    local.LocalDaskCluster.start, local.LocalDaskCluster.close = start, close
    try:
        t0 = time.perf_counter()
        summary = camp.run()
        t_end = time.perf_counter()
    finally:
        local.LocalDaskCluster.start, local.LocalDaskCluster.close = orig, orig_close
    tl = camp.runner.timeline
    # execution intervals on the driver's clock: the task ended when its result arrived
    ex = [(done - secs, done) for (_, _, _, done, secs) in tl]
    up = marks["up"]
    t1 = marks["down"]  # start-up and shut-down of the Dask cluster are not the engine's
    wall = t1 - up
    covered = union_length([(max(a, up), b) for a, b in ex])
    busy = sum(s for *_, s in tl)
    out = {"name": data["name"], "status": summary.status, "tasks": len(tl), "wall": wall, "startup": up - t0,
           "overhead": 1 - covered / wall, "utilisation": busy / (workers * wall), "phases": {},
           "split": overhead_split(run_dir / "journal.log", marks["up_wall"], marks["down_wall"]),
           "shutdown": t_end - t1}
    for kind in ("train", "explore", "label"):
        rows = [r for r in tl if r[0] == kind]
        if not rows:
            continue
        by_phase = {}
        for r in rows:
            by_phase.setdefault(r[1], []).append(r)
        p_wall = p_busy = tail = 0.0
        for ph in by_phase.values():
            a, b = min(r[2] for r in ph), max(r[3] for r in ph)
            p_wall += b - a
            p_busy += sum(r[4] for r in ph)
            prof = busy_profile([(r[3] - r[4], r[3]) for r in ph], a, b)
            tail += sum(v for n, v in prof.items() if n < workers)
        out["phases"][kind] = {"tasks": len(rows), "wall": p_wall, "utilisation": p_busy / (workers * p_wall),
                               "below_full": tail / p_wall}
    return out


def _noop(task_dir, *args):
    return {"cache": False}


def dispatch_overhead(workers: int, root: Path, n: int = 40) -> dict:
    from ase.build import bulk

    from elt.config import EMTLabel, TrainConfig
    from elt.config.workflow import StageConfig
    from elt.dispatch.local import LocalDaskCluster
    from elt.config import LocalProfile
    from elt.engine.tasks import run_in_dir
    from elt.labeling.base import ExecSettings

    atoms = bulk("Cu", cubic=True).repeat(2)
    args = {
        "train": (["data/init.extxyz"], TrainConfig(), ["Cu"], 0, 1, None),
        "explore": ({"id": "w"}, atoms, ["m0.pt", "m1.pt"], "deepmd", StageConfig(), {"lo": 0.05, "hi": 0.3}),
        "label": (atoms, EMTLabel(), ExecSettings(), 2),
    }
    out = {}
    with LocalDaskCluster(LocalProfile(n_workers=workers), root) as cl:
        c = cl.client
        c.submit(run_in_dir, _noop, str(root / "warm"), pure=False).result()
        for kind, a in args.items():
            lat = []
            for i in range(n):
                t = time.perf_counter()
                c.submit(run_in_dir, _noop, str(root / "noop" / f"{kind}{i}"), *a, pure=False,
                         journal_file=str(root / "noop.log"), tag=kind).result()
                lat.append(time.perf_counter() - t)
            t = time.perf_counter()
            futs = [c.submit(run_in_dir, _noop, str(root / "noop" / f"{kind}b{i}"), *a, pure=False) for i in range(n)]
            c.gather(futs)
            out[kind] = {"latency_ms": 1000 * statistics.median(lat),
                         "throughput_ms": 1000 * (time.perf_counter() - t) / n}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dir", type=Path, default=Path("bench-runs/engine"))
    ap.add_argument("--skip-pyscf", action="store_true")
    ap.add_argument("--skip-emt", action="store_true")
    ap.add_argument("--stream", action="store_true", help="also run the PySCF campaign with select.stream on")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    cu, water = dict(CU), dict(WATER)
    if args.quick:
        cu["converge"] = {"max_iterations": 2}
        water["converge"] = {"max_iterations": 1}
    print("dispatch round trip of a no-op task through the engine's wrapper (real task arguments):")
    d = dispatch_overhead(args.workers, args.dir)
    print(f"{'kind':<10}{'latency (ms)':>14}{'per task, batched (ms)':>26}")
    for k, v in d.items():
        print(f"{k:<10}{v['latency_ms']:>14.1f}{v['throughput_ms']:>26.1f}")
    results = [] if args.skip_emt else [campaign(cu, args.workers, args.dir)]
    if not args.skip_pyscf:
        results.append(campaign(water, args.workers, args.dir))
        if args.stream:
            streamed = {**water, "name": "pyscf-stream", "select": {**water["select"], "stream": True}}
            results.append(campaign(streamed, args.workers, args.dir))
    print()
    print(f"{'campaign':<14}{'tasks':>6}{'wall (s)':>10}{'engine overhead':>17}{'utilisation':>13}   per phase kind: utilisation / time below full")
    for r in results:
        phases = "  ".join(f"{k} {v['utilisation']:.0%}/{v['below_full']:.0%}" for k, v in r["phases"].items())
        print(f"{r['name']:<14}{r['tasks']:>6}{r['wall']:>10.1f}{r['overhead']:>17.2%}{r['utilisation']:>13.0%}   {phases}")
    print("\nno task executing, as seen by the workers (execution journal), share of the wall time:")
    print(f"{'campaign':<14}{'before the first task':>23}{'between tasks':>15}{'after the last':>16}"
          f"   (not counted: cluster start-up, shut-down)")
    for r in results:
        sp = r["split"]
        print(f"{r['name']:<14}{sp['before']:>23.2%}{sp['between']:>15.2%}{sp['after']:>16.2%}"
              f"   {r['startup']:.1f} s, {r['shutdown']:.1f} s")
    print("\ngoals: engine overhead < 2 %; utilisation >= 90 % on the labelling-heavy (PySCF) campaign")


if __name__ == "__main__":
    main()
