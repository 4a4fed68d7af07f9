"""Shared frames and helpers of the labeler tests."""

from __future__ import annotations

import shutil

import numpy as np
from ase import Atoms

CP2K_BINARY = shutil.which("cp2k.psmp")
NO_CP2K = "cp2k.psmp is not on PATH (CI installs it with .ci/install_cp2k.sh; locally: apt-get install cp2k)"


def h2_frame() -> Atoms:
    """H2 stretched to 0.825 Å (equilibrium ~0.75), tilted against the axes: the bond force is
    restoring, a few eV/Å, and no grid symmetry makes it vanish."""
    return Atoms("H2", positions=[[0.0, 0.0, 0.0], [0.49, 0.34, 0.57]])


def h2_box(edge: float = 5.0) -> Atoms:
    """:func:`h2_frame` centred in a periodic cube (edge in Å)."""
    a = h2_frame()
    a.set_cell([edge, edge, edge])
    a.center()
    a.pbc = True
    return a


def bond_unit(atoms: Atoms) -> np.ndarray:
    d = atoms.positions[1] - atoms.positions[0]
    return d / np.linalg.norm(d)


def si2_frame() -> Atoms:
    """Primitive diamond Si (fcc cell, not orthogonal) with one atom displaced."""
    from ase.build import bulk

    a = bulk("Si", "diamond", a=5.43)
    a.positions[0] += [0.08, -0.05, 0.03]
    return a


class NonConvergingSCF:
    """An ASE calculator whose SCF never converges: it raises ASE's SCFError, as ASE's DFT
    calculators do (a stand-in: no real code here fails its SCF on demand and cheaply)."""

    @staticmethod
    def make(**kwargs):
        from ase.calculators.calculator import Calculator, SCFError

        class _Calc(Calculator):
            implemented_properties = ["energy", "forces"]

            def calculate(self, atoms=None, properties=("energy",), system_changes=()):
                raise SCFError("SCF did not converge in 3 cycles")

        return _Calc(**kwargs)


def strained(atoms, i, j, eps):
    e = np.eye(3)
    e[i, j] += eps / (2 if i != j else 1)
    e[j, i] += eps / 2 if i != j else 0
    a = atoms.copy()
    a.set_cell(atoms.cell.array @ e, scale_atoms=True)
    return a


def strain_derivative(labeler, atoms, i, j, eps, workdir):
    """(1/V) dE/dε_ij by central differences (eV/Å³)."""
    ep = labeler.compute(strained(atoms, i, j, eps), workdir).energy
    em = labeler.compute(strained(atoms, i, j, -eps), workdir).energy
    return (ep - em) / (2 * eps) / atoms.get_volume()
