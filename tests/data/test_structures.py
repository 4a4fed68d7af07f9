"""Start structures from files (CIF, POSCAR, xyz/extxyz, ASE db) and by name; initial labeled
data; errors that name the file, the reader's complaint, and the frames with unlisted elements."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from elt.config.workflow import BulkStructure, InitialData, MoleculeStructure, SystemConfig
from elt.data.frames import attach_labels, labels_of
from elt.data.io import read_initial_data
from elt.data.structures import build_structure, perturbed_copies, read_structure_file, start_structures
from elt.errors import ConfigError, SetupError

CU_CIF = """data_Cu
_symmetry_space_group_name_H-M   'F m -3 m'
_symmetry_Int_Tables_number      225
_cell_length_a   3.6149
_cell_length_b   3.6149
_cell_length_c   3.6149
_cell_angle_alpha   90
_cell_angle_beta    90
_cell_angle_gamma   90
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
Cu1 Cu 0 0 0
"""

SI_POSCAR = """Si diamond
5.43
 1.0 0.0 0.0
 0.0 1.0 0.0
 0.0 0.0 1.0
Si
8
Direct
0.00 0.00 0.00
0.50 0.50 0.00
0.50 0.00 0.50
0.00 0.50 0.50
0.25 0.25 0.25
0.75 0.75 0.25
0.75 0.25 0.75
0.25 0.75 0.75
"""


def test_cif_with_symmetry_gives_the_conventional_cell(tmp_path):
    p = tmp_path / "Cu.cif"
    p.write_text(CU_CIF)
    [a] = read_structure_file(p)
    assert a.get_chemical_symbols() == ["Cu"] * 4  # the asymmetric unit expanded by Fm-3m
    assert np.allclose(a.cell.lengths(), 3.6149) and a.pbc.all()


def test_poscar(tmp_path):
    p = tmp_path / "POSCAR"
    p.write_text(SI_POSCAR)
    [a] = read_structure_file(p)
    assert len(a) == 8 and set(a.get_chemical_symbols()) == {"Si"}
    assert np.allclose(a.get_scaled_positions()[4], 0.25)


def test_ase_database_all_rows_or_one(tmp_path):
    from ase.db import connect

    p = tmp_path / "structures.db"
    with connect(p) as db:
        db.write(bulk("Cu", "fcc", a=3.6, cubic=True))
        db.write(bulk("Ni", "fcc", a=3.52, cubic=True).repeat((2, 1, 1)))
    frames = read_structure_file(p)
    assert [len(a) for a in frames] == [4, 8]
    [one] = read_structure_file(p, index="-1")
    assert one.get_chemical_formula() == "Ni8"


def test_xyz_and_extxyz_frames(tmp_path):
    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    write(tmp_path / "two.extxyz", [a, a.repeat((1, 1, 2))])
    assert [len(x) for x in read_structure_file(tmp_path / "two.extxyz")] == [4, 8]
    assert len(read_structure_file(tmp_path / "two.extxyz", index="0")) == 1
    write(tmp_path / "plain.xyz", a, format="xyz")
    assert read_structure_file(tmp_path / "plain.xyz")[0].get_chemical_symbols() == ["Cu"] * 4


def test_unreadable_file_names_the_file_and_the_complaint(tmp_path):
    p = tmp_path / "POSCAR"
    p.write_text("hello\nnot a scale\n1 0 0\n")
    with pytest.raises(SetupError) as e:
        read_structure_file(p)
    msg = str(e.value)
    assert f"cannot read structure file {p}: " in msg
    assert "scaling factor" in msg  # ASE's complaint, then pymatgen's
    p = tmp_path / "empty.cif"
    p.write_text("data_x\n_cell_length_a  banana\nloop_\n_atom_site_label\n")
    with pytest.raises(SetupError, match=f"{p} holds no frames"):
        read_structure_file(p)
    with pytest.raises(SetupError, match="not found"):
        read_structure_file(tmp_path / "missing.cif")


def test_bulk_by_name_with_supercell_and_molecule_by_name():
    [a] = build_structure(BulkStructure(element="Al", crystal="fcc", a=4.05, supercell=[2, 1, 3]), None)
    assert len(a) == 4 * 6 and np.allclose(a.cell.lengths(), [8.1, 4.05, 12.15])
    [m] = build_structure(MoleculeStructure(name="H2O", vacuum=5.0), None)
    assert m.get_chemical_formula() == "H2O" and not m.pbc.any() and np.all(m.cell.lengths() >= 10)
    with pytest.raises(ConfigError, match="unknown molecule"):
        build_structure(MoleculeStructure(name="unobtainium"), None)


def test_perturbed_copies_are_reproducible_and_small():
    a = bulk("Cu", "fcc", a=3.6, cubic=True)
    c1 = perturbed_copies([a], 5, 0.05, 0.02, seed=4)
    c2 = perturbed_copies([a], 5, 0.05, 0.02, seed=4)
    assert all(np.allclose(x.positions, y.positions) for x, y in zip(c1, c2))
    strain = np.array([np.abs(np.linalg.solve(a.cell.array, x.cell.array) - np.eye(3)).max() for x in c1])
    assert np.all(strain <= 0.02 + 1e-12) and np.all(strain > 0)


def _emt_frames(n, symbol="Cu", seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = bulk(symbol, "fcc", a=3.6, cubic=True)
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.calc = EMT()
        out.append(attach_labels(a, a.get_potential_energy(), a.get_forces(), a.get_stress()))
    return out


def test_initial_data_extxyz_with_configured_keys(tmp_path):
    frames = _emt_frames(3)
    plain = []
    for a in frames:
        e, f, s = labels_of(a)
        b = a.copy()
        b.calc = None
        b.info["dft_energy"] = e
        b.arrays["dft_forces"] = f
        plain.append(b)
    write(tmp_path / "mine.extxyz", plain)
    got = read_initial_data(InitialData(path="mine.extxyz", energy_key="dft_energy", forces_key="dft_forces"), tmp_path)
    assert len(got) == 3
    for a, b in zip(frames, got):
        assert labels_of(b)[0] == pytest.approx(labels_of(a)[0]) and np.allclose(labels_of(b)[1], labels_of(a)[1])
    with pytest.raises(SetupError, match="no energy"):
        read_initial_data(InitialData(path="mine.extxyz", energy_key="nope"), tmp_path)


def test_elements_not_listed_are_reported_with_their_frames(tmp_path):
    frames = _emt_frames(2) + _emt_frames(1, "Ni")
    write(tmp_path / "mixed.extxyz", frames)
    with pytest.raises(ConfigError) as e:
        read_initial_data(InitialData(path="mixed.extxyz"), tmp_path, elements=["Cu"])
    text = str(e.value)
    assert "Ni in 1 frame(s)" in text and f"{tmp_path / 'mixed.extxyz'} frame 2" in text and "frame 0" not in text
    system = SystemConfig(structures=[{"kind": "bulk", "element": "Cu"}, {"kind": "bulk", "element": "Ni"}],
                          elements=["Cu"])
    with pytest.raises(ConfigError) as e:
        start_structures(system, tmp_path)
    assert "system.structures[1] (bulk Ni)" in str(e.value)
    assert len(start_structures(system.model_copy(update={"elements": ["Cu", "Ni"]}), tmp_path)) == 2
