"""The driver of a SLURM run dies or is interrupted: nothing runs twice, no job is left behind.

Real SLURM on localhost (.ci/slurm/start.sh), real PySCF labels (slow enough that the old jobs
take ~20 s each: the old job is still computing when the rerun starts), the driver as a separate
`elt run` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from elt.config.cluster import PROFILE_DIR
from elt.engine.state import open_readonly

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
pytest.importorskip("pyscf")

WORKFLOW = {
    "name": "benzene-slurm",
    "seed": 3,
    "system": {"structures": [{"kind": "molecule", "name": "C6H6"}], "n_initial": 3, "perturb_positions": 0.03},
    "train": {"ensemble_size": 2, "epochs": 4, "warm_epochs": 2, "min_steps": 1, "warm_min_steps": 1,
              "batch_size": 2, "model": {"rcut": 4.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}},
    "explore": {"stages": [{"temperatures": [300], "timestep": 0.5, "steps": 20, "record_every": 10,
                            "max_iterations": 1}]},
    "select": {"trust_lo": 0.001, "trust_hi": 100.0, "max_candidates": 1},
    "label": {"kind": "pyscf", "method": "rks", "xc": "pbe", "basis": "def2-svp"},
    "converge": {"max_iterations": 1},
}


def _profile(tmp_path: Path) -> Path:
    data = yaml.safe_load((PROFILE_DIR / "slurm-localhost.yaml").read_text())
    data["pools"]["dft"].update(max_jobs=1, memory="4GB")  # labels queue on one job: the kill lands mid-labeling
    p = tmp_path / "slurm.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def _driver(tmp_path: Path, run_dir: Path, profile: Path, log: Path) -> subprocess.Popen:
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(WORKFLOW))
    cmd = [sys.executable, "-c", "from elt.cli.main import entry; entry()", "run", str(wf), "--workdir", str(run_dir),
           "--cluster", str(profile)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)


def _events(run_dir: Path) -> list[dict]:
    p = run_dir / "journal.log"
    return [json.loads(x) for x in p.read_text().splitlines()] if p.exists() else []


def _wait_for(what, check, timeout: float = 300.0, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout  # a safety net only: the test waits on events
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the driver ended (exit {proc.returncode}) before {what}:\n"
                                 + (log.read_text()[-3000:] if log else ""))
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _our_jobs(names_from: Path) -> list[str]:
    """Job ids of this run still listed by squeue (its job logs name them: elt-POOL-ID.err)."""
    ids = {f.stem.split("-")[-1] for f in (names_from / "slurm-logs").glob("elt-*-*.err")}
    out = subprocess.run(["squeue", "--me", "-h", "-o", "%i"], capture_output=True, text=True, timeout=60)
    return sorted(ids & set(out.stdout.split()))


def _kill(p: subprocess.Popen, sig=signal.SIGKILL) -> None:
    if p.poll() is None:
        os.killpg(p.pid, sig)
        p.wait(timeout=120)


def test_a_rerun_after_the_driver_died_cancels_its_jobs_and_runs_nothing_twice(slurm, tmp_path):
    run_dir, profile = tmp_path / "run", _profile(tmp_path)
    first = _driver(tmp_path, run_dir, profile, tmp_path / "first.log")
    second = None
    try:
        # the driver dies while a label runs in its SLURM job (and more labels wait for that job)
        _wait_for("a label started in a SLURM job", lambda: any(
            e["event"] == "start" and e["task"].startswith("label:") and e["slurm_job_id"] for e in _events(run_dir)),
            proc=first, log=tmp_path / "first.log")
        _kill(first)
        old_jobs = {e["slurm_job_id"] for e in _events(run_dir) if e["slurm_job_id"]}
        old_alive = [j for j in old_jobs if j in _our_jobs(run_dir)]
        assert old_alive  # still computing its label: the case where a rerun could run it twice
        assert (run_dir / "slurm_jobs.txt").read_text().split()[0] in old_jobs  # the driver recorded them
        second = _driver(tmp_path, run_dir, profile, tmp_path / "second.log")
        # when the old jobs are gone (without the rerun's cancel they live on until their workers'
        # death_timeout, computing what they hold while the rerun's jobs start the same tasks)
        gone = _wait_for("the old jobs to leave the queue",
                         lambda: None if set(old_alive) & set(_our_jobs(run_dir)) else time.time(), timeout=600)
        assert second.wait(timeout=900) == 0, (tmp_path / "second.log").read_text()[-3000:]
    finally:
        for p in (first, second):
            if p is not None:
                _kill(p)
        leftover = _our_jobs(run_dir)
        if leftover:
            subprocess.run(["scancel", *leftover], timeout=60)
    assert not leftover, f"jobs left in the queue: {leftover}"
    events = _events(run_dir)
    ends = Counter(e["task"] for e in events if e["event"] == "end")
    assert max(ends.values()) == 1, [t for t, n in ends.items() if n > 1]  # no task finished twice
    new = [e for e in events if e["slurm_job_id"] and e["slurm_job_id"] not in old_jobs]
    assert new, "the rerun ran nothing"
    first_new = min(e["t"] for e in new)
    assert max(e["t"] for e in events if e["slurm_job_id"] in old_jobs) < first_new
    assert gone <= first_new  # the old jobs had left the queue before the rerun ran a task
    with open_readonly(run_dir) as st:
        assert len(st.iterations()) == 1
    assert f"cancelled {len(old_alive)} worker job(s)" in (tmp_path / "second.log").read_text()  # the user is told


def test_ctrl_c_of_a_slurm_driver_exits_130_and_leaves_no_job(slurm, tmp_path):
    run_dir, profile = tmp_path / "run", _profile(tmp_path)
    log = tmp_path / "driver.log"
    p = _driver(tmp_path, run_dir, profile, log)
    try:
        _wait_for("a task started in a SLURM job", lambda: any(
            e["event"] == "start" and e["slurm_job_id"] for e in _events(run_dir)), proc=p, log=log)
        os.killpg(p.pid, signal.SIGINT)
        rc = p.wait(timeout=300)
    finally:
        _kill(p)
    text = log.read_text()
    assert rc == 130, text[-3000:]
    assert "interrupted" in text and "to resume" in text
    assert "Traceback" not in text
    _wait_for("SLURM to drop the cancelled jobs", lambda: not _our_jobs(run_dir), timeout=120)
