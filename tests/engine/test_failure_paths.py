"""The README's failure promises end to end, on real Dask worker processes: labels that really
fail (PySCF stopped after one SCF cycle), walkers that all fail, a real two-stage loop with its
exact stop reason, and the final test on fresh frames."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import molecule

from elt.cli.main import main
from elt.data.frames import FRAME_ID, attach_labels, frame_hash, write_frames
from elt.engine.state import open_readonly

pytest.importorskip("pyscf")

TINY_TRAIN = {"ensemble_size": 2, "epochs": 12, "warm_epochs": 4, "min_steps": 1, "warm_min_steps": 1, "batch_size": 2,
              "model": {"rcut": 3.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}}


def _h2_data(path: Path, n: int = 4) -> Path:
    """n perturbed H2 frames labeled by a converged PySCF calculation (the run's initial data)."""
    from elt.config.label import PySCFLabel
    from elt.labeling.pyscf import PySCFLabeler
    from elt.records import ExecSettings

    lab = PySCFLabeler(PySCFLabel(kind="pyscf", method="rhf", basis="sto-3g"), ExecSettings())
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n):
        a = molecule("H2")
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        lbl = lab.compute(a, path.parent)
        f = attach_labels(a, lbl.energy, lbl.forces, None)
        f.info[FRAME_ID] = frame_hash(a)
        frames.append(f)
    write_frames(path, frames)
    return path


def _wf(tmp_path: Path, **over) -> Path:
    data = {
        "name": "h2", "seed": 3,
        "system": {"structures": [{"kind": "molecule", "name": "H2"}], "n_initial": 0,
                   "initial_data": [{"path": str(_h2_data(tmp_path / "h2.extxyz"))}]},
        "train": TINY_TRAIN,
        "explore": {"stages": [{"temperatures": [300], "steps": 20, "record_every": 5, "max_iterations": 1}]},
        "select": {"trust_lo": 1e-6, "trust_hi": 50.0, "max_candidates": 2},
        "label": {"kind": "pyscf", "method": "rhf", "basis": "sto-3g", "max_cycle": 1, "fallback": False,
                  "retries": 2, "max_failed_fraction": 0.5},
        "converge": {"max_iterations": 1},
        "cluster": {"kind": "local", "n_workers": 2},
    }
    for k, v in over.items():
        data[k] = {**data[k], **v} if isinstance(v, dict) else v
    p = tmp_path / "wf.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_labels_that_fail_are_recorded_and_stop_the_campaign_with_exit_7(tmp_path, capsys):
    wf = _wf(tmp_path)
    assert main(["run", str(wf)]) == 7
    err = capsys.readouterr().err
    assert "max_failed_fraction" in err and "scf" in err.lower()
    with open_readonly(tmp_path / "h2") as st:
        labels = st.tasks("label", 0)
    assert labels and all(t["status"] == "failed" for t in labels)
    for t in labels:
        r = t["result"]
        assert r["physics"] is True and "scf" in r["reason"]  # classified as the method's failure
        assert r["attempts"] == 1  # physics failures are not retried (retries: 2 is for infrastructure)
        assert Path(r["workdir"]).is_dir()
    # nothing was appended to the data set; a rerun refuses again without labeling twice
    assert not (tmp_path / "h2" / "data" / "iter_000.extxyz").exists()
    before = len(labels)
    assert main(["run", str(wf)]) == 7
    with open_readonly(tmp_path / "h2") as st:
        assert len(st.tasks("label", 0)) == before


def test_every_walker_failing_exits_4(tmp_path, capsys):
    # npt needs a periodic cell: every walker of the molecule raises in its task
    wf = _wf(tmp_path, explore={"stages": [{"temperatures": [300], "pressures": [0.0], "ensemble": "npt",
                                            "steps": 20, "record_every": 5, "max_iterations": 1}]},
             label={"kind": "pyscf", "method": "rhf", "basis": "sto-3g"})
    assert main(["run", str(wf)]) == 4
    err = capsys.readouterr().err
    assert "every exploration walker of iteration 0 failed" in err and "periodic" in err
