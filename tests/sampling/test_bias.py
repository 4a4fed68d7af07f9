"""Uncertainty-driven bias (UDD, HAL) on a real trained Deep Potential ensemble."""

import math

import numpy as np
import pytest

from elt.potentials.deviation import frame_deviation
from elt.sampling.bias import HALCalculator, UDDCalculator, energy_variance
from elt.sampling.wrappers import wrap_calculator
from elt.sampling.md import run_walker
from bias_helpers import fd_check


def _width_for(pot, atoms, x=1.0):
    """B such that σ_E²/(k·N·B²) = x at ``atoms`` (the bias is then neither negligible nor saturated)."""
    p = pot.predict(atoms)
    var = float(np.var(p.energies))
    return math.sqrt(var / (pot.size * len(atoms) * x))


def test_variance_gradient_matches_finite_differences(cu_pot64, cu_ensemble):
    atoms = cu_ensemble[1][0].copy()
    p = cu_pot64.predict(atoms)
    var, grad = energy_variance(p.energies, p.forces)
    assert var == pytest.approx(np.var(p.energies))
    h = 1e-4
    for i, c in [(0, 0), (5, 2), (17, 1)]:
        a = atoms.copy()
        a.positions[i, c] += h
        vp = np.var(cu_pot64.predict(a).energies)
        a.positions[i, c] -= 2 * h
        vm = np.var(cu_pot64.predict(a).energies)
        assert (vp - vm) / (2 * h) == pytest.approx(grad[i, c], rel=1e-5, abs=1e-8)


def test_udd_energy_and_forces_match_finite_differences(cu_pot64, cu_ensemble):
    atoms = cu_ensemble[1][3].copy()
    atoms.positions += np.random.default_rng(1).normal(0, 0.05, atoms.positions.shape)
    calc = UDDCalculator(cu_pot64.calculator(), strength=2.0, width=_width_for(cu_pot64, atoms))
    fd_check(calc, atoms)
    # the bias force is a real part of the total: not negligible against the ensemble forces
    assert np.abs(calc.results["bias_forces"]).max() > 1e-3 * np.abs(calc.results["forces"]).max()


def test_hal_energy_and_forces_match_finite_differences(cu_pot64, cu_ensemble):
    atoms = cu_ensemble[1][2].copy()
    calc = HALCalculator(cu_pot64.calculator(), tau=3.0)
    fd_check(calc, atoms)


def test_results_mean_includes_bias_and_deviations_stay_unbiased(cu_pot64, cu_ensemble):
    atoms = cu_ensemble[1][4].copy()
    p = cu_pot64.predict(atoms, stress=True)
    calc = UDDCalculator(cu_pot64.calculator(), strength=3.0, width=_width_for(cu_pot64, atoms, 0.5))
    a = atoms.copy()
    a.calc = calc
    e = a.get_potential_energy()
    f = a.get_forces()
    r = calc.results
    var = np.var(p.energies)
    e_b = 3.0 * (math.exp(-var / (cu_pot64.size * len(a) * calc.width ** 2)) - 1.0)
    assert r["bias_energy"] == pytest.approx(e_b, rel=1e-9) and e_b < -0.1
    assert e == pytest.approx(p.energies.mean() + e_b, rel=1e-9)
    assert r["energy_unbiased"] == pytest.approx(p.energies.mean(), rel=1e-9)
    np.testing.assert_allclose(f, p.forces.mean(axis=0) + r["bias_forces"], atol=1e-10)
    dev = frame_deviation(p.energies, p.forces)
    assert r["max_devi_f"] == pytest.approx(dev.max_devi_f) and r["devi_e"] == pytest.approx(dev.devi_e)
    np.testing.assert_allclose(r["energies_members"], p.energies)


