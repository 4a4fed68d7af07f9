"""``label.kind: ase``: any ASE calculator by import path, with the engine's failure handling, the
frame's task folder, the profile's threads and stress only where it means something; a real
second calculator (ASE's Morse potential) labels a real loop iteration on Dask workers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk

from elt.cli.main import main
from elt.config.label import AseLabel
from elt.data.frames import labels_of, read_frames
from elt.engine.tasks import LabelJob, label_task
from elt.labeling.ase_calculator import AseLabeler, omp_threads
from elt.records import ExecSettings

MORSE = {"calculator": "ase.calculators.morse:MorsePotential",
         "parameters": {"epsilon": 0.3429, "r0": 2.866, "rho0": 3.894}}  # Cu (eV, Å), Girifalco-Weizer


def ase_label(**kw) -> AseLabel:
    return AseLabel(kind="ase", **{**MORSE, **kw})


def cu_cell():
    a = bulk("Cu", "fcc", a=3.61, cubic=True)
    a.rattle(0.05, seed=1)
    return a


def test_stress_only_for_periodic_frames_and_calculators_that_have_it(tmp_path):
    cell = cu_cell()
    assert AseLabeler(ase_label()).compute(cell, tmp_path).stress.shape == (6,)
    assert AseLabeler(ase_label(stress=False)).compute(cell, tmp_path).stress is None
    slab = cell.copy()
    slab.pbc = [True, True, False]
    assert AseLabeler(ase_label()).compute(slab, tmp_path).stress is None
    springs = AseLabel(kind="ase", calculator="ase.calculators.harmonic:SpringCalculator",
                       parameters={"ideal_positions": bulk("Cu", "fcc", a=3.61, cubic=True).positions.tolist(), "k": 2.0})
    lab = AseLabeler(springs).compute(cell, tmp_path)  # energy and forces, no stress
    assert lab.stress is None and lab.energy > 0 and np.allclose(lab.forces, -2.0 * (cell.positions - bulk(
        "Cu", "fcc", a=3.61, cubic=True).positions))


def test_an_exception_is_an_infrastructure_failure_retried_as_configured(tmp_path):
    # EMT (through label.kind: ase) has no parameters for Fe: it raises NotImplementedError
    iron = bulk("Fe")
    cfg = AseLabel(kind="ase", calculator="ase.calculators.emt:EMT", retries=2)
    res = label_task(tmp_path, LabelJob(iron, cfg, ExecSettings(), retries=cfg.retries))
    assert res["status"] == "failed" and not res["physics"] and res["attempts"] == 3
    assert res["reason"] == "NotImplementedError" and "No EMT-potential for Fe" in res["message"]
    assert res["cache"] is False  # a resume tries again


def test_non_finite_results_and_scf_errors_are_physics_failures(tmp_path):
    two = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 0]])
    res = label_task(tmp_path / "a", LabelJob(two, ase_label(), ExecSettings(), retries=2))
    assert (res["status"], res["physics"], res["reason"], res["attempts"]) == ("failed", True, "non_finite", 1)
    scf = AseLabel(kind="ase", calculator="lab_helpers:NonConvergingSCF.make")
    res = label_task(tmp_path / "b", LabelJob(cu_cell(), scf, ExecSettings(), retries=2))
    assert (res["status"], res["physics"], res["reason"], res["attempts"]) == ("failed", True, "scf_not_converged", 1)
    assert "SCF did not converge in 3 cycles" in res["message"]


def test_threads_of_the_profile_while_the_calculator_runs():
    before = os.environ.get("OMP_NUM_THREADS")
    with omp_threads(3):
        assert os.environ["OMP_NUM_THREADS"] == "3"
    assert os.environ.get("OMP_NUM_THREADS") == before


def test_check_builds_the_calculator_and_needs_forces():
    assert AseLabeler(ase_label()).check(["Cu"]) == []
    [p] = AseLabeler(AseLabel(kind="ase", calculator="ase.calculators.fd:FiniteDifferenceCalculator")).check(["Cu"])
    assert "building the calculator ase.calculators.fd:FiniteDifferenceCalculator(**label.parameters) failed" in p
    assert "check label.parameters" in p
    [p] = AseLabeler(AseLabel(kind="ase", calculator="ase.calculators.test:FreeElectrons")).check(["Cu"])
    assert "does not compute forces" in p


def test_validate_reports_an_import_error_without_traceback(tmp_path, capsys):
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump({"system": {"structures": [{"kind": "bulk", "element": "Cu"}]},
                                  "label": {"kind": "ase", "calculator": "ase.calculators.morse:Morse"}}))
    assert main(["validate", str(wf)]) == 2
    err = capsys.readouterr().err
    assert "module 'ase.calculators.morse' has no 'Morse'" in err and "Traceback" not in err


def test_a_loop_iteration_labels_with_morse_on_dask_workers_and_resumes(tmp_path):
    from ase.calculators.morse import MorsePotential

    data = {"name": "morse", "seed": 3,
            "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}],
                       "n_initial": 4},
            "train": {"ensemble_size": 2, "epochs": 12, "min_steps": 1, "batch_size": 2,
                      "model": {"rcut": 4.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}},
            "explore": {"stages": [{"temperatures": [600], "steps": 40, "record_every": 10, "walkers_per_structure": 2}]},
            "select": {"trust_lo": 0.02, "trust_hi": 2.0, "max_candidates": 3},
            "label": {"kind": "ase", **MORSE},
            "converge": {"max_iterations": 1},
            "cluster": {"kind": "local", "n_workers": 2}}
    wf = tmp_path / "wf.yaml"
    wf.write_text(yaml.safe_dump(data))
    assert main(["run", str(wf)]) == 0
    run = tmp_path / "morse"
    frames = [a for f in sorted((run / "data").glob("*.extxyz")) for a in read_frames(f)]
    assert len(frames) > 4  # the initial frames and the iteration's labels
    for a in frames:  # every label is Morse's, in eV and eV/Å
        e, f, s = labels_of(a)
        b = a.copy()
        b.calc = MorsePotential(**MORSE["parameters"])
        assert e == pytest.approx(b.get_potential_energy(), abs=1e-6)  # extxyz keeps ~10 digits
        assert np.allclose(f, b.get_forces(), atol=1e-6) and np.allclose(s, b.get_stress(), atol=1e-7)
    results = [json.loads(p.read_text()) for p in (run / "label").glob("*/result.json")]
    assert len(results) == len(frames) and {r["info"]["calculator"] for r in results} == {MORSE["calculator"]}
    ends = (run / "journal.log").read_text().count('"end"')
    assert main(["run", str(wf)]) == 0  # resume: the finished run does nothing again
    assert (run / "journal.log").read_text().count('"end"') == ends
