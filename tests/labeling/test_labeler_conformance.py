"""Every built-in labeler passes the conformance suite (:func:`elt.testing.check_labeler`): the
registry and config model, pickling, the Labels contract, Newton's third law, forces = -dE/dR by
finite differences (and stress = (1/V) dE/dε on periodic frames for the cheap ones), the engine's
label task, and a frame that must fail recorded as a failure. DFT labelers on stretched H2: its
energy is about -31.5 eV and the restoring force of a 0.075 Å stretch a few eV/Å (Hartree,
Hartree/Bohr or Bohr slips move these by factors of 2 to 50)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from lab_helpers import CP2K_BINARY, NO_CP2K, bond_unit, h2_frame

from elt import registry
from elt.testing import check_labeler

needs_cp2k = [pytest.mark.cp2k, pytest.mark.skipif(CP2K_BINARY is None, reason=NO_CP2K)]
DFT_H2 = (-32.5, -30.5)  # eV


def sheared_cu():
    """8 rattled Cu atoms in a slightly sheared, non-cubic cell: every stress component non-zero."""
    a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
    a.rattle(0.05, seed=2)
    a.set_cell(a.cell.array @ [[1.0, 0.02, 0.0], [0.0, 1.0, 0.01], [0.0, 0.0, 0.99]], scale_atoms=True)
    return a


MORSE_CU = {"kind": "ase", "calculator": "ase.calculators.morse:MorsePotential",
            "parameters": {"epsilon": 0.3429, "r0": 2.866, "rho0": 3.894}}  # Girifalco-Weizer Cu (eV, Å)
LJ = {"kind": "ase", "calculator": "ase.calculators.lj:LennardJones",
      "parameters": {"sigma": 2.3, "epsilon": 0.4, "rc": 6.0, "smooth": True}}

# config, frames, keyword arguments of check_labeler
CASES = [
    pytest.param("emt", lambda: [h2_frame(), sheared_cu()], {"stress_components": "all"}, id="emt"),
    pytest.param(MORSE_CU, lambda: [sheared_cu()], {"stress_components": "all"}, id="ase-morse"),
    pytest.param(LJ, lambda: [h2_frame(), sheared_cu()], {}, id="ase-lj"),
    pytest.param({"kind": "pyscf", "basis": "def2-svp"}, lambda: [h2_frame()], {"energy_range": DFT_H2}, id="pyscf"),
    # cheapest sound CP2K: 250 Ry (150 Ry gives ~1 eV/Å grid errors on H), a 6 Å wavelet box
    pytest.param({"kind": "cp2k", "cutoff": 250, "rel_cutoff": 40, "vacuum": 2.5}, lambda: [h2_frame()],
                 {"energy_range": DFT_H2}, id="cp2k", marks=needs_cp2k),
]


@pytest.mark.parametrize("config,frames,kw", CASES)
def test_builtin_labeler_passes_the_conformance_suite(config, frames, kw, tmp_path):
    report = check_labeler(config, frames(), workdir=tmp_path, **kw)
    assert "forces = -dE/dR" in report.passed and "failure recorded" in report.passed
    if any(a.pbc.all() for a in frames()):
        assert "stress = (1/V) dE/dε" in report.passed
    if "energy_range" in kw:  # DFT on stretched H2: a restoring, central bond force of a few eV/Å
        f = report.data["labels"][0].forces
        u = bond_unit(h2_frame())
        assert 1.0 < f[0] @ u < 8.0, f"restoring force {f[0] @ u} eV/Å: unit slip?"
        assert np.linalg.norm(f[0] - (f[0] @ u) * u) < 0.05


def test_registry_knows_the_builtins():
    from elt.labeling.ase_calculator import AseLabeler
    from elt.labeling.cp2k import CP2KLabeler
    from elt.labeling.emt import EMTLabeler
    from elt.labeling.pyscf import PySCFLabeler

    assert registry.get("labeler", "emt") is EMTLabeler and issubclass(EMTLabeler, AseLabeler)
    assert registry.get("labeler", "ase") is AseLabeler
    assert registry.get("labeler", "pyscf") is PySCFLabeler
    assert registry.get("labeler", "cp2k") is CP2KLabeler
