"""`elt export`: extxyz read back by ASE and by our importer, deepmd/npy read by dpdata (a client we
did not write) and by our importer; same frames and labels after the round trip."""

import json

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.emt import EMT
from ase.io import read

from elt.cli.main import main
from elt.config.workflow import InitialData
from elt.data.export import write_deepmd_npy
from elt.engine.dataset import load_run_frames
from elt.data.frames import attach_labels, frame_hash, labels_of, read_frames
from elt.data.io import read_deepmd_npy, read_initial_data, read_labeled_extxyz

dpdata = pytest.importorskip("dpdata")


def by_hash(frames):
    return {frame_hash(a): a for a in frames}


def assert_same_frames(got, want, stress=True):
    g, w = by_hash(got), by_hash(want)
    assert set(g) == set(w) and len(got) == len(want)
    for h, a in w.items():
        b = g[h]
        assert a.get_chemical_symbols() == b.get_chemical_symbols()
        assert np.allclose(a.cell.array, b.cell.array) and (a.pbc == b.pbc).all()
        ea, fa, sa = labels_of(a)
        eb, fb, sb = labels_of(b)
        assert eb == pytest.approx(ea, abs=1e-10)
        assert np.allclose(fb, fa, atol=1e-10)
        if stress:
            assert (sa is None) == (sb is None)
            if sa is not None:
                assert np.allclose(np.ravel(sb), np.ravel(sa), atol=1e-12)


def test_extxyz_export_read_by_ase_and_reimported(tiny_run, tmp_path):
    out = tmp_path / "data.extxyz"
    assert main(["export", str(tiny_run), "--format", "extxyz", "-o", str(out)]) == 0
    want = load_run_frames(tiny_run)
    ase_frames = read(out, index=":")
    assert len(ase_frames) == len(want) > 0
    for a, b in zip(ase_frames, want):
        assert np.allclose(a.get_forces(), labels_of(b)[1]) and a.get_potential_energy() == pytest.approx(labels_of(b)[0])
    assert_same_frames(read_labeled_extxyz(out), want)


def test_extxyz_export_with_other_keys_round_trips_through_initial_data(tiny_run, tmp_path):
    out = tmp_path / "mace.extxyz"
    assert main(["export", str(tiny_run), "-f", "extxyz", "-o", str(out), "--energy-key", "REF_energy",
                 "--forces-key", "REF_forces", "--stress-key", "REF_stress"]) == 0
    a = read(out, index="0")
    assert "REF_energy" in a.info and "REF_forces" in a.arrays and a.calc is None
    spec = InitialData(path=out, energy_key="REF_energy", forces_key="REF_forces", stress_key="REF_stress")
    assert_same_frames(read_initial_data(spec, tmp_path), load_run_frames(tiny_run))


def test_deepmd_npy_export_read_by_dpdata_and_reimported(tiny_run, tmp_path, capsys):
    out = tmp_path / "npy"
    capsys.readouterr()
    assert main(["export", str(tiny_run), "--format", "deepmd-npy", "-o", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    want = load_run_frames(tiny_run)
    assert summary["frames"] == len(want) and summary["written"] == [str(out / "Cu32")]
    s = dpdata.LabeledSystem(str(out / "Cu32"), fmt="deepmd/npy")
    assert s.get_nframes() == len(want) and s.get_atom_names() == ["Cu"]
    for i, a in enumerate(want):
        e, f, st = labels_of(a)
        assert s["energies"][i] == pytest.approx(e)
        assert np.allclose(s["forces"][i], f) and np.allclose(s["coords"][i], a.positions)
        # dpdata's own conversion of the ASE frame gives the same virial (sign and units)
        ref = dpdata.LabeledSystem(a, fmt="ase/structure")
        assert np.allclose(s["virials"][i], ref["virials"][0])
    ms = dpdata.MultiSystems.from_file(str(out), fmt="deepmd/npy")
    assert ms.get_nframes() == len(want)
    assert_same_frames(read_deepmd_npy(out), want)
    assert_same_frames(read_initial_data(InitialData(path=out / "Cu32"), tmp_path), want)


def test_export_up_to_an_iteration(tiny_run, tmp_path):
    out = tmp_path / "upto0.extxyz"
    assert main(["export", str(tiny_run), "-f", "extxyz", "-o", str(out), "--iteration", "0"]) == 0
    n = len(read_frames(tiny_run / "data" / "init.extxyz")) + len(read_frames(tiny_run / "data" / "iter_000.extxyz"))
    assert len(read(out, index=":")) == n
    assert main(["export", str(tiny_run), "-f", "extxyz", "-o", str(out), "--iteration", "7"]) == 2
    assert main(["export", str(tiny_run), "-f", "xyz", "-o", str(out)]) == 2


def _labeled(atoms: Atoms) -> Atoms:
    a = atoms.copy()
    a.calc = EMT()
    s = a.get_stress() if a.pbc.all() else None
    return attach_labels(a, a.get_potential_energy(), a.get_forces(), s)


def test_mixed_compositions_make_one_system_each(tmp_path):
    from ase.build import bulk

    rng = np.random.default_rng(0)
    cu = [bulk("Cu", "fcc", a=3.6, cubic=True) for _ in range(3)]
    au = [bulk("Au", "fcc", a=4.08, cubic=True).repeat((1, 1, 2)) for _ in range(2)]
    mol = [molecule("CH4") for _ in range(2)]  # no cell: nopbc system
    frames = []
    for a in cu + au + mol:
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        frames.append(_labeled(a))
    dirs = write_deepmd_npy(frames, tmp_path / "mixed")
    assert sorted(d.name for d in dirs) == ["Au8", "CH4", "Cu4"]
    assert (tmp_path / "mixed" / "CH4" / "nopbc").exists()
    assert all((d / "type_map.raw").read_text().split() == ["Au", "C", "Cu", "H"] for d in dirs)
    ms = dpdata.MultiSystems.from_file(str(tmp_path / "mixed"), fmt="deepmd/npy")
    assert ms.get_nframes() == 7 and len(ms.systems) == 3
    assert_same_frames(read_deepmd_npy(tmp_path / "mixed"), frames)


def test_dpdata_written_folder_is_initial_data(tmp_path):
    """deepmd/npy as another tool writes it (dpdata from ASE frames) imports with the same labels."""
    from ase.build import bulk

    rng = np.random.default_rng(1)
    frames = []
    for _ in range(4):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        frames.append(_labeled(a))
    ms = dpdata.MultiSystems()
    for a in frames:
        ms.append(dpdata.LabeledSystem(a, fmt="ase/structure"))
    ms.to_deepmd_npy(str(tmp_path / "dp"))
    got = read_initial_data(InitialData(path=tmp_path / "dp"), tmp_path)
    assert len(got) == 4
    for a in frames:
        b = by_hash(got)[frame_hash(a)]
        e, f, s = labels_of(a)
        eb, fb, sb = labels_of(b)
        # dpdata stores float32 by default
        assert eb == pytest.approx(e, abs=1e-4) and np.allclose(fb, f, atol=1e-5)
        assert np.allclose(np.ravel(sb), np.ravel(s), atol=1e-6)
