"""`workflows/quickstart.yaml`, the shipped file, run for real as the README's step 1 runs it
(`elt run workflows/quickstart.yaml`), and what the README promises of it: a finished run, the
final ensemble in RUN_DIR/model (the final training's members) that `elt.load_potential` loads,
and the final test line on fresh frames.

The default suite runs the file with one change, ``converge.max_iterations: 1`` (every other
section verbatim, loaded from the file); the full run (a few minutes on 2 idle cores) is slow."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import elt
from elt.cli.main import main
from elt.config import load_workflow
from elt.data.frames import labels_of, read_frames
from elt.engine.state import open_readonly

QUICKSTART = Path(__file__).resolve().parents[1] / "workflows" / "quickstart.yaml"


def _one_iteration(tmp_path: Path) -> Path:
    """The quickstart file with only converge.max_iterations lowered to 1."""
    data = yaml.safe_load(QUICKSTART.read_text())
    data["converge"]["max_iterations"] = 1
    out = tmp_path / "quickstart.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    full, small = load_workflow(QUICKSTART).model_dump(), load_workflow(out).model_dump()
    small["converge"]["max_iterations"] = full["converge"]["max_iterations"]
    assert small == full  # nothing else differs
    return out


def _check_the_readme_promises(run_dir: Path, out: str) -> dict:
    """A finished run, RUN_DIR/model = the final training, loadable, the final test line."""
    with open_readonly(run_dir) as st:
        n = len(st.iterations())
        final = json.loads(st.get_meta("final"))
        test = json.loads(st.get_meta("test"))
        trains = sorted((t for t in st.tasks("train", n) if t["status"] == "done"), key=lambda t: t["result"]["member"])
        test_labels = [t for t in st.tasks("label", n) if t["status"] == "done"]
    assert n >= 1 and final["status"] in ("converged", "max_iterations", "stage_budget")
    # RUN_DIR/model holds the final training's members (trained after the last iteration)
    model = run_dir / "model"
    members = sorted(model.glob("member_*.pt"))
    assert [m.name for m in members] == [f"member_{i}.pt" for i in range(4)]  # train.ensemble_size: 4
    assert [m.read_bytes() for m in members] == [Path(t["result"]["checkpoint"]).read_bytes() for t in trains]
    # elt.load_potential gives an ASE calculator that reproduces the recorded final test on its frames
    calc = elt.load_potential(model)
    frames = [read_frames(Path(t["result"]["file"]))[0] for t in test_labels]
    assert len(frames) == test["frames"] == 10  # evaluate.frames
    err, ref = [], []
    for a in frames:
        _, f_ref, _ = labels_of(a)
        b = a.copy()
        b.calc = calc
        err.append(b.get_forces() - f_ref)
        ref.append(f_ref)
    rmse = float(np.sqrt(np.mean(np.square(err))))
    assert rmse == pytest.approx(test["rmse_f"], rel=1e-6, abs=1e-9)
    assert rmse < 0.15 * float(np.sqrt(np.mean(np.square(ref))))  # far better than zero forces: it learned EMT Cu
    # the final test line of `elt run`
    text = " ".join(out.split())
    assert (f"final ensemble on 10 fresh MD frames at 1000 K (not in the data set): force RMSE {test['rmse_f']:.4f} eV/Å"
            in text), out[-2000:]
    assert f"largest atomic force error per frame: median {test['max_force_error_median']:.3f}" in text
    assert f"final ensemble: {model.resolve()} (load with elt.load_potential(PATH))" in text
    return {"iterations": n, "status": final["status"], "test": test}


def test_quickstart_with_one_iteration_runs_and_keeps_the_readme_promises(tmp_path, capsys):
    wf = _one_iteration(tmp_path)
    assert main(["run", str(wf)]) == 0, capsys.readouterr().err[-3000:]  # the run directory: NAME beside the file
    got = _check_the_readme_promises(tmp_path / "quickstart", capsys.readouterr().out)
    assert got["iterations"] == 1 and got["status"] == "max_iterations"


@pytest.mark.slow
def test_quickstart_as_shipped_converges_as_the_readme_says(tmp_path, capsys):
    run_dir = tmp_path / "quickstart"
    assert main(["run", str(QUICKSTART), "--workdir", str(run_dir)]) == 0, capsys.readouterr().err[-3000:]
    got = _check_the_readme_promises(run_dir, capsys.readouterr().out)
    # README's convergence table: converged after 4 iterations, force RMSE 0.047 eV/Å on the fresh frames
    assert got["status"] == "converged" and got["iterations"] <= 5
    assert got["test"]["rmse_f"] < 0.08
