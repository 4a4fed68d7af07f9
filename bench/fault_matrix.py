"""Fault matrix: damage a real run in one way at a time, rerun it, and print what was survived.

Each case starts a tiny EMT campaign (Cu-32, 2 walkers, 2 iterations) as a separate `elt run`
process, damages it (kills at the start of a task of a phase, deleted or truncated files, a
zero-byte state, a moved run directory), then runs `elt run` again until it ends. A case
*survived* when the final data set is byte-for-byte the uninterrupted reference's (same frames,
same labels) and no task finished twice (the journal); a damage elt must refuse (a zero-byte
state) survived when the rerun refuses with a message, exit code != 0, and leaves the file as it
was. Cluster kinds: local (always) and slurm (the localhost SLURM of .ci/slurm/start.sh, when it
answers; `--no-slurm` skips it).

    python bench/fault_matrix.py [--no-slurm | --clusters local,slurm] [--cases NAME,...] [--keep DIR]

The last line: ``survived=<n>/<cases>``. Takes about a minute per case on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from elt.engine.dataset import labeled_rows

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = {
    "name": "fault", "seed": 11,
    "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}], "n_initial": 4},
    "train": {"ensemble_size": 2, "epochs": 12, "warm_epochs": 4, "min_steps": 1, "warm_min_steps": 1,
              "batch_size": 2, "model": {"rcut": 4.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}},
    "explore": {"stages": [{"temperatures": [300, 700], "steps": 40, "record_every": 10, "max_iterations": 2}]},
    "select": {"trust_lo": 0.03, "trust_hi": 0.6, "max_candidates": 3},
    "converge": {"max_iterations": 2},
}


# ------------------------------------------------------------------ running elt
def elt_run(wf: Path, run_dir: Path, profile: Path | None, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "from elt.cli.main import entry; entry()", "run", str(wf), "--workdir", str(run_dir)]
    if profile is not None:
        cmd += ["--cluster", str(profile)]
    return subprocess.Popen(cmd, stdout=open(log, "a"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})


def events(run_dir: Path) -> list[dict]:
    p = run_dir / "journal.log"
    if not p.exists():
        return []
    return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]


def kill_group(p: subprocess.Popen, sig=signal.SIGKILL) -> None:
    if p.poll() is None:
        os.killpg(p.pid, sig)
        p.wait(timeout=300)


def run_until(wf, run_dir, profile, log, stop=None, timeout=900.0) -> int | None:
    """Run elt; SIGKILL it when ``stop(events)`` says so. The exit code, or None when killed."""
    p = elt_run(wf, run_dir, profile, log)
    deadline = time.monotonic() + timeout
    try:
        while p.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"elt run did not end within {timeout:.0f} s (see {log})")
            if stop is not None and stop(events(run_dir)):
                kill_group(p)
                return None
            time.sleep(0.01)
        return p.returncode
    finally:
        kill_group(p)


def started(kind: str, nth: int = 1, after: str | None = None):
    """Kill when the nth task of ``kind`` has started (after a task of kind ``after`` started)."""
    def stop(evs):
        kinds = [e["task"].split(":")[0] for e in evs if e["event"] == "start"]
        if after is not None:
            kinds = kinds[kinds.index(after) + 1:] if after in kinds else []
        return kinds.count(kind) >= nth
    return stop


# ------------------------------------------------------------------ damage kinds
def damage_kill(kind, nth=1, after=None):
    def apply(ctx):
        if run_until(ctx["wf"], ctx["run"], ctx["profile"], ctx["log"], started(kind, nth, after)) is not None:
            return "the run ended before the kill"
    return apply


def damage_file(action: str, what: str):
    def apply(ctx):
        rc = run_until(ctx["wf1"], ctx["run"], ctx["profile"], ctx["log"])  # one iteration, then damage
        if rc != 0:
            return f"first run exited {rc}"
        p = ctx["run"] / what
        if action == "delete":
            p.unlink()
        else:
            data = p.read_bytes()
            p.write_bytes(data[: len(data) // 2])
    return apply


def damage_move(ctx):
    rc = run_until(ctx["wf1"], ctx["run"], ctx["profile"], ctx["log"])
    if rc != 0:
        return f"first run exited {rc}"
    moved = ctx["run"].parent / "moved" / ctx["run"].name
    moved.parent.mkdir()
    shutil.move(str(ctx["run"]), str(moved))
    ctx["run"] = moved


def damage_zero_state(ctx):
    rc = run_until(ctx["wf1"], ctx["run"], ctx["profile"], ctx["log"])
    if rc != 0:
        return f"first run exited {rc}"
    (ctx["run"] / "state.db").write_bytes(b"")
    ctx["expect_refusal"] = "state.db"


CASES = {
    "kill: initial labels": damage_kill("label"),
    "kill: train": damage_kill("train"),
    "kill: explore": damage_kill("explore"),
    "kill: label (iteration 0)": damage_kill("label", after="explore"),
    "kill: second training": damage_kill("train", nth=3),
    "deleted data/iter_000.extxyz": damage_file("delete", "data/iter_000.extxyz"),
    "truncated data/iter_000.extxyz": damage_file("truncate", "data/iter_000.extxyz"),
    "truncated data/init.extxyz": damage_file("truncate", "data/init.extxyz"),
    "zero-byte state.db": damage_zero_state,
    "moved run directory": damage_move,
}


# ------------------------------------------------------------------ one case
def run_case(name: str, apply, profile: Path | None, root: Path, reference: list) -> tuple[str, str]:
    d = root / name.replace(" ", "_").replace(":", "").replace("/", "_").replace("(", "").replace(")", "")
    d.mkdir(parents=True)
    wf, wf1 = d / "wf.yaml", d / "wf1.yaml"
    wf.write_text(yaml.safe_dump(WORKFLOW))
    wf1.write_text(yaml.safe_dump({**WORKFLOW, "converge": {"max_iterations": 1}}))
    ctx = {"wf": wf, "wf1": wf1, "run": d / "run", "profile": profile, "log": d / "elt.log"}
    problem = apply(ctx)
    if problem:
        return "not run", problem
    if ctx.get("expect_refusal"):
        f = ctx["run"] / ctx["expect_refusal"]
        before = f.read_bytes()
        rc = run_until(wf, ctx["run"], profile, ctx["log"])
        text = ctx["log"].read_text()
        ok = rc not in (0, None) and "Traceback" not in text and f.read_bytes() == before
        return ("survived" if ok else "FAILED"), f"refused, exit {rc}" + ("" if ok else f"; see {ctx['log']}")
    rc = run_until(wf, ctx["run"], profile, ctx["log"])
    if rc != 0:
        return "FAILED", f"rerun exited {rc}; see {ctx['log']}"
    ends = Counter(e["task"] for e in events(ctx["run"]) if e["event"] == "end")
    twice = [t for t, n in ends.items() if n > 1]
    same = labeled_rows(ctx["run"]) == reference
    if same and not twice:
        return "survived", "same data set, no task finished twice"
    return "FAILED", ("data set differs" if not same else "") + (f" {len(twice)} task(s) finished twice" if twice else "")


def slurm_profile(root: Path) -> Path | None:
    sys.path.insert(0, str(ROOT / "tests" / "dispatch"))
    from conftest import slurm_state

    if slurm_state() is not None:
        return None
    from elt.config.cluster import PROFILE_DIR

    return PROFILE_DIR / "slurm-localhost.yaml"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-slurm", action="store_true")
    ap.add_argument("--clusters", default="local,slurm", help="comma-separated: local, slurm")
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    ap.add_argument("--keep", help="folder for the runs (default: a temporary one, removed)")
    args = ap.parse_args(argv)
    root = Path(args.keep or tempfile.mkdtemp(prefix="elt-faults-"))
    wanted = args.clusters.split(",")
    clusters = {"local": None} if "local" in wanted else {}
    if not args.no_slurm and "slurm" in wanted:
        prof = slurm_profile(root)
        if prof is not None:
            clusters["slurm"] = prof
        else:
            print("slurm: skipped (no local SLURM answers; start it with .ci/slurm/start.sh)")
    names = args.cases.split(",") if args.cases else list(CASES)
    rows = []
    for cname, profile in clusters.items():
        ref_dir = root / cname / "reference"
        ref_dir.mkdir(parents=True)
        (ref_dir / "wf.yaml").write_text(yaml.safe_dump(WORKFLOW))
        rc = run_until(ref_dir / "wf.yaml", ref_dir / "run", profile, ref_dir / "elt.log")
        if rc != 0:
            print(f"{cname}: the reference run failed (exit {rc}); see {ref_dir / 'elt.log'}")
            continue
        reference = labeled_rows(ref_dir / "run")
        for name in names:
            t0 = time.monotonic()
            verdict, detail = run_case(name, CASES[name], profile, root / cname, reference)
            rows.append((cname, name, verdict, detail, time.monotonic() - t0))
            print(f"{cname:6s} | {name:32s} | {verdict:9s} | {detail} ({rows[-1][-1]:.0f} s)", flush=True)
    print("\n| cluster | damage | outcome | detail |\n|---|---|---|---|")
    for cname, name, verdict, detail, _ in rows:
        print(f"| {cname} | {name} | {verdict} | {detail} |")
    ok = sum(r[2] == "survived" for r in rows)
    print(f"survived={ok}/{len(rows)}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if ok == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
