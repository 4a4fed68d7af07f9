"""The out-of-tree example plugin (examples/plugin): installed with pip into a temporary folder (its
entry-point metadata included), a workflow naming its labeler, explorer and cluster kinds validates,
runs one iteration on real Dask workers and resumes, in a real `elt` process; a broken plugin is
named with its error (exit 2, no traceback); the plugins pass elt's conformance suite."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugin"
BROKEN_PYPROJECT = """[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "elt-broken-plugin"
version = "0.1.0"

[project.entry-points."elt.plugins"]
broken = "elt_broken_plugin"

[tool.setuptools]
packages = ["elt_broken_plugin"]
"""


def pip_install(src: Path, target: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                        "--quiet", "--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder with the example plugin installed (a copy is built: the source tree stays clean)."""
    d = tmp_path_factory.mktemp("plugin")
    shutil.copytree(EXAMPLE, d / "src", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    pip_install(d / "src", d / "site")
    assert (next((d / "site").glob("elt_example_plugin-*.dist-info")) / "entry_points.txt").is_file()
    return d / "site"


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory) -> Path:
    """A folder with a plugin package whose entry-point module fails to import."""
    d = tmp_path_factory.mktemp("broken")
    (d / "src" / "elt_broken_plugin").mkdir(parents=True)
    (d / "src" / "pyproject.toml").write_text(BROKEN_PYPROJECT)
    (d / "src" / "elt_broken_plugin" / "__init__.py").write_text("import a_dependency_that_is_not_installed\n")
    pip_install(d / "src", d / "site")
    return d / "site"


def elt(args, cwd: Path, *paths: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, paths), str(ROOT)])}
    return subprocess.run([sys.executable, "-c", "from elt.cli.main import entry; entry()", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def journal(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "journal.log").read_text().splitlines()]


def test_a_workflow_naming_the_plugins_kinds_validates_runs_and_resumes(site, tmp_path):
    from ase.calculators.morse import MorsePotential

    from elt.data.frames import labels_of, read_frames

    shutil.copy(EXAMPLE / "workflow.yaml", tmp_path / "wf.yaml")
    r = elt(["validate", "wf.yaml"], tmp_path, site)
    assert r.returncode == 0, r.stderr
    assert "label morse" in r.stdout and "cluster local-env" in r.stdout
    r = elt(["run", "wf.yaml"], tmp_path, site)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "(example plugin local-env; worker environment: MKL_NUM_THREADS, OMP_NUM_THREADS)" in r.stdout + r.stderr
    run = tmp_path / "plugin-demo"
    # the plugin's Morse labeler gave every label: it agrees with ASE's own Morse potential
    cfg = yaml.safe_load((EXAMPLE / "workflow.yaml").read_text())
    assert cfg["label"] == {"kind": "morse"}
    ase_morse = MorsePotential(epsilon=0.3429, r0=2.866, rho0=1.3588 * 2.866, rcut1=5.4 / 2.866, rcut2=7.7 / 2.866)
    frames = [a for f in sorted((run / "data").glob("*.extxyz")) for a in read_frames(f)]
    assert len(frames) >= 5
    for a in frames:
        e, f, s = labels_of(a)
        b = a.copy()
        b.calc = ase_morse
        assert e == pytest.approx(b.get_potential_energy(), abs=1e-6)
        assert np.allclose(f, b.get_forces(), atol=1e-6) and np.allclose(s, b.get_stress(), atol=1e-7)
    # the plugin's explorer made the walkers' deviations, in worker processes of the plugin's cluster
    tables = list((run / "iter_000" / "explore").glob("*/model_devi.out"))
    assert len(tables) == 2 and all(np.loadtxt(t, ndmin=2).shape == (5, 8) for t in tables)
    events = journal(run)
    ends = [e for e in events if e["event"] == "end"]
    assert {e["task"].split(":")[0] for e in ends} >= {"train", "explore", "label"}, {e["task"] for e in ends}
    assert len({e["pid"] for e in ends}) >= 2  # two worker processes
    # resume: nothing is computed again
    r = elt(["run", "wf.yaml"], tmp_path, site)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [e for e in journal(run) if e["event"] == "end"] == ends


def test_a_broken_plugin_is_named_with_its_error(site, broken_site, tmp_path):
    wf = yaml.safe_load((EXAMPLE / "workflow.yaml").read_text())
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump(wf))
    wf["label"] = {"kind": "dft-we-do-not-have"}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(wf))
    # a broken plugin does not break the others
    r = elt(["validate", "ok.yaml"], tmp_path, site, broken_site)
    assert r.returncode == 0, r.stderr
    for cmd in ("validate", "run"):
        r = elt([cmd, "bad.yaml"], tmp_path, site, broken_site)
        assert r.returncode == 2, r.stdout + r.stderr
        err = r.stderr
        assert "unknown labeler kind 'dft-we-do-not-have'" in err and "morse" in err, err
        assert "plugin 'broken' failed to import: elt_broken_plugin: ModuleNotFoundError: " \
               "No module named 'a_dependency_that_is_not_installed'" in err, err
        assert "fix or uninstall the broken plugin" in err and "Traceback" not in err, err


# ------------------------------------------------------------------ the plugins, in this process
@pytest.fixture(scope="module")
def plugin():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import elt_example_plugin.plugin  # noqa: F401  (registers the kinds)
    finally:
        sys.path.remove(str(EXAMPLE))


def _cu(n: int = 2):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from elt.data.frames import attach_labels

    out = []
    for i in range(n):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
        a.rattle(0.06, seed=i)
        a.calc = EMT()
        out.append(attach_labels(a, a.get_potential_energy(), a.get_forces(), a.get_stress()))
    return out


def test_the_example_plugins_pass_the_conformance_suite(plugin, tmp_path):
    from ase.cluster import Icosahedron

    from elt.testing import check_explorer, check_labeler, check_potential

    frames = _cu(4)
    check_labeler({"kind": "morse"}, [frames[0], Icosahedron("Cu", 2)], workdir=tmp_path / "lab", stress_components="all")
    pot = check_potential("deepmd", frames, {"model": {"rcut": 4.0, "embedding": [8, 16], "axis_neuron": 4,
                                                       "fitting": [16, 16]}, "epochs": 3, "warm_epochs": 2,
                                             "min_steps": 1, "warm_min_steps": 1, "batch_size": 2},
                          workdir=tmp_path / "pot").data["ensemble"]
    report = check_explorer({"kind": "metropolis", "step_size": 0.03}, pot, frames[:2], workdir=tmp_path / "mc")
    assert len(report.data["records"][0].steps) == 7


def test_the_example_cluster_sets_the_workers_environment(plugin, tmp_path):
    from elt.config import load_profile
    from elt.dispatch.base import open_cluster

    profile = load_profile({"kind": "local-env", "n_workers": 2, "env": {"ELT_EXAMPLE_PROBE": "42"}})
    with open_cluster(profile, tmp_path) as cluster:
        seen = cluster.client.run(os.getenv, "ELT_EXAMPLE_PROBE")  # by reference: read in the worker
    assert list(seen.values()) == ["42", "42"]
