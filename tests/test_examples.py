"""The scripts in examples/ run as a user runs them: plain `python script.py`, in a real process."""

import subprocess
import sys
from pathlib import Path

from ase.io import read

ROOT = Path(__file__).resolve().parents[1]


def _script(name, *args, cwd):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / name), *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r.stdout


def test_examples_run_a_campaign_then_use_and_export_its_model(tmp_path):
    # run_campaign.py calls elt.run() at the top level of a script, without a __main__ guard
    out = _script("run_campaign.py", tmp_path / "run", cwd=tmp_path)
    assert "labeled frames" in out and (tmp_path / "run" / "model" / "member_0.pt").is_file()
    out = _script("md_with_potential.py", tmp_path / "run", cwd=tmp_path)
    drift = float(out.split("NVE drift ")[1].split()[0])
    assert abs(drift) < 5.0, out  # meV/atom/ps, float64 NVE with 1 fs steps
    out = _script("export_data.py", tmp_path / "run", tmp_path / "out", cwd=tmp_path)
    frames = read(tmp_path / "out" / "data.extxyz", ":")
    assert len(frames) == int(out.split()[0]) > 0 and "REF_forces" in frames[0].arrays
    assert list((tmp_path / "out" / "npy").iterdir())
