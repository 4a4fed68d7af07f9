"""The pure-numpy deviation math against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from elt.potentials.deviation import (
    atomic_force_deviation,
    batch_max_force_deviation,
    energy_deviation_per_atom,
    force_deviation,
    frame_deviation,
    virial_deviation,
)


def test_two_members_one_atom_by_hand():
    # members disagree by (2, 0, 0) on atom 0: mean (1,0,0), each differs by 1 -> std vector norm 1
    forces = np.array([[[0.0, 0, 0], [1, 1, 1]], [[2.0, 0, 0], [1, 1, 1]]])
    np.testing.assert_allclose(atomic_force_deviation(forces), [1.0, 0.0])
    assert force_deviation(forces) == (1.0, 0.0, 0.5)


def test_force_deviation_is_std_of_vector():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(4, 5, 3))
    expected = np.sqrt(np.sum(np.var(f, axis=0), axis=-1))  # sum over xyz of population variance
    np.testing.assert_allclose(atomic_force_deviation(f), expected)
    # translation of all members by the same vector changes nothing
    np.testing.assert_allclose(atomic_force_deviation(f + 3.0), expected)


def test_energy_and_virial_deviation_by_hand():
    assert energy_deviation_per_atom(np.array([1.0, 3.0]), 2) == pytest.approx(0.5)  # std 1, N=2
    v = np.zeros((2, 3, 3))
    v[0, 0, 0], v[1, 0, 0] = 4.0, 0.0  # std 2 on one component only
    vmax, vmin, vavg = virial_deviation(v, 4)
    assert (vmax, vmin) == (0.5, 0.0) and vavg == pytest.approx(0.5 / 9)


def test_frame_deviation_and_batch():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(3, 6, 3))
    e = np.array([1.0, 1.5, 2.0])
    d = frame_deviation(e, f)
    assert d.max_devi_f == pytest.approx(atomic_force_deviation(f).max())
    assert d.devi_e == pytest.approx(np.std(e) / 6)
    assert d.max_devi_v == 0.0 and set(d.as_dict()) >= {"max_devi_f", "min_devi_f", "avg_devi_f", "devi_e"}
    batch = np.stack([f, 2 * f])
    np.testing.assert_allclose(batch_max_force_deviation(batch), [d.max_devi_f, 2 * d.max_devi_f])


def test_needs_two_members():
    with pytest.raises(ValueError, match="k>=2"):
        atomic_force_deviation(np.zeros((1, 3, 3)))
