"""A DFT loop that succeeds: PySCF (RHF/STO-3G on H2) labels the initial frames and the candidates
of one iteration on real local Dask worker processes. The labels are recorded with their energies
in eV (checked against PySCF run here directly, converted with ASE's Hartree and Bohr), the data
file is written, and a rerun redoes nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.units import Bohr, Hartree

from elt.cli.main import main
from elt.data.frames import FRAME_ID, labels_of, read_frames
from elt.engine.state import open_readonly

pytest.importorskip("pyscf")

WORKFLOW = {
    "name": "h2-dft", "seed": 2,
    "system": {"structures": [{"kind": "molecule", "name": "H2"}], "n_initial": 4, "perturb_positions": 0.05},
    "train": {"ensemble_size": 2, "epochs": 12, "warm_epochs": 4, "min_steps": 1, "warm_min_steps": 1, "batch_size": 2,
              "model": {"rcut": 3.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}},
    "explore": {"stages": [{"temperatures": [300], "steps": 20, "record_every": 5, "max_iterations": 1}]},
    "select": {"trust_lo": 1e-6, "trust_hi": 50.0, "max_candidates": 2},  # every explored frame is a candidate
    "label": {"kind": "pyscf", "method": "rhf", "basis": "sto-3g"},
    "converge": {"max_iterations": 1},
    "cluster": {"kind": "local", "n_workers": 2},
}


def pyscf_here(atoms) -> tuple[float, np.ndarray]:
    """RHF/STO-3G energy (eV) and forces (eV/Å) of a frame, PySCF called directly."""
    from pyscf import gto, scf

    mol = gto.M(atom=[(s, p) for s, p in zip(atoms.get_chemical_symbols(), atoms.positions)], unit="Angstrom",
                basis="sto-3g", verbose=0)
    mf = scf.RHF(mol)
    e = mf.kernel()
    assert mf.converged
    return e * Hartree, -mf.nuc_grad_method().kernel() * Hartree / Bohr


def test_pyscf_labels_a_loop_on_dask_workers_in_ev_and_a_rerun_redoes_nothing(tmp_path, capsys):
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(WORKFLOW))
    run_dir = tmp_path / "h2-dft"
    assert main(["run", str(wf)]) == 0, capsys.readouterr().err[-3000:]

    with open_readonly(run_dir) as st:
        [rec] = st.iterations()
        initial = st.tasks("label", -1)
        labels = st.tasks("label", 0)
    assert len(initial) == 4 and all(t["status"] == "done" for t in initial)
    assert rec["labels_failed"] == 0 and rec["labels_ok"] == len(labels) >= 2
    # the iteration's data file holds exactly its labels, with the energies the label tasks recorded
    data = read_frames(Path(rec["data_file"]))
    assert Path(rec["data_file"]) == run_dir / "data" / "iter_000.extxyz"
    by_id = {a.info[FRAME_ID]: a for a in data}
    assert len(by_id) == len(data) == len(labels)
    recorded = {}
    for t in labels:
        [a] = read_frames(Path(t["result"]["file"]))
        recorded[a.info[FRAME_ID]] = t["result"]["energy"]
        assert labels_of(by_id[a.info[FRAME_ID]])[0] == pytest.approx(t["result"]["energy"], abs=1e-9)
    assert set(recorded) == set(by_id)
    # the same frame with PySCF directly: the loop's label is in eV and eV/Å
    a = data[0]
    e_ref, f_ref = pyscf_here(a)
    e, f, _ = labels_of(a)
    assert e == pytest.approx(e_ref, abs=1e-6) and recorded[a.info[FRAME_ID]] == pytest.approx(e_ref, abs=1e-6)
    assert np.allclose(f, f_ref, atol=1e-5) and np.abs(f_ref).max() > 0.05
    # labels ran on the Dask worker processes, not in the driver
    events = [json.loads(line) for line in (run_dir / "journal.log").read_text().splitlines()]
    label_pids = {e["pid"] for e in events if e["task"].startswith("label:")}
    assert label_pids and os.getpid() not in label_pids
    ends = [e["task"] for e in events if e["event"] == "end"]
    assert len(ends) == len(set(ends))

    # a rerun finds everything done: no task runs again, the data file is unchanged
    before = (run_dir / "journal.log").read_text()
    digest = rec["data_sha256"]
    assert main(["run", str(wf)]) == 0
    assert "resuming: " in capsys.readouterr().out
    assert (run_dir / "journal.log").read_text() == before
    with open_readonly(run_dir) as st:
        assert [r["data_sha256"] for r in st.iterations()] == [digest]
