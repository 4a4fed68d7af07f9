"""Collective variables (analytic gradients) and metadynamics on a toy double well."""

import math

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from elt.sampling.cv import Angle, Coordination, Dihedral, Distance
from elt.sampling.md import run_walker
from elt.sampling.metad import MetadCalculator
from bias_helpers import fd_check


def _fd_grad(cv, atoms, h=1e-6):
    g = np.zeros((len(atoms), 3))
    for i in range(len(atoms)):
        for c in range(3):
            a = atoms.copy()
            a.positions[i, c] += h
            vp = cv(a)[0]
            a.positions[i, c] -= 2 * h
            vm = cv(a)[0]
            d = vp - vm
            if cv.periodic:
                d = (d + math.pi) % (2 * math.pi) - math.pi
            g[i, c] = d / (2 * h)
    return g


def _cluster(seed=0, n=6, pbc=False):
    rng = np.random.default_rng(seed)
    pos = rng.uniform(0, 3.0, (n, 3))
    a = Atoms("Cu" * n, positions=pos)
    if pbc:
        a.cell = np.diag([3.2, 3.4, 3.6])
        a.pbc = True
    return a


@pytest.mark.parametrize("pbc", [False, True])
@pytest.mark.parametrize("cv", [Distance([0, 3]), Angle([1, 0, 4]), Dihedral([0, 1, 2, 3]),
                                Coordination([0, 1, 2], [3, 4, 5], r0=2.0), Coordination([0, 1, 2, 3, 4, 5], r0=2.2)],
                         ids=["distance", "angle", "dihedral", "coordination-ab", "coordination-aa"])
def test_cv_gradients_match_finite_differences(cv, pbc):
    for seed in range(3):
        a = _cluster(seed, pbc=pbc)
        v, g = cv(a)
        assert np.isfinite(v)
        np.testing.assert_allclose(g, _fd_grad(cv, a), atol=1e-5, rtol=1e-4)


def test_cv_values_against_ase():
    a = _cluster(4)
    assert Distance([1, 2])(a)[0] == pytest.approx(a.get_distance(1, 2))
    assert math.degrees(Angle([1, 0, 4])(a)[0]) == pytest.approx(a.get_angle(1, 0, 4))
    phi = math.degrees(Dihedral([0, 1, 2, 3])(a)[0]) % 360
    assert phi == pytest.approx(a.get_dihedral(0, 1, 2, 3), abs=1e-6)
    # coordination: pairs well inside r0 count ~1, far outside ~0; each unordered pair once
    b = Atoms("Cu3", positions=[[0, 0, 0], [1.0, 0, 0], [10.0, 0, 0]])
    assert Coordination([0, 1, 2], r0=2.0)(b)[0] == pytest.approx(1.0, abs=0.02)


