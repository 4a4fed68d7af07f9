import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Slow tests (real DFT beyond one calculation, SLURM soak, long loops) run with -m slow or ELT_FULL=1."""
    if os.environ.get("ELT_FULL") == "1" or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow or ELT_FULL=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
