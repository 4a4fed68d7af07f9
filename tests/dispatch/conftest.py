"""Fixtures of the SLURM tests: a running local SLURM (.ci/slurm/start.sh) or a clear skip."""

from __future__ import annotations

import shutil
import subprocess

import pytest

START = ".ci/slurm/start.sh"


def slurm_state() -> str | None:
    """None when a usable SLURM answers; else why not (the skip reason)."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return f"SLURM commands (sinfo, sbatch) not installed; run {START} (it installs slurm-wlm and munge)"
    try:
        out = subprocess.run(["sinfo", "-h", "-p", "debug", "-o", "%T"], capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        return f"sinfo did not answer within 15 s: SLURM is not running; start it with {START}"
    states = out.stdout.split()
    if out.returncode != 0 or not states:
        return f"SLURM is not running here (sinfo: {out.stderr.strip() or 'no debug partition'}); start it with {START}"
    if not any(s.rstrip("*") in {"idle", "mixed", "allocated", "completing"} for s in states):
        return f"the SLURM node is {states[0]}, not usable; restart it with .ci/slurm/stop.sh && {START}"
    return None


@pytest.fixture(scope="session")
def slurm():
    """Skip (with the reason) unless the local SLURM of .ci/slurm/start.sh runs."""
    reason = slurm_state()
    if reason:
        pytest.skip(reason)
