"""Physics of the model: gradients, virial, invariances, extensivity, smoothness, ensemble stacking."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from cu_frames import fd_force, fd_stress

from elt.potentials.deepmd import load_ensemble


@pytest.fixture(scope="module")
def ens64(small_ensemble):
    return load_ensemble(small_ensemble[0], precision="float64")


def _energies(ens, atoms):
    return ens.predict(atoms).energies


def _cluster():
    rng = np.random.default_rng(3)
    pos = (bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 1)).positions[:10]
    return Atoms("Cu10", positions=pos + rng.normal(0, 0.1, pos.shape), pbc=False)


def _assert_fd_forces(ens, atoms, forces, indices, h=1e-5):
    """Each member's forces (k, N, 3) on the atoms ``indices`` equal central differences of its energy."""
    for i in indices:
        for c in range(3):
            fd = fd_force(lambda x: _energies(ens, x), atoms, i, c, h)
            np.testing.assert_allclose(forces[:, i, c], fd, rtol=1e-5, atol=1e-7)


def _periodic():
    a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    a.positions += np.random.default_rng(4).normal(0, 0.1, a.positions.shape)
    a.set_cell(a.cell.array @ (np.eye(3) + [[0.02, 0.01, 0], [0, -0.01, 0.005], [0, 0, 0.01]]),
               scale_atoms=True)
    return a


@pytest.mark.parametrize("make", [_cluster, _periodic], ids=["cluster", "periodic"])
def test_forces_are_minus_energy_gradient(ens64, make):
    atoms = make()
    pred = ens64.predict(atoms)
    _assert_fd_forces(ens64, atoms, pred.forces, np.random.default_rng(0).choice(len(atoms), 3, replace=False))
    assert np.abs(pred.forces).max() > 1e-3  # a non-trivial check


