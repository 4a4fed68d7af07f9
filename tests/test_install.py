"""A non-editable install works from any directory: the wheel carries the cluster profiles and the
templates, and `elt` finds them there (not beside a source tree)."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_ships_the_profiles_and_finds_them_from_elsewhere(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path / "dist")], check=True, capture_output=True, timeout=600)
    [wheel] = (tmp_path / "dist").glob("elt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(p.name for p in (ROOT / "elt" / "cluster_profiles").glob("*.yaml"))
    assert shipped and all(f"elt/cluster_profiles/{n}" in names for n in shipped)
    assert "elt/py.typed" in names and "elt/templates/bulk-metal.yaml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = ("import sys, elt; from elt.cli.main import main; print(elt.__file__); "
            "sys.exit(main(sys.argv[1:]))")
    env = {**os.environ, "PYTHONPATH": str(site)}

    def elt(*args):
        return subprocess.run([sys.executable, "-c", code, *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300)

    r = elt("cluster", "script", "slurm")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith(str(site))  # the installed copy, not the source tree
    assert "#SBATCH" in r.stdout
    r = elt("init", "bulk-metal", "mine")
    assert r.returncode == 0, r.stderr
    assert (elsewhere / "mine" / "slurm.yaml").read_text() == (ROOT / "elt" / "cluster_profiles" / "slurm.yaml").read_text()
    r = elt("validate", "mine/workflow.yaml", "--cluster", "nowhere")
    assert r.returncode == 2 and "slurm" in r.stderr  # the hint names profiles the user has
