"""SLURM profiles and the job scripts they render, checked as text. No SLURM needed."""

from __future__ import annotations

import os
import re

import pytest

from elt.cli.main import main
from elt.config.cluster import PROFILE_DIR, SlurmProfile, load_profile, parse_profile, walltime_seconds
from elt.dispatch.base import open_cluster
from elt.dispatch.slurm import SlurmDaskCluster, job_scripts, slurm_memory
from elt.errors import ConfigError, DispatchError

POOLS = {
    "gpu": {"kinds": ["train"], "partition": "gpu", "account": "proj", "qos": "high", "walltime": "04:00:00",
            "cores": 8, "memory": "32GB", "threads_per_task": 8, "extra_sbatch": ["#SBATCH --gres=gpu:1"],
            "prologue": ["module load cuda", "source /opt/venv/bin/activate"]},
    "cpu": {"kinds": ["explore", "label"], "partition": "cpu", "walltime": "1-00:00:00", "cores": 4,
            "memory": "8GB", "processes": 2, "max_jobs": 10},
}


def profile(**kw):
    return parse_profile({"kind": "slurm", "interface": "ib0", "pools": POOLS, **kw})


def directives(script: str) -> list[str]:
    return [line[len("#SBATCH "):] for line in script.splitlines() if line.startswith("#SBATCH ")]


def worker_command(script: str) -> str:
    (line,) = [ln for ln in script.splitlines() if "distributed.cli.dask_worker" in ln]
    return line


def option(cmd: str, name: str) -> str:
    m = re.search(rf"{name} (\S+)", cmd)
    assert m, f"{name} missing from {cmd}"
    return m.group(1)


def test_job_script_of_each_pool(tmp_path):
    scripts = job_scripts(profile(), run_dir=tmp_path)
    assert set(scripts) == {"gpu", "cpu"}
    gpu = scripts["gpu"]
    d = directives(gpu)
    for expected in ["-J elt-gpu", "-p gpu", "-A proj", "--qos=high", "-n 1", "--cpus-per-task=8", "--mem=32G",
                     "-t 04:00:00", "--gres=gpu:1", f"-o {tmp_path}/slurm-logs/elt-gpu-%j.out",
                     f"-e {tmp_path}/slurm-logs/elt-gpu-%j.err"]:
        assert expected in d, (expected, d)
    assert not (tmp_path / "slurm-logs").exists()  # rendering creates nothing
    lines = gpu.splitlines()
    # the prologue runs after the directives and before the worker
    i_module = lines.index("module load cuda")
    assert lines.index("source /opt/venv/bin/activate") == i_module + 1
    assert max(i for i, ln in enumerate(lines) if ln.startswith("#SBATCH")) < i_module
    assert i_module < lines.index(worker_command(gpu))
    assert "export OMP_NUM_THREADS=8" in lines
    cmd = worker_command(gpu)
    assert option(cmd, "--resources") == "pool-gpu=1"      # 8 cores / 8 threads per task
    assert option(cmd, "--interface") == "ib0"
    assert option(cmd, "--nthreads") == "8"
    # workers retire before the walltime, staggered, and the latest still before it
    life = int(option(cmd, "--lifetime").rstrip("s"))
    stagger = int(option(cmd, "--lifetime-stagger").rstrip("s"))
    assert 0 < stagger and life + stagger < 4 * 3600
    assert "--death-timeout 120" in cmd


def test_jobs_drop_the_terminal_quiet_dask_logging_that_elt_set(tmp_path, monkeypatch):
    """The CLI quiets Dask for its terminal (DASK_LOGGING__DISTRIBUTED=error); worker jobs inherit the
    driver's environment, and their log files need Dask's warnings (memory, lost scheduler)."""
    from elt.dispatch import QUIET_DASK

    for var in ("DASK_LOGGING__DISTRIBUTED", QUIET_DASK):  # as before the test afterwards
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("DASK_LOGGING__DISTRIBUTED", "error")  # the user's own setting is kept
    assert "unset DASK_LOGGING__DISTRIBUTED" not in job_scripts(profile(), run_dir=tmp_path)["cpu"]
    monkeypatch.delenv("DASK_LOGGING__DISTRIBUTED")
    assert main(["validate", str(PROFILE_DIR / "slurm-localhost.yaml")]) == 0  # any elt command quiets Dask
    assert os.environ["DASK_LOGGING__DISTRIBUTED"] == "error"
    for script in job_scripts(profile(), run_dir=tmp_path).values():
        lines = script.splitlines()
        unset = lines.index(f"unset DASK_LOGGING__DISTRIBUTED {QUIET_DASK}")
        assert unset < lines.index(worker_command(script))


def test_processes_split_cores_and_slots(tmp_path):
    cpu = job_scripts(profile(), run_dir=tmp_path)["cpu"]
    cmd = worker_command(cpu)
    assert "--nworkers 2" in cmd and option(cmd, "--nthreads") == "2"
    assert option(cmd, "--resources") == "pool-cpu=2"
    assert "-t 1-00:00:00" in directives(cpu)
    life = int(option(cmd, "--lifetime").rstrip("s"))
    assert life + int(option(cmd, "--lifetime-stagger").rstrip("s")) < 86400


def test_mpi_pool_asks_for_ranks_not_one_task():
    p = parse_profile({"kind": "slurm", "pools": {"dft": {"cores": 16, "ntasks": 16, "threads_per_task": 16,
                                                          "launcher": "srun --mpi=pmix"}}})
    script = job_scripts(p)["dft"]
    d = directives(script)
    assert "--ntasks=16" in d and "--cpus-per-task=1" in d
    assert "-n 1" not in d and "--cpus-per-task=16" not in d
    assert "export OMP_NUM_THREADS=1" in script.splitlines()     # one thread per MPI rank
    assert option(worker_command(script), "--resources") == "pool-dft=1"
    assert "-o slurm-logs/elt-dft-%j.out" in d                   # no run dir: relative to the submit dir