def test_stress_is_strain_derivative(ens64):
    atoms = _periodic()
    pred = ens64.predict(atoms, stress=True)
    for a, b in [(0, 0), (1, 2), (0, 1), (2, 2)]:
        fd = fd_stress(lambda x: _energies(ens64, x), atoms, a, b)  # dE/d(eps_ab) / V, symmetric strain
        np.testing.assert_allclose(pred.stress[:, a, b], fd, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(pred.stress, pred.stress.transpose(0, 2, 1), atol=1e-10)


def test_invariance_rotation_translation_permutation(ens64):
    for atoms in (_cluster(), _periodic()):
        ref = ens64.predict(atoms, stress=True)
        rot = atoms.copy()
        rot.rotate(37, (1, 2, 3), rotate_cell=True)
        rot.translate((0.3, -1.2, 2.0))
        r = np.array(rot.cell.array @ np.linalg.inv(atoms.cell.array)) if atoms.pbc.all() else None
        p = ens64.predict(rot, stress=True)
        np.testing.assert_allclose(p.energies, ref.energies, rtol=1e-10, atol=1e-9)
        rmat = _rotation(atoms, rot)
        np.testing.assert_allclose(p.forces, ref.forces @ rmat.T, atol=1e-9)
        if r is not None:
            np.testing.assert_allclose(p.stress, rmat @ ref.stress @ rmat.T, atol=1e-9)
        perm = np.random.default_rng(1).permutation(len(atoms))
        q = ens64.predict(atoms[perm])
        np.testing.assert_allclose(q.energies, ref.energies, rtol=1e-10, atol=1e-9)
        np.testing.assert_allclose(q.forces, ref.forces[:, perm], atol=1e-9)


def _rotation(a, b):
    """The rotation taking a's (centered) positions to b's."""
    x = a.positions - a.positions.mean(0)
    y = b.positions - b.positions.mean(0)
    u, _, vt = np.linalg.svd(y.T @ x)
    return u @ vt


def test_supercell_energy_is_extensive(ens64):
    atoms = _periodic()
    big = atoms * (2, 2, 2)
    e1 = ens64.predict(atoms, stress=True)
    e8 = ens64.predict(big, stress=True)
    np.testing.assert_allclose(e8.energies, 8 * e1.energies, rtol=1e-10)
    np.testing.assert_allclose(e8.stress, e1.stress, atol=1e-10)
    np.testing.assert_allclose(e8.forces[:, : len(atoms)], e1.forces, atol=1e-9)


def test_smooth_when_atom_crosses_cutoff(ens64):
    """Atom C pulled away from A through rcut (A keeps a bonded neighbour B): energy and force go to
    their far values as (rcut-r)^3 and (rcut-r)^2 (the C2 switch), and are exactly constant beyond."""
    rcut = ens64.rcut

    def at(x):
        p = ens64.predict(Atoms("Cu3", positions=[(0, 0, 0), (2.4, 0.2, 0), (-x, 0, 0)], pbc=False))
        return p.energies, p.forces[:, 2, 0]

    e_far, f_far = at(rcut + 0.5)
    assert np.all(f_far == 0)  # C is beyond the cutoff of A and of B
    for x in (rcut, rcut + 1e-9, rcut + 0.1):
        e, f = at(x)
        np.testing.assert_allclose(e, e_far, rtol=0, atol=1e-12)
        np.testing.assert_allclose(f, 0, atol=1e-12)
    assert np.abs(at(rcut - 1.0)[0] - e_far).min() > 1e-6  # it does interact inside
    (e1, f1), (e2, f2) = at(rcut - 0.01), at(rcut - 0.02)
    ratio_e = (e1 - e_far) / (e2 - e_far)
    ratio_f = f1 / f2
    np.testing.assert_allclose(ratio_e, 1 / 8, rtol=0.15)
    np.testing.assert_allclose(ratio_f, 1 / 4, rtol=0.15)


@pytest.mark.parametrize("precision,tol", [("float64", 1e-10), ("float32", 2e-5)])
def test_stacked_ensemble_equals_members_one_by_one(small_ensemble, precision, tol):
    paths, frames = small_ensemble
    both = load_ensemble(paths, precision=precision)
    atoms = frames[2]
    p = both.predict(atoms, stress=True)
    for m, path in enumerate(paths):
        single = load_ensemble([path], precision=precision).predict(atoms, stress=True)
        np.testing.assert_allclose(p.energies[m], single.energies[0], rtol=tol, atol=tol)
        np.testing.assert_allclose(p.forces[m], single.forces[0], rtol=tol, atol=tol)
        np.testing.assert_allclose(p.stress[m], single.stress[0], rtol=tol, atol=tol)
    assert abs(p.energies[0] - p.energies[1]) > 1e-4  # members differ
    assert np.abs(p.forces[0] - p.forces[1]).max() > 1e-3


def test_compressed_tables_match_networks(small_ensemble):
    paths, frames = small_ensemble
    exact = load_ensemble(paths, precision="float64", compress=False)
    table = load_ensemble(paths, precision="float64", compress=True)
    for atoms in (frames[0], _cluster()):
        a, b = exact.predict(atoms, stress=True), table.predict(atoms, stress=True)
        np.testing.assert_allclose(b.energies, a.energies, rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(b.forces, a.forces, rtol=1e-6, atol=1e-6)
    close = Atoms("Cu2", positions=[(0, 0, 0), (0.3, 0, 0)])  # r < 0.5 Å: linear continuation, finite
    assert np.isfinite(table.predict(close).forces).all()


def test_predict_many_matches_predict(small_ensemble):
    paths, frames = small_ensemble
    ens = load_ensemble(paths)
    mixed = [frames[0], _cluster(), frames[1]]
    many = ens.predict_many(mixed, stress=True)
    for atoms, p in zip(mixed, many):
        one = ens.predict(atoms, stress=True)
        np.testing.assert_allclose(p.energies, one.energies, rtol=1e-6)
        np.testing.assert_allclose(p.forces, one.forces, atol=1e-5)
        assert (p.stress is None) == (one.stress is None)


def test_force_assembly_paths_agree(ens64):
    """Forces from the reverse-pair gather equal the scatter-add fallback (used when pairs can't be matched)."""
    import dataclasses

    import torch

    from elt.potentials.deepmd.graph import build_graph

    for atoms in (_periodic(), _cluster()):
        g = build_graph([atoms], ens64.typemap, ens64.rcut)
        assert g.reverse is not None
        vec = torch.as_tensor(g.vec)
        a = ens64.model(g, vec)["forces"]
        b = ens64.model(dataclasses.replace(g, reverse=None), vec)["forces"]
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_slab_without_vacuum_vector_equals_slab_with_vacuum(ens64):
    from ase.build import fcc111

    slab = fcc111("Cu", size=(2, 2, 3), a=3.61, vacuum=None, periodic=False)
    slab.pbc = (True, True, False)
    assert np.linalg.norm(slab.cell[2]) == 0  # no third cell vector at all
    with_vac = slab.copy()
    with_vac.cell[2] = (0, 0, 30.0)
    a, b = ens64.predict(slab), ens64.predict(with_vac)
    np.testing.assert_allclose(a.energies, b.energies, rtol=1e-12)
    np.testing.assert_allclose(a.forces, b.forces, atol=1e-12)


def test_mixed_elements_gradient_and_permutation(tmp_path):
    """Two elements (separate embedding/fitting networks, per-type neighbour blocks)."""
    from cu_frames import emt_label, rattled_cu, small_config

    from elt.potentials.deepmd import train_member

    frames = []
    for n_au in (3, 6):
        a = rattled_cu(1, seed=n_au)[0].copy()
        a.symbols[:n_au] = "Au"
        frames.append(emt_label(a))
    train_member(frames, small_config(epochs=1, validation_fraction=0.0), ["Au", "Cu"], 0, 0, tmp_path / "m.pt")
    ens = load_ensemble([tmp_path / "m.pt"], precision="float64")
    atoms = frames[1].copy()
    atoms.positions += np.random.default_rng(2).normal(0, 0.05, atoms.positions.shape)
    pred = ens.predict(atoms)
    _assert_fd_forces(ens, atoms, pred.forces, (0, 10))  # an Au and a Cu atom
    perm = np.random.default_rng(3).permutation(len(atoms))
    q = ens.predict(atoms[perm])
    np.testing.assert_allclose(q.energies, pred.energies, rtol=1e-12)
    np.testing.assert_allclose(q.forces, pred.forces[:, perm], atol=1e-10)
    swapped = atoms.copy()
    swapped.symbols[[0, 10]] = swapped.symbols[[10, 0]]  # exchanging unlike atoms changes the energy
    assert abs(ens.predict(swapped).energies[0] - pred.energies[0]) > 1e-6