def test_udd_auto_width_is_set_on_the_first_frame_then_kept(cu_pot64, cu_ensemble):
    a, b = cu_ensemble[1][0].copy(), cu_ensemble[1][1].copy()
    calc = UDDCalculator(cu_pot64.calculator(), strength=1.0)
    a.calc = calc
    a.get_potential_energy()
    assert calc.width == pytest.approx(_width_for(cu_pot64, a, 1.0), rel=1e-9)
    assert calc.results["bias_energy"] == pytest.approx(math.exp(-1.0) - 1.0, rel=1e-9)
    w = calc.width
    b.calc = calc
    b.get_potential_energy()
    assert calc.width == w


def test_hal_adapts_tau_to_the_target_force_ratio(cu_pot64, cu_ensemble):
    calc = HALCalculator(cu_pot64.calculator(), tau=1e-3, target_ratio=0.3, memory=5)
    ratios = []

    def ratio(step):
        r = calc.results
        ratios.append(np.linalg.norm(r["bias_forces"], axis=1).mean()
                      / np.linalg.norm(r["forces"] - r["bias_forces"], axis=1).mean())

    rec = run_walker(cu_ensemble[1][0], calc, temperature=300, steps=80, record_every=2, seed=3, on_record=ratio)
    assert rec.steps_done == 80
    assert calc.tau != pytest.approx(1e-3)
    # the ratio of bias to true force hovers around the target (instantaneous values fluctuate)
    assert 0.15 < float(np.median(ratios[len(ratios) // 2:])) < 0.6


def _mean_devi(pot, frame, calc, seed):
    rec = run_walker(frame, calc, temperature=300, steps=150, record_every=5, seed=seed)
    assert rec.stop_reason == "completed"
    d = rec.devi_array()
    return float(d[len(d) // 2:, 3].mean()), float(d[len(d) // 2:, 6].mean())


@pytest.mark.parametrize("kind", ["udd", "hal"])
def test_bias_drives_walkers_to_higher_deviation(cu_ensemble, kind):
    """Same start, same seed, with and without the bias: the biased walker climbs the ensemble's
    energy deviation σ_E/N (the quantity both biases act on) to well above the plain walker's."""
    from elt.potentials.deepmd import load_ensemble

    pot = load_ensemble(cu_ensemble[0])
    start = cu_ensemble[1][0]
    if kind == "udd":
        # B set on the start frame; A = 20 eV: on this fixture's ensemble 5 eV raises σ_E by only
        # ~15 %, 20 eV doubles it (both seeds tried), 50 eV drives atoms together
        biased = UDDCalculator(pot.calculator(), strength=20.0)
    else:
        biased = HALCalculator(pot.calculator(), target_ratio=0.5, memory=5)
    plain_f, plain_e = _mean_devi(pot, start, pot.calculator(), seed=5)
    bias_f, bias_e = _mean_devi(pot, start, biased, seed=5)
    assert bias_e > 1.3 * plain_e
    # the recorded deviations are the ensemble's own, the same quantity in both runs
    assert 0 < bias_f < 10 * plain_f


def test_wrap_calculator_follows_the_stage_config(cu_pot64):
    from elt.config.workflow import StageConfig
    from elt.sampling.metad import MetadCalculator

    base = cu_pot64.calculator()
    assert wrap_calculator(base, StageConfig(), 3, 300.0) is base
    st = StageConfig(bias={"kind": "udd", "strength": 0.5, "from_iteration": 2})
    assert wrap_calculator(base, st, 1, 300.0) is base
    c = wrap_calculator(base, st, 2, 300.0)
    assert isinstance(c, UDDCalculator) and c.strength == 0.5
    st = StageConfig(bias={"kind": "hal", "target_ratio": None, "tau": 0.7},
                     metad={"cvs": [{"kind": "distance", "atoms": [0, 1]}]})
    c = wrap_calculator(base, st, 0, 300.0)
    assert isinstance(c, HALCalculator) and c.tau == 0.7 and c.target_ratio is None
    assert isinstance(c.inner, MetadCalculator) and c.inner.inner is base


# ---------------------------------------------------------------- flattening (the seeds' bias)
def _switch_at(pot, atoms, start, x=0.4):
    """A ConfidenceSwitch with start frame ``start`` whose ramp puts ``atoms`` at fraction ``x``
    of the way from lo to hi (σ: std of the members' energy changes since ``start``, per atom)."""
    from elt.sampling.bias import ConfidenceSwitch

    de = pot.predict(atoms).energies - pot.predict(start).energies
    s = float(np.std(de)) / len(atoms)
    sw = ConfidenceSwitch(lo=s - 0.8 * x * s, hi=s + 0.8 * (1 - x) * s)
    sw.e0 = pot.predict(start).energies
    return sw, s


def test_smooth_switch_is_c1_and_bounded():
    from elt.sampling.bias import smooth_switch

    xs = np.linspace(-0.5, 1.5, 2001)
    w = np.array([smooth_switch(x)[0] for x in xs])
    dw = np.array([smooth_switch(x)[1] for x in xs])
    assert w[0] == 1.0 and w[-1] == 0.0 and np.all(np.diff(w) <= 1e-15)
    np.testing.assert_allclose(np.gradient(w, xs)[1:-1], dw[1:-1], atol=2e-3)
    assert smooth_switch(0.5) == (pytest.approx(0.5), pytest.approx(-1.875))


def test_flatten_energy_and_forces_match_finite_differences(cu_pot64, cu_ensemble):
    from elt.sampling.bias import FlattenCalculator

    atoms = cu_ensemble[1][3].copy()
    atoms.positions += np.random.default_rng(2).normal(0, 0.05, atoms.positions.shape)
    sw, _ = _switch_at(cu_pot64, atoms, cu_ensemble[1][0])
    calc = FlattenCalculator(cu_pot64.calculator(), strength=0.6, switch=sw)
    p = cu_pot64.predict(atoms)
    calc.e_ref = float(p.energies.mean()) - 0.7  # Ē − E_ref ≠ 0: the dw/dR term is on
    fd_check(calc, atoms)
    a = atoms.copy()
    a.calc = calc
    a.get_forces()
    r = calc.results
    assert 0.2 < calc.w < 0.95
    # the switch term is a real part of the bias force, not only −λ·w·F̄
    switch_part = r["bias_forces"] + 0.6 * calc.w * p.forces.mean(axis=0)
    assert np.abs(switch_part).max() > 0.05 * np.abs(r["bias_forces"]).max()
    assert r["bias_energy"] == pytest.approx(-0.6 * calc.w * 0.7, rel=1e-9)
    assert r["energy_unbiased"] == pytest.approx(p.energies.mean(), rel=1e-12)


def test_flatten_scales_forces_where_confident_and_leaves_them_where_not(cu_pot64, cu_ensemble):
    from elt.sampling.bias import FlattenCalculator

    atoms = cu_ensemble[1][1].copy()
    p = cu_pot64.predict(atoms)
    from elt.sampling.bias import ConfidenceSwitch

    sw, s = _switch_at(cu_pot64, atoms, cu_ensemble[1][0], -2.0)  # σ below lo: forces (1 − λ)·F̄
    above = ConfidenceSwitch(lo=0.2 * s, hi=0.5 * s)  # σ above hi: F̄
    above.e0 = sw.e0
    for sw, factor in [(sw, 0.3), (above, 1.0)]:
        calc = FlattenCalculator(cu_pot64.calculator(), strength=0.7, switch=sw)
        a = atoms.copy()
        a.calc = calc
        np.testing.assert_allclose(a.get_forces(), factor * p.forces.mean(axis=0), atol=1e-9)


def test_switch_ignores_member_offsets_and_calibrates_over_a_plain_warmup(cu_pot64, cu_ensemble):
    """σ starts at 0 on the start frame (constant offsets between members do not count); for
    ``warmup`` steps w = 0 (no bias), then lo, hi = 2, 4 × the warm-up's mean σ; E_ref follows Ē."""
    from elt.sampling.bias import FlattenCalculator

    calc = FlattenCalculator(cu_pot64.calculator(), strength=0.5, memory=10)
    calc.switch.warmup = 3
    frames = [cu_ensemble[1][i].copy() for i in (0, 1, 2, 3, 4)]
    e = [cu_pot64.predict(a).energies for a in frames]
    assert np.std(e[0]) / 32 > 1e-4  # the members do disagree on the start frame's energy
    sig = [float(np.std(x - e[0])) / 32 for x in e]
    e_ref = float(e[0].mean())
    for step, a in enumerate(frames):
        a.calc = calc
        a.get_potential_energy()
        assert calc.switch.sigma == pytest.approx(sig[step], rel=1e-6, abs=1e-12)
        if step < 3:
            assert calc.w == 0.0 and calc.results["bias_energy"] == 0.0
            np.testing.assert_allclose(calc.results["bias_forces"], 0.0)
        assert calc.e_ref == pytest.approx(e_ref)
        calc.on_step(step + 1, a)
        e_ref += (float(e[step].mean()) - e_ref) / 10
    ref = np.mean(sig[:3])
    assert calc.switch.lo == pytest.approx(2 * ref) and calc.switch.hi == pytest.approx(4 * ref)
    assert sig[0] == 0.0


def test_wrap_calculator_builds_flatten_from_the_stage_config(cu_pot64):
    from elt.config.workflow import StageConfig
    from elt.sampling.bias import FlattenCalculator

    st = StageConfig(bias={"kind": "flatten", "strength": 0.4, "confidence": {"lo": 0.001, "hi": 0.003}})
    c = wrap_calculator(cu_pot64.calculator(), st, 0, 300.0)
    assert isinstance(c, FlattenCalculator) and c.strength == 0.4
    assert (c.switch.lo, c.switch.hi) == (0.001, 0.003) and c.switch.calibrated
    with pytest.raises(Exception):
        StageConfig(bias={"kind": "flatten", "strength": 1.0})


def _vacancy_cell():
    """31 Cu atoms: a 2x2x2 fcc cell (a = 3.61 Å) without atom 0; returns (atoms, vacancy site)."""
    from ase.build import bulk

    cell = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)
    site = cell.positions[0].copy()
    del cell[0]
    return cell, site


def _closest_to(site, frames):
    """Per frame, the distance (Å, minimum image) of the atom nearest the vacancy site."""
    out = []
    for f in frames:
        d = f.positions - site
        d -= np.round(d @ np.linalg.inv(f.cell.array)) @ f.cell.array
        out.append(np.linalg.norm(d, axis=1).min())
    return np.array(out)


def test_flatten_walker_escapes_the_vacancy_basin_plain_md_stays_in(emt_ensemble):
    """Vacancy migration in 31-atom Cu with EMT (barrier ≈ 0.6 eV ≈ 8 kT at 900 K): in 2.4 ps plain
    MD leaves every atom at ≥ 0.9 Å from the vacancy site (the nearest ones sit at 2.55 Å), while a
    flattened walker (λ = 0.6; the thermal frames are confident: σ ≈ 0.004–0.009 eV/atom below lo)
    has an atom hop into the site (< 0.6 Å) at the same temperature and seeds."""
    from elt.sampling.bias import ConfidenceSwitch, FlattenCalculator

    atoms, site = _vacancy_cell()
    kw = dict(temperature=900, timestep=2.0, steps=1200, record_every=10)
    plain, flat = [], []
    for seed in (0, 1):
        rec = run_walker(atoms, emt_ensemble.calculator(), seed=seed, **kw)
        plain.append(_closest_to(site, rec.frames).min())
        calc = FlattenCalculator(emt_ensemble.calculator(), strength=0.6, switch=ConfidenceSwitch(lo=0.01, hi=0.02))
        rec = run_walker(atoms, calc, seed=seed, **kw)
        assert rec.stop_reason == "completed"
        flat.append(_closest_to(site, rec.frames).min())
    assert min(plain) > 0.9, plain
    assert min(flat) < 0.6, flat
