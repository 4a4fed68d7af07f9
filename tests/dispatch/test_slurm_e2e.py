"""The EMT workflow end to end on the local SLURM (slurm-localhost profile): every task runs in a
SLURM worker job of the pool that owns its kind, and says which job it ran under. The default
suite runs it with the driver as a SLURM job itself (examples/driver.sbatch as shipped); the
driver on the login node is the slow variant."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from elt.cli.main import main
from elt.config.cluster import PROFILE_DIR
from elt.engine.state import open_readonly

pytestmark = pytest.mark.slurm

WORKFLOW = {
    "name": "tiny-slurm",
    "seed": 5,
    "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}],
               "n_initial": 4},
    "train": {"ensemble_size": 2, "epochs": 10, "warm_epochs": 4, "min_steps": 1, "warm_min_steps": 1, "batch_size": 2,
              "model": {"rcut": 4.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}},
    "explore": {"stages": [{"temperatures": [300, 700], "steps": 40, "record_every": 10, "max_iterations": 1}]},
    "select": {"trust_lo": 0.03, "trust_hi": 0.6, "max_candidates": 3},
    "label": {"kind": "emt"},
    "converge": {"max_iterations": 1},
}


def _tasks_ran_in_the_jobs_of_their_pools(run_dir: Path) -> set[str]:
    """Every task of the journal ended in a SLURM worker job of the pool that owns its kind (labels
    in 'dft', the rest in 'work'); returns the worker jobs."""
    pool_of_job = {}  # which pool each SLURM job belonged to, from the job log names (elt-POOL-JOBID.err)
    for f in (run_dir / "slurm-logs").glob("elt-*-*.err"):
        _, pool, job = f.stem.split("-")
        pool_of_job[job] = pool
    assert set(pool_of_job.values()) == {"work", "dft"}
    jobs_by_kind = defaultdict(set)
    ends = 0
    for line in (run_dir / "journal.log").read_text().splitlines():
        ev = json.loads(line)
        if ev["event"] != "end":
            continue
        ends += 1
        kind = ev["task"].split(":")[0]
        job = ev["slurm_job_id"]
        assert job, f"task {ev['task']} ran outside SLURM"
        expected = "dft" if kind == "label" else "work"
        assert pool_of_job.get(job) == expected, (ev["task"], job, pool_of_job)
        jobs_by_kind[kind].add(job)
    assert {"train", "explore", "label"} <= set(jobs_by_kind), jobs_by_kind
    assert ends >= 2 + 2 + 4          # training of 2 members, 2 walkers, the initial labels at least
    return set().union(*jobs_by_kind.values())


@pytest.mark.slow
def test_emt_workflow_runs_on_slurm_pools(slurm, tmp_path, capsys):
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(WORKFLOW))
    run_dir = tmp_path / "run"
    profile = PROFILE_DIR / "slurm-localhost.yaml"
    rc = main(["run", str(wf), "--workdir", str(run_dir), "--cluster", str(profile)])
    assert rc == 0, capsys.readouterr().err[-3000:]

    with open_readonly(run_dir) as st:
        assert len(st.iterations()) == 1
        assert json.loads(st.get_meta("final"))["members"]
    _tasks_ran_in_the_jobs_of_their_pools(run_dir)


def test_driver_recipe_runs_the_workflow_inside_a_slurm_job(slurm, tmp_path):
    """examples/driver.sbatch as shipped: the driver is a SLURM job and submits its worker jobs; every
    task runs in a worker job of its pool (the default-suite run of the workflow on SLURM)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump({**WORKFLOW, "name": "driven"}))
    log = tmp_path / "driver.out"
    # command-line options override the recipe's #SBATCH lines (partition, size, time, log)
    name = f"elt-test-driver-{tmp_path.name}"
    try:
        out = subprocess.run(["sbatch", "--wait", "--parsable", "-J", name, "-p", "debug", "--cpus-per-task=1",
                              "--mem=2G", "-t", "00:10:00", "-o", str(log), str(root / "examples" / "driver.sbatch"),
                              str(wf), str(PROFILE_DIR / "slurm-localhost.yaml")],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path)
    finally:  # a failed or timed-out wait must not leave the driver job (and its workers) behind
        subprocess.run(["scancel", "--name", name], capture_output=True)
    text = log.read_text() if log.exists() else ""
    assert out.returncode == 0, (out.stderr, text[-3000:])
    driver_job = out.stdout.strip().split(";")[0]
    assert f"elt driver: job {driver_job}" in text
    run_dir = tmp_path / "driven"
    with open_readonly(run_dir) as st:
        assert len(st.iterations()) == 1
        assert json.loads(st.get_meta("final"))["members"]
    jobs = _tasks_ran_in_the_jobs_of_their_pools(run_dir)
    assert driver_job not in jobs   # every task ran in a worker job, none in the driver's
