"""Resume overhead: time from `elt run` on an interrupted run to the first new task dispatched.

Builds (once, cached in --dir) a run of N finished iterations with a deliberately cheap EMT
workflow, then, in one process and side by side:
  - a fresh run: start → first task dispatched;
  - a resume of the N-iteration run (max_iterations raised to N+1): start → first new task.
The cluster start-up (Dask LocalCluster) is timed separately and subtracted: what is left is the
engine's own cost of finding where it stands (replay of records, reuse checks, data hashing).
Also prints the size of the run state. Goal (issue 4): resume overhead < 2 s at N = 50.

    python bench/bench_resume.py --iterations 50
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import yaml

from elt.config import load_workflow
from elt.engine.loop import Campaign
from elt.engine.runner import Reporter

CHEAP = {
    "name": "bench",
    "seed": 1,
    "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}], "n_initial": 4},
    "train": {"ensemble_size": 2, "epochs": 2, "warm_epochs": 1, "batch_size": 4,
              "model": {"rcut": 3.5, "embedding": [4, 8], "axis_neuron": 2, "fitting": [8]}},
    "explore": {"stages": [{"temperatures": [300], "steps": 20, "record_every": 10, "max_iterations": 1000}]},
    "select": {"trust_lo": 0.0001, "trust_hi": 100.0, "max_candidates": 2},
    "converge": {"max_iterations": 50, "accurate_ratio": 1.0},
    "cluster": {"kind": "local", "n_workers": 2},
}


class FirstDispatch(Exception):
    pass


class StopAtFirstNewTask(Reporter):
    def __init__(self):
        self.t = None

    def phase_start(self, name, total, reused):
        if total > reused:
            self.t = time.perf_counter()
            raise FirstDispatch(name)


def time_to_first_dispatch(wf_path: Path, run_dir: Path) -> tuple[float, float, str]:
    import elt.dispatch.local as local

    t_cluster = {}
    orig = local.LocalDaskCluster.start

    def timed_start(self):
        t0 = time.perf_counter()
        out = orig(self)
        t_cluster["s"] = time.perf_counter() - t0
        return out

    local.LocalDaskCluster.start = timed_start
    rep = StopAtFirstNewTask()
    t0 = time.perf_counter()
    try:
        wf = load_workflow(wf_path)
        Campaign(wf, run_dir, None, rep).run()
        phase = "(nothing to do)"
    except FirstDispatch as e:
        phase = str(e)
    finally:
        local.LocalDaskCluster.start = orig
    total = (rep.t or time.perf_counter()) - t0
    return total, t_cluster.get("s", 0.0), phase


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--dir", type=Path, default=Path("bench-runs/resume"))
    args = ap.parse_args()
    n = args.iterations
    args.dir.mkdir(parents=True, exist_ok=True)
    wf_path = args.dir / "wf.yaml"
    data = {**CHEAP, "converge": {**CHEAP["converge"], "max_iterations": n}}
    wf_path.write_text(yaml.safe_dump(data))
    run_dir = args.dir / "run"
    from elt.engine.loop import run_workflow
    from elt.engine.state import open_readonly

    done = 0
    if (run_dir / "state.db").exists():
        with open_readonly(run_dir) as st:
            done = len(st.iterations())
    if done < n:
        print(f"building a run of {n} iterations in {run_dir} (once; {done} exist) ...", flush=True)
        t0 = time.perf_counter()
        run_workflow(load_workflow(wf_path), run_dir)
        print(f"  built in {time.perf_counter() - t0:.0f} s")
    # side by side: fresh vs resume after k iterations (prefixes of the built run, branched off it)
    from elt.engine.branch import branch_run
    from elt.engine.state import RunState

    import elt.potentials.deepmd  # noqa: F401  (import torch before timing: not the engine's cost)

    fresh_dir = args.dir / "fresh"
    shutil.rmtree(fresh_dir, ignore_errors=True)
    rows = [("fresh run", time_to_first_dispatch(wf_path, fresh_dir), 0.0)]
    for k in sorted({max(1, n // 5), max(1, n // 2), n}):
        data["converge"]["max_iterations"] = k + 1
        wf_path.write_text(yaml.safe_dump(data))
        target = run_dir
        if k < n:
            target = args.dir / f"prefix{k}"
            shutil.rmtree(target, ignore_errors=True)
            branch_run(load_workflow(wf_path), run_dir, k, target)
            with RunState(target) as st:  # a run that stopped after k iterations has no later tasks
                with st.db:
                    st.db.execute("DELETE FROM tasks WHERE iteration >= ?", (k,))
                st.db.execute("VACUUM")
        res = time_to_first_dispatch(wf_path, target)
        state_mb = sum(p.stat().st_size for p in target.glob("state.db*")) / 1e6
        rows.append((f"resume after {k} iterations", res, state_mb))
    print()
    print(f"{'case':<28}{'to first task (s)':>18}{'cluster start (s)':>18}{'engine (s)':>12}{'state (MB)':>12}  first phase")
    for name, (tot, cl, phase), mb in rows:
        print(f"{name:<28}{tot:>18.2f}{cl:>18.2f}{tot - cl:>12.2f}{mb:>12.2f}  {phase}")
    last = rows[-1][1]
    print(f"\ngoal: resume engine overhead < 2 s after {n} iterations -> {'met' if last[0] - last[1] < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
