"""PySCF on a periodic cell in the default suite: the small representatives of the slow
cross-checks (test_dft_cross_checks_slow.py, DZVP at 125 Hartree in a 5 Å box). H2 in a 4 Å box
with the minimal GTH basis (gth-szv-molopt-sr) at 100 Hartree: the gamma-point (multigrid)
stress is the strain derivative of the energy, and the k-mesh path (KRKS, FFT density fitting)
gives the same energy, forces and stress. Measured here: off-diagonal stress = strain derivative
to 5e-7 eV/Å³, diagonal to 1.2 % (the coarse grid); k-mesh vs gamma 5e-5 eV, 5e-3 eV/Å, 2e-6 eV/Å³."""

from __future__ import annotations

import numpy as np
import pytest
from lab_helpers import h2_box, strain_derivative

from elt.config.label import PySCFLabel
from elt.labeling.base import ExecSettings
from elt.labeling.pyscf import PySCFLabeler

pytest.importorskip("pyscf")

SMALL = PySCFLabel(kind="pyscf", basis="gth-szv-molopt-sr", ke_cutoff=100.0)  # gth-pbe pseudopotentials


@pytest.fixture(scope="module")
def gamma(tmp_path_factory):
    return PySCFLabeler(SMALL, ExecSettings(threads=1)).compute(h2_box(4.0), tmp_path_factory.mktemp("gamma"))


def test_gamma_point_stress_is_the_strain_derivative_of_the_energy(gamma, tmp_path):
    assert "multigrid" in gamma.info["class"]
    assert np.abs(gamma.stress).max() > 0.01  # a cell under stress: the comparison is not of zeros
    energies = PySCFLabeler(SMALL.model_copy(update={"stress": False}))
    # (1/V) dE/dε in eV/Å³: a wrong sign, volume or Voigt order would miss by far more than 3 %
    assert gamma.stress[5] == pytest.approx(strain_derivative(energies, h2_box(4.0), 0, 1, 2e-3, tmp_path), abs=1e-5)
    assert gamma.stress[0] == pytest.approx(strain_derivative(energies, h2_box(4.0), 0, 0, 2e-3, tmp_path), rel=0.03)


def test_k_mesh_path_equals_the_gamma_point_path(gamma, tmp_path):
    k = PySCFLabeler(SMALL.model_copy(update={"kpts": [1, 1, 1]})).compute(h2_box(4.0), tmp_path)
    assert k.info["class"] == "KRKS"
    assert k.energy == pytest.approx(gamma.energy, abs=0.005)
    assert np.allclose(k.forces, gamma.forces, atol=0.02) and np.abs(gamma.forces).max() > 1.0
    assert np.allclose(k.stress, gamma.stress, atol=1e-4)
