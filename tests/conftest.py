import importlib.util
import os
import sys
from pathlib import Path

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


# a finished small EMT run shared by the reporting and data tests
def _tinyrun():
    name = "elt_tests_tinyrun"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "data" / "tinyrun.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A finished small run (bulk-metal template, EMT, two iterations), made once per session."""
    return _tinyrun().shared_run(tmp_path_factory)


@pytest.fixture(scope="session")
def tinyrun_module():
    return _tinyrun()
