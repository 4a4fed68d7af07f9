"""CP2K input writing and output reading, without running CP2K. The output is a real CP2K 2023.1
run (primitive Si, SZV-MOLOPT-SR-GTH, 200 Ry) kept in data/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from lab_helpers import h2_frame, si2_frame

from elt.config.label import CP2KLabel
from elt.errors import CalculationError
from elt.labeling import cp2k_input, cp2k_output
from elt.labeling.cp2k import CP2KLabeler
from elt.units import GPA_TO_EV_PER_ANGSTROM3, HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM, HARTREE_TO_EV

SI2_OUT = Path(__file__).parent / "data" / "cp2k_si2_energy_force.out"


def _labeler(**kw):
    return CP2KLabeler(CP2KLabel(kind="cp2k", **kw))


def _cell(root):
    cell = root.find("FORCE_EVAL/SUBSYS/CELL")
    return np.array([[float(x) for x in cell.keyword(k).split()] for k in "ABC"])


def _coords(root):
    rows = root.find("FORCE_EVAL/SUBSYS/COORD").items
    return [r.split()[0] for r in rows], np.array([[float(x) for x in r.split()[1:]] for r in rows])


# ------------------------------------------------------------------ input
def test_molecule_is_centred_in_a_cubic_isolated_box():
    atoms = h2_frame()
    root = cp2k_input.parse(_labeler(vacuum=4.0).input_text(atoms))
    assert root.find("GLOBAL").keyword("RUN_TYPE") == "ENERGY_FORCE"
    cell = _cell(root)
    assert np.allclose(cell, np.diag([9.0, 9.0, 9.0]))  # ceil(0.57 + 8) on every axis: wavelet needs a cube
    assert root.find("FORCE_EVAL/SUBSYS/CELL").keyword("PERIODIC") == "NONE"
    poisson = root.find("FORCE_EVAL/DFT/POISSON")
    assert poisson.keyword("PERIODIC") == "NONE" and poisson.keyword("PSOLVER") == "WAVELET"
    symbols, pos = _coords(root)
    assert symbols == ["H", "H"]
    assert np.allclose(pos - pos[0], atoms.positions - atoms.positions[0])  # only shifted
    assert np.allclose(0.5 * (pos.min(0) + pos.max(0)), 4.5)  # centred
    assert root.find("FORCE_EVAL").keyword("STRESS_TENSOR") is None
    assert root.find("FORCE_EVAL/PRINT/FORCES").params == "ON"
    kind = root.find("FORCE_EVAL/SUBSYS/KIND")
    assert kind.params == "H" and kind.keyword("BASIS_SET") == "DZVP-MOLOPT-SR-GTH"


def test_molecule_keeps_the_cell_it_carries():
    atoms = h2_frame()
    atoms.set_cell([10.0, 10.0, 10.0])  # e.g. system.structures molecule with vacuum; pbc stays False
    pl = cp2k_input.place(atoms, False, vacuum=6.0, cubic=True)
    assert pl.box == "frame" and np.allclose(pl.cell, np.diag([10.0] * 3))
    pl = cp2k_input.place(atoms, False, vacuum=6.0, cubic=False)
    assert pl.box == "frame"
    atoms.set_cell([10.0, 9.0, 10.0])  # not a cube: the wavelet solver cannot use it
    assert cp2k_input.place(atoms, False, vacuum=6.0, cubic=True).box == "built"
    atoms.set_cell([2.0, 2.0, 2.0])  # too small for the molecule
    assert cp2k_input.place(atoms, False, vacuum=6.0, cubic=False).box == "built"


def test_periodic_cell_gets_stress_and_its_own_cell():
    atoms = si2_frame()
    root = cp2k_input.parse(_labeler().input_text(atoms))
    assert np.allclose(_cell(root), atoms.cell.array, atol=1e-9)
    symbols, pos = _coords(root)
    assert np.allclose(pos, atoms.positions, atol=1e-9)
    assert root.find("FORCE_EVAL/SUBSYS/CELL").keyword("PERIODIC") == "XYZ"
    assert root.find("FORCE_EVAL").keyword("STRESS_TENSOR") == "ANALYTICAL"
    assert root.find("FORCE_EVAL/PRINT/STRESS_TENSOR").params == "ON"
    assert root.find("FORCE_EVAL/DFT/POISSON") is None
    mgrid = root.find("FORCE_EVAL/DFT/MGRID")
    assert mgrid.keyword("CUTOFF") == "400" and mgrid.keyword("REL_CUTOFF") == "50"


def test_open_shell_switches_on_uks():
    root = cp2k_input.parse(_labeler(multiplicity=3).input_text(h2_frame()))
    dft = root.find("FORCE_EVAL/DFT")
    assert dft.keyword("MULTIPLICITY") == "3" and dft.keyword("UKS") is not None


TEMPLATE = """\
# a trusted input for water   ! comments of both kinds
@SET CUT 300
&GLOBAL
  PROJECT my_water
  RUN_TYPE GEO_OPT   ! elt makes this ENERGY_FORCE