class DoubleWell(Calculator):
    """Two atoms bound by E(r) = h·((r − c)²/w² − 1)²: minima at r = c ± w, barrier h at r = c."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, h=0.5, c=2.5, w=0.5):
        super().__init__()
        self.h, self.c, self.w = h, c, w

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        d = self.atoms.positions[1] - self.atoms.positions[0]
        r = float(np.linalg.norm(d))
        q = (r - self.c) ** 2 / self.w ** 2 - 1.0
        de_dr = self.h * 2 * q * 2 * (r - self.c) / self.w ** 2
        forces = np.zeros((len(self.atoms), 3))
        forces[1] = -de_dr * d / r
        forces[0] = -forces[1]
        self.results = {"energy": self.h * q * q, "forces": forces}


def _dimer():
    return Atoms("H2", positions=[[0, 0, 0], [2.0, 0, 0]])  # in the left well (r = c − w)


def _visits(rec):
    r = np.array([np.linalg.norm(f.positions[1] - f.positions[0]) for f in rec.frames])
    return r.min(), r.max()


def test_metad_forces_match_finite_differences_of_the_biased_energy():
    calc = MetadCalculator(DoubleWell(), [Distance([0, 1]), Angle([0, 1, 2])], [0.1, 0.2], height=0.1, stride=1)
    a = Atoms("H3", positions=[[0, 0, 0], [2.0, 0.1, 0], [2.5, 1.2, 0.3]])
    a.calc = calc
    for s in ([2.0, 1.5], [2.05, 1.6], [1.95, 1.7]):
        calc.deposit(np.array(s), step=len(calc.heights) + 1)
    f = a.get_forces().copy()
    assert calc.results["bias_energy"] > 0.01
    h = 1e-6
    for i in range(3):
        for c in range(3):
            a.positions[i, c] += h
            ep = a.get_potential_energy()
            a.positions[i, c] -= 2 * h
            em = a.get_potential_energy()
            a.positions[i, c] += h
            assert -(ep - em) / (2 * h) == pytest.approx(f[i, c], abs=1e-6)


def test_metadynamics_pushes_the_cv_across_the_barrier():
    # barrier 0.5 eV ≈ 19 kT at 300 K: plain MD stays in the left well
    plain = run_walker(_dimer(), DoubleWell(), temperature=300, timestep=1.0, steps=800, record_every=10,
                       friction=0.05, seed=1)
    lo, hi = _visits(plain)
    assert hi < 2.5 and plain.stop_reason == "completed"
    calc = MetadCalculator(DoubleWell(), [Distance([0, 1])], [0.1], height=0.05, stride=20)
    biased = run_walker(_dimer(), calc, temperature=300, timestep=1.0, steps=800, record_every=10,
                        friction=0.05, seed=1)
    lo, hi = _visits(biased)
    assert hi > 2.9  # reached the right well (minimum at 3.0)
    assert len(calc.heights) == 800 // 20 and calc.hill_steps[:2] == [20, 40]


def test_well_tempered_hills_shrink_where_bias_accumulates():
    calc = MetadCalculator(DoubleWell(), [Distance([0, 1])], [0.1], height=0.05, stride=1, biasfactor=5.0,
                           temperature=300.0)
    for step in range(1, 40):
        calc.deposit(np.array([2.0]), step)
    assert calc.heights[0] == pytest.approx(0.05)
    assert np.all(np.diff(calc.heights) < 0) and calc.heights[-1] < 0.2 * calc.heights[0]
    v, _ = calc.potential(np.array([2.0]))
    # well-tempered: the bias converges instead of growing linearly with the number of hills
    assert v < 0.5 * 0.05 * 39


def test_dihedral_hills_wrap_around_the_period():
    calc = MetadCalculator(DoubleWell(), [Dihedral([0, 1, 2, 3])], [0.2], height=1.0, stride=1)
    calc.deposit(np.array([math.pi - 0.05]), 1)
    v_near, _ = calc.potential(np.array([-math.pi + 0.05]))  # 0.1 rad away across the branch cut
    assert v_near == pytest.approx(math.exp(-0.5 * (0.1 / 0.2) ** 2))


def test_hills_and_colvar_files(tmp_path):
    calc = MetadCalculator(DoubleWell(), [Distance([0, 1])], [0.1], height=0.05, stride=5)
    rec = run_walker(_dimer(), calc, temperature=300, timestep=1.0, steps=50, record_every=10, seed=2)
    calc.write_hills(tmp_path / "hills.out")
    calc.write_colvar(tmp_path / "colvar.out", rec.steps, rec.frames)
    hills = np.loadtxt(tmp_path / "hills.out", ndmin=2)
    colvar = np.loadtxt(tmp_path / "colvar.out", ndmin=2)
    assert hills.shape == (10, 3) and list(hills[:3, 0]) == [5, 10, 15]
    assert colvar.shape == (6, 2) and colvar[0, 1] == pytest.approx(2.0)


def test_confidence_switched_metad_forces_match_finite_differences(cu_pot64, cu_ensemble):
    """E_b = w(σ)·V(s): forces include the −V·dw/dR term; checked on the real ensemble."""
    from elt.sampling.bias import ConfidenceSwitch

    atoms = cu_ensemble[1][2].copy()
    atoms.positions += np.random.default_rng(3).normal(0, 0.04, atoms.positions.shape)
    e0 = cu_pot64.predict(cu_ensemble[1][0]).energies  # the walker's start frame
    s = float(np.std(cu_pot64.predict(atoms).energies - e0)) / len(atoms)
    sw = ConfidenceSwitch(lo=0.6 * s, hi=1.6 * s)
    sw.e0 = e0
    calc = MetadCalculator(cu_pot64.calculator(), [Distance([0, 1]), Coordination([0], list(range(1, 32)), r0=2.9)],
                           [0.1, 0.3], height=0.2, stride=1, switch=sw)
    a = atoms.copy()
    a.calc = calc
    s0, _ = calc.cv_values(a)
    for k, d in enumerate(([0.0, 0.0], [0.05, -0.2], [-0.08, 0.3])):
        calc.deposit(s0 + np.array(d), step=k + 1)
    a.get_forces()
    v, _ = calc.potential(s0)
    w = calc.results["bias_energy"] / v
    assert 0.2 < w < 0.9 and v > 0.1
    plain = MetadCalculator(cu_pot64.calculator(), calc.cvs, calc.widths, stride=1)
    plain.centers, plain.heights = calc.centers, calc.heights
    b = atoms.copy()
    b.calc = plain
    b.get_forces()
    # the −V·dw/dR term is there: the switched bias force is not just w times the plain one
    assert np.abs(calc.results["bias_forces"] - w * plain.results["bias_forces"]).max() > 1e-3
    fd_check(calc, atoms, n=10)


def test_switched_metad_from_config_and_without_an_ensemble():
    from elt.config.sampling import MetadConfig

    cfg = MetadConfig(cvs=[{"kind": "distance", "atoms": [0, 1]}], confidence={"lo_factor": 1.5, "hi_factor": 3})
    calc = MetadCalculator.from_config(DoubleWell(), cfg, 300.0)
    assert calc.switch.lo_factor == 1.5 and calc.switch.hi_factor == 3.0
    calc.deposit(np.array([2.0]), 1)
    a = _dimer()
    a.calc = calc
    with pytest.raises(ValueError, match="ensemble calculator"):
        a.get_forces()
