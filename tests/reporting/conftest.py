import importlib.util
import sys
from pathlib import Path

import pytest


def _tinyrun():
    name = "elt_tests_tinyrun"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "data" / "tinyrun.py")
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