&END GLOBAL
&EXT_RESTART
  RESTART_FILE_NAME old-1.restart
&END EXT_RESTART
&FORCE_EVAL
  METHOD Quickstep
  STRESS_TENSOR NONE
  &DFT
    CHARGE 1
    BASIS_SET_FILE_NAME BASIS_MOLOPT
    POTENTIAL_FILE_NAME GTH_POTENTIALS
    &MGRID
      CUTOFF ${CUT}
    &END MGRID
    &XC
      &XC_FUNCTIONAL BLYP
      &END XC_FUNCTIONAL
    &END XC
  &END DFT
  &SUBSYS
    &CELL
      ABC 12.4138 12.4138 12.4138
    &END CELL
    &TOPOLOGY
      COORD_FILE_NAME water.xyz
      COORD_FILE_FORMAT XYZ
    &END TOPOLOGY
    &KIND O
      BASIS_SET ORB TZV2P-MOLOPT-GTH
      POTENTIAL GTH-BLYP-q6
    &END KIND
  &END SUBSYS
&END FORCE_EVAL
&MOTION
  &GEO_OPT
    MAX_ITER 200
  &END GEO_OPT
&END MOTION
"""


def test_template_is_edited_not_replaced(tmp_path):
    path = tmp_path / "water.inp"
    path.write_text(TEMPLATE)
    atoms = Atoms("OH2", positions=[[0, 0, 0.119], [0, 0.763, -0.477], [0, -0.763, -0.477]],
                  cell=[12.0, 12.0, 12.0], pbc=True)
    root = cp2k_input.parse(_labeler(template=path, basis="DZVP-MOLOPT-GTH", potential="GTH-BLYP").input_text(atoms))
    assert root.find("GLOBAL").keyword("RUN_TYPE") == "ENERGY_FORCE"
    assert root.find("GLOBAL").keyword("PROJECT") == "elt"
    assert root.find("EXT_RESTART") is None  # would overwrite the coordinates
    assert root.find("MOTION/GEO_OPT").keyword("MAX_ITER") == "200"  # the rest is the user's
    assert root.find("FORCE_EVAL/DFT/XC/XC_FUNCTIONAL").params == "BLYP"
    assert root.find("FORCE_EVAL/DFT/MGRID").keyword("CUTOFF") == "${CUT}"
    assert any(isinstance(i, str) and i.startswith("@SET CUT") for i in root.items)
    assert root.find("FORCE_EVAL/DFT").keyword("CHARGE") == "1"  # not given in the config: the template's
    topology = root.find("FORCE_EVAL/SUBSYS/TOPOLOGY")
    assert topology.keyword("COORD_FILE_NAME") is None and topology.keyword("COORD_FILE_FORMAT") is None
    cell = root.find("FORCE_EVAL/SUBSYS/CELL")
    assert cell.keyword("ABC") is None and np.allclose(_cell(root), np.diag([12.0] * 3))
    assert root.find("FORCE_EVAL").keyword("STRESS_TENSOR") == "NONE"  # the user's choice stands
    assert root.find("FORCE_EVAL/PRINT/STRESS_TENSOR") is None
    kinds = {k.params: k for k in root.find("FORCE_EVAL/SUBSYS").subsections("KIND")}
    assert kinds["O"].keyword("BASIS_SET") == "ORB TZV2P-MOLOPT-GTH"  # kept
    assert kinds["H"].keyword("BASIS_SET") == "DZVP-MOLOPT-GTH"  # added from the short form
    assert kinds["H"].keyword("POTENTIAL") == "GTH-BLYP"
    assert _coords(root)[0] == ["O", "H", "H"]
    # charge given explicitly in the config wins
    root = cp2k_input.parse(_labeler(template=path, charge=0).input_text(atoms))
    assert root.find("FORCE_EVAL/DFT").keyword("CHARGE") == "0"


def test_parse_round_trip_and_errors():
    root = cp2k_input.parse(TEMPLATE)
    again = cp2k_input.parse(root.text())
    assert again.text() == root.text()
    with pytest.raises(cp2k_input.InputError, match="not closed"):
        cp2k_input.parse("&GLOBAL\n  RUN_TYPE ENERGY\n")
    with pytest.raises(cp2k_input.InputError, match="closes &DFT"):
        cp2k_input.parse("&FORCE_EVAL\n&DFT\n&END SCF\n&END FORCE_EVAL\n")


def test_unusable_template_is_a_failure_that_says_why(tmp_path):
    bad = tmp_path / "bad.inp"
    bad.write_text("&GLOBAL\n&END GLOBAL\n")  # no FORCE_EVAL
    with pytest.raises(CalculationError) as ei:
        _labeler(template=bad).input_text(h2_frame())
    assert ei.value.reason == "template_invalid" and "FORCE_EVAL" in ei.value.message


# ------------------------------------------------------------------ output
def test_real_output_is_read_in_ev_and_angstrom():
    text = SI2_OUT.read_text()
    res = cp2k_output.parse(text, ["Si", "Si"])
    assert res.energy == pytest.approx(-7.077437626638859 * HARTREE_TO_EV, abs=1e-9)
    assert np.allclose(res.forces[0], np.array([-0.05633881, 0.03373000, -0.01750506]) * HARTREE_PER_BOHR_TO_EV_PER_ANGSTROM)
    # CP2K prints the pressure-positive tensor in GPa; ASE's stress is its negative, in eV/Å³
    assert res.stress[0] == pytest.approx(-64.9644408748 * GPA_TO_EV_PER_ANGSTROM3)
    assert res.stress[3] == pytest.approx(-11.2584241687 * GPA_TO_EV_PER_ANGSTROM3)  # yz
    assert res.stress[5] == pytest.approx(-4.44991524071 * GPA_TO_EV_PER_ANGSTROM3)  # xy
    assert res.scf_converged and res.scf_steps == [9]
    assert not cp2k_output.scf_failed(text)


@pytest.mark.parametrize("cut,match", [
    ("ATOMIC FORCES", "no 'ATOMIC FORCES'"),
    ("ENERGY| Total", "no 'ENERGY"),
])
def test_truncated_output_is_garbled(cut, match):
    text = SI2_OUT.read_text()
    with pytest.raises(cp2k_output.OutputError, match=match):
        cp2k_output.parse(text[: text.index(cut)], ["Si", "Si"])


def test_forces_block_must_match_the_frame():
    text = SI2_OUT.read_text()
    with pytest.raises(cp2k_output.OutputError, match="3"):
        cp2k_output.parse(text, ["Si", "Si", "Si"])
    with pytest.raises(cp2k_output.OutputError, match="is Si, the frame's is C"):
        cp2k_output.parse(text, ["Si", "C"])
    mangled = text.replace("-0.05633881", "-0.0563388l")
    with pytest.raises(cp2k_output.OutputError, match="not a number"):
        cp2k_output.parse(mangled, ["Si", "Si"])
