"""The PySCF labeler against PySCF itself: forces are finite differences of its energies, the SCF
fallback ladder, open shells, threads, and what ``check`` reports. Small molecules, small bases."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from pydantic import ValidationError

from elt.config.label import PySCFLabel
from elt.errors import CalculationError
from elt.labeling.base import ExecSettings
from elt.labeling.pyscf import PySCFLabeler


def water():
    a = molecule("H2O")
    a.positions[1] += [0.05, 0.03, -0.04]
    a.positions[2] += [-0.02, 0.0, 0.03]
    return a


def label(atoms, workdir, threads=1, **kw):
    return PySCFLabeler(PySCFLabel(kind="pyscf", **kw), ExecSettings(threads=threads)).compute(atoms, workdir)


def test_forces_are_finite_differences_of_energies(tmp_path):
    """PBE/6-31G water: F = -dE/dx, component by component (central differences, h = 1e-3 Å).
    Measured agreement 2e-4 eV/Å (the analytic gradient leaves out the DFT grid response)."""
    cfg = dict(basis="6-31g", conv_tol=1e-11)
    a = water()
    forces = label(a, tmp_path, **cfg).forces
    h = 1e-3
    for i, k in [(0, 2), (1, 0), (2, 1)]:
        plus, minus = a.copy(), a.copy()
        plus.positions[i, k] += h
        minus.positions[i, k] -= h
        fd = -(label(plus, tmp_path, **cfg).energy - label(minus, tmp_path, **cfg).energy) / (2 * h)
        assert fd == pytest.approx(forces[i, k], abs=1e-3), (i, k)
    assert np.abs(forces).max() > 0.5  # a distorted molecule: the comparison is not of zeros


def test_unconverged_scf_without_fallback_is_a_physics_failure(tmp_path):
    with pytest.raises(CalculationError) as ei:
        label(water(), tmp_path, basis="sto-3g", max_cycle=1, fallback=False)
    err = ei.value
    assert err.physics and err.reason == "scf_not_converged"
    assert "1 try" in err.message and "fallback" in err.hint
    assert (tmp_path / "pyscf.log").is_file()


def test_fallback_level_shift_recovers_and_is_recorded(tmp_path):
    ref = label(water(), tmp_path, basis="sto-3g")
    got = label(water(), tmp_path, basis="sto-3g", max_cycle=2)
    tries = got.info["scf_tries"]
    assert [t["try"] for t in tries] == ["first", "level_shift"]
    assert tries[0]["converged"] is False and tries[0]["cycles"] == 2
    assert tries[1]["converged"] is True and tries[1]["level_shift"] == 0.3
    assert got.info["n_tries"] == 2 and got.info["scf_cycles"] == 2 + tries[1]["cycles"]
    assert got.energy == pytest.approx(ref.energy, abs=1e-5)  # the level shift does not change the solution
    assert np.allclose(got.forces, ref.forces, atol=1e-4)
    assert ref.info["n_tries"] == 1


def test_fallback_newton_is_the_last_resort(tmp_path):
    ref = label(water(), tmp_path, basis="sto-3g")
    got = label(water(), tmp_path, basis="sto-3g", max_cycle=2, fallback_max_cycle=3)
    tries = got.info["scf_tries"]
    assert [t["try"] for t in tries] == ["first", "level_shift", "newton"]
    assert [t["converged"] for t in tries] == [False, False, True]
    assert got.energy == pytest.approx(ref.energy, abs=1e-5)
    assert np.allclose(got.forces, ref.forces, atol=1e-4)


def test_open_shell_hydrogen_atom(tmp_path):
    """UHF hydrogen atom in a large basis: -0.49981 Hartree = -13.6006 eV."""
    got = label(Atoms("H", positions=[[0.1, 0.2, 0.3]]), tmp_path, method="uhf", spin=1, basis="cc-pvtz")
    assert got.energy == pytest.approx(-0.499810 * 27.211386, abs=1e-3)
    assert got.forces.shape == (1, 3) and np.allclose(got.forces, 0.0, atol=1e-6)
    with pytest.raises(ValidationError, match="method: uks"):
        PySCFLabel(kind="pyscf", spin=1)  # restricted method with unpaired electrons


def test_charge_and_spin_must_fit_the_electrons(tmp_path):
    with pytest.raises(CalculationError) as ei:  # H2 with one unpaired electron: impossible
        label(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]), tmp_path, method="uks", spin=1)
    assert ei.value.physics and ei.value.reason == "input_rejected" and "spin" in ei.value.hint
    cation = label(Atoms("H2", positions=[[0, 0, 0], [0, 0, 1.06]]), tmp_path, method="uks", spin=1, charge=1,
                   basis="6-31g")
    assert -17.0 < cation.energy < -15.0  # H2+ near its equilibrium: about -0.6 Hartree


def test_threads_come_from_the_profile_and_are_restored(tmp_path):
    from pyscf import lib

    before = lib.num_threads()
    got = label(water(), tmp_path, threads=2, basis="sto-3g")
    assert got.info["threads"] == 2
    assert "Threads 2" in (tmp_path / "pyscf.log").read_text()
    assert lib.num_threads() == before


def test_check_reports_what_to_change():
    ok = PySCFLabeler(PySCFLabel(kind="pyscf"))
    assert ok.check(["H", "O", "Si"]) == []
    assert ok.check(["H", "O", "Si"], periodic=True) == []
    bad_xc = PySCFLabeler(PySCFLabel(kind="pyscf", xc="not-a-functional")).check(["H"])
    assert len(bad_xc) == 1 and "not-a-functional" in bad_xc[0] and "libxc" in bad_xc[0]
    assert PySCFLabeler(PySCFLabel(kind="pyscf", method="rhf", xc="not-a-functional")).check(["H"]) == []
    bad_basis = PySCFLabeler(PySCFLabel(kind="pyscf", basis="6-31g")).check(["H", "Au"])
    assert len(bad_basis) == 1 and "Au" in bad_basis[0] and "6-31g" in bad_basis[0]
    bad_pseudo = PySCFLabeler(PySCFLabel(kind="pyscf", pseudo="gth-nope")).check(["Si"], periodic=True)
    assert len(bad_pseudo) == 1 and "gth-nope" in bad_pseudo[0]
    disp = PySCFLabeler(PySCFLabel(kind="pyscf", dispersion="d3bj")).check(["H"])
    if importlib.util.find_spec("pyscf.dispersion") is None:
        assert len(disp) == 1 and "pip install pyscf-dispersion" in disp[0]
    else:
        assert disp == []


def test_partly_periodic_and_broken_frames_are_physics_failures(tmp_path):
    slab = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[5, 5, 5], pbc=[True, True, False])
    with pytest.raises(CalculationError) as ei:
        label(slab, tmp_path)
    assert ei.value.physics and ei.value.reason == "unsupported_pbc"
    fused = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.1]])
    with pytest.raises(CalculationError) as ei:
        label(fused, tmp_path)
    assert ei.value.physics and ei.value.reason == "bad_geometry" and "0.100 Å" in ei.value.message


def test_dispersion_adds_pyscf_dispersion_terms(tmp_path):
    """D3(BJ) through pyscf-dispersion: the labels change by exactly the D3 energy and gradient that
    the dispersion package computes on its own."""
    pytest.importorskip("pyscf.dispersion", reason="pip install pyscf-dispersion to test label.dispersion")
    from pyscf import gto
    from pyscf.dispersion import dftd3

    from elt.units import HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, HARTREE_TO_EV

    a = molecule("H2O")
    b = molecule("H2O")
    b.positions += [0.3, 0.1, 2.9]
    a += b
    plain = label(a, tmp_path, basis="sto-3g", grids_level=1)  # a coarse grid: the same in both runs
    d3 = label(a, tmp_path, basis="sto-3g", grids_level=1, dispersion="d3bj")
    mol = gto.M(atom=[(s, p) for s, p in zip(a.get_chemical_symbols(), a.positions)], unit="Angstrom",
                basis="sto-3g", verbose=0)
    ref = dftd3.DFTD3Dispersion(mol, xc="pbe", version="d3bj").get_dispersion(grad=True)
    assert ref["energy"] < 0
    assert d3.energy - plain.energy == pytest.approx(ref["energy"] * HARTREE_TO_EV, abs=1e-6)
    assert np.allclose(d3.forces - plain.forces, -np.asarray(ref["gradient"]) * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM,
                       atol=1e-5)