@pytest.mark.parametrize("request_,expected", [("per-job", "--mem=8G"), ("per-cpu", "--mem-per-cpu=2G"),
                                               ("none", None)])
def test_memory_request_styles(request_, expected):
    p = parse_profile({"kind": "slurm", "pools": {"a": {"cores": 4, "memory": "8GB", "memory_request": request_}}})
    script = job_scripts(p)["a"]
    mem = [d for d in directives(script) if d.startswith("--mem")]
    assert mem == ([expected] if expected else [])
    assert "--memory-limit 7.45GiB" in worker_command(script)   # Dask's limit either way


def test_lifetime_margin_is_respected():
    p = parse_profile({"kind": "slurm", "pools": {"a": {"walltime": "00:30:00", "lifetime_margin": 300}}})
    cmd = worker_command(job_scripts(p)["a"])
    assert option(cmd, "--lifetime") == "1500s" and option(cmd, "--lifetime-stagger") == "150s"


@pytest.mark.parametrize("text,expected", [("32GB", "32G"), ("32GiB", "32G"), ("500MB", "500M"),
                                           ("1.5GB", "1536M"), ("2g", "2G")])
def test_slurm_memory(text, expected):
    assert slurm_memory(text) == expected
    assert slurm_memory("8GB", divide=3) == "2731M"


def test_walltime_seconds():
    assert walltime_seconds("01:00:00") == 3600
    assert walltime_seconds("2-00:30:05") == 2 * 86400 + 1805
    with pytest.raises(ValueError):
        walltime_seconds("1h")


def test_submit_options_and_exec_settings_follow_the_pools(tmp_path):
    p = profile(pools={**POOLS, "cpu": {**POOLS["cpu"], "kinds": ["explore"]},
                       "dft": {"kinds": ["label"], "cores": 4, "threads_per_task": 4, "launcher": "mpirun -n 4"}})
    c = open_cluster(p, tmp_path)          # not started: nothing submitted
    assert isinstance(c, SlurmDaskCluster)
    assert c.submit_options("train") == {"resources": {"pool-gpu": 1}}
    assert c.submit_options("label") == {"resources": {"pool-dft": 1}}
    assert c.submit_options("explore") == {"resources": {"pool-cpu": 1}}
    assert c.submit_options("evaluate") == {"resources": {"pool-cpu": 1}}   # other kinds run with explore
    ex = c.exec_settings("label")
    assert (ex.threads, ex.launcher) == (4, "mpirun -n 4")
    assert "dft (label: 0-4 jobs × 4 cores" in c.describe()


@pytest.mark.parametrize("pools,problem", [
    ({"a": {"kinds": ["train"]}}, "no pool runs task kind(s) explore, label"),
    ({"a": {}, "b": {"kinds": ["label"]}}, "task kind 'label' is in pools 'a' and 'b'"),
    ({"a": {"walltime": "2h"}}, "walltime must look like HH:MM:SS"),
    ({"a": {"walltime": "00:01:30"}}, "walltime 00:01:30 leaves workers"),
    ({"a": {"min_jobs": 5, "max_jobs": 2}}, "min_jobs (5) exceeds max_jobs (2)"),
    ({"a": {"cores": 4, "processes": 3}}, "cores (4) must be a multiple of processes (3)"),
    ({"a": {"cores": 2, "threads_per_task": 4}}, "threads_per_task (4) exceeds"),
    ({"a": {"memory": "plenty"}}, "memory must be a size"),
    ({"a": {"kinds": []}}, "at least one task kind"),
    ({"my-pool": {}}, "pool name 'my-pool'"),
    ({"a": {"partiton": "debug"}}, "pools.a.partiton: unknown key"),
])
def test_profile_errors_name_the_field_and_the_fix(pools, problem):
    with pytest.raises(ConfigError) as e:
        parse_profile({"kind": "slurm", "pools": pools})
    assert problem in str(e.value)


def test_shipped_profiles_validate():
    names = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
    assert {"local", "slurm", "slurm-localhost"} <= set(names)
    for name in names:
        load_profile(PROFILE_DIR / f"{name}.yaml")
    real = load_profile("slurm")
    assert isinstance(real, SlurmProfile)
    assert {real.pool_for(k) for k in ("train", "explore", "label")} == {"gpu", "md", "dft"}
    local = load_profile("slurm-localhost")
    assert local.interface == "lo" and all(p.partition == "debug" for p in local.pools.values())


def test_cli_prints_job_scripts(capsys):
    assert main(["cluster", "script", "slurm-localhost"]) == 0
    out = capsys.readouterr().out
    assert "# ===== pool work (train, explore) =====" in out and "# ===== pool dft (label) =====" in out
    assert out.count("#!/usr/bin/env bash") == 2 and "--resources pool-dft=1" in out
    assert main(["cluster", "script", str(PROFILE_DIR / "slurm.yaml"), "--pool", "dft"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/usr/bin/env bash") and "#SBATCH -J elt-dft" in out and "elt-gpu" not in out
    assert main(["cluster", "script", "slurm", "--pool", "nope"]) == 2
    assert "has no pool 'nope'" in capsys.readouterr().err
    assert main(["cluster", "script", "local"]) == 2
    assert "submits no job scripts" in capsys.readouterr().err


def test_missing_sbatch_is_a_dispatch_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))     # a machine without SLURM commands
    with pytest.raises(DispatchError) as e:
        with open_cluster(load_profile("slurm-localhost"), tmp_path):
            pass
    assert "sbatch" in str(e.value) and "login node" in str(e.value)
