from pathlib import Path

import pytest
from pydantic import ValidationError

from elt.config import load_profile, load_workflow, parse_workflow
from elt.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
MIN = {"system": {"structures": [{"kind": "bulk", "element": "Cu", "supercell": [2, 2, 2]}]}}


@pytest.mark.parametrize("path", sorted((ROOT / "workflows").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_workflow_validates(path):
    wf = load_workflow(path)
    assert wf.system.structures
    load_profile(wf.cluster, wf.base_dir)


def test_defaults_are_complete():
    wf = parse_workflow(MIN)
    assert wf.label.kind == "emt"
    assert wf.train.ensemble_size == 4
    assert wf.select.trust_lo < wf.select.trust_hi
    assert len(wf.explore.stages) == 1


def test_string_shorthand_is_a_file():
    wf = parse_workflow({"system": {"structures": ["start.xyz"]}})
    assert wf.system.structures[0].kind == "file"
    assert str(wf.system.structures[0].path) == "start.xyz"


def _problems(data):
    with pytest.raises(ConfigError) as ei:
        parse_workflow(data, "wf.yaml")
    return ei.value.problems


@pytest.mark.parametrize("patch,expect", [
    ({"selct": {}}, "selct: unknown key"),
    ({"select": {"trust_lo": 0.5, "trust_hi": 0.1}}, "trust_lo (0.5) must be below trust_hi (0.1)"),
    ({"select": {"trust_lo": -1}}, "select.trust_lo"),
    ({"train": {"ensemble_size": 1}}, "train.deepmd.ensemble_size"),  # the default kind validated it
    ({"label": {"kind": "vasp"}}, "label"),
    ({"label": {"kind": "pyscf", "basis": 3}}, "label.pyscf.basis"),
    ({"explore": {"stages": [{"ensemble": "npt"}]}}, "needs pressures"),
    ({"explore": {"stages": [{"steps": 10, "record_every": 20}]}}, "record_every (20) exceeds steps (10)"),
    ({"explore": {"stages": []}}, "explore.stages"),
    ({"converge": {"max_iterations": 0}}, "converge.max_iterations"),
    ({"train": {"model": {"rcut": 3.0, "rcut_smth": 4.0}}}, "rcut_smth (4.0) must be smaller than rcut (3.0)"),
])
def test_invalid_files_say_where_and_what(patch, expect):
    data = {**MIN, **patch}
    problems = _problems(data)
    assert any(expect in p for p in problems), problems


def test_missing_system_is_reported():
    assert any("system: required field is missing" in p for p in _problems({}))


def test_received_value_is_shown():
    problems = _problems({**MIN, "explore": {"stages": [{"timestep": "fast"}]}})
    assert any("explore.stages[0].timestep" in p and "'fast'" in p for p in problems)


def test_config_is_frozen():
    wf = parse_workflow(MIN)
    with pytest.raises(ValidationError, match="frozen"):
        wf.select.trust_lo = 0.1


def test_config_package_imports_no_heavy_modules():
    import subprocess
    import sys

    code = ("import sys, elt.config; bad=[m for m in ('torch','pyscf','dask','distributed') if m in sys.modules];"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_cluster_profile_inline_and_errors():
    p = load_profile({"kind": "local", "n_workers": 3})
    assert p.workers() == 3
    with pytest.raises(ConfigError):
        load_profile({"kind": "local", "n_wokers": 3})
    with pytest.raises(ConfigError):
        load_profile("no-such-profile")
