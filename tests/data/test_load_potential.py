"""The trained ensemble outside elt: `elt.load_potential(path)` is an ASE calculator; it reproduces
the predictions the exploration stored on the frames it selected."""

import numpy as np
import pytest

import elt
from elt.data.frames import PRED_ENERGY, PRED_FORCES, labels_of, read_frames
from elt.engine.state import open_readonly


def test_final_model_is_an_ase_calculator(tiny_run):
    calc = elt.load_potential(tiny_run / "model")
    a = read_frames(tiny_run / "data" / "iter_001.extxyz")[0]
    e_ref, f_ref, _ = labels_of(a)
    b = a.copy()
    b.calc = calc
    f = b.get_forces()
    assert f.shape == (len(a), 3) and np.all(np.isfinite(f))
    assert np.isfinite(b.get_potential_energy()) and b.get_stress().shape == (6,)
    fm = calc.results["forces_members"]  # (k, N, 3): the deviation is DP-GEN's, from the members
    assert calc.results["max_devi_f"] == pytest.approx(np.sqrt(((fm - fm.mean(0)) ** 2).sum(-1).mean(0)).max())
    # a trained model, not noise: closer to the labels than zero forces are
    assert np.sqrt(np.mean((f - f_ref) ** 2)) < np.sqrt(np.mean(f_ref ** 2))


def test_stored_predictions_are_the_ensembles(tiny_run):
    """elt_pred_forces/elt_pred_energy on a labeled frame = the exploring ensemble's mean prediction."""
    with open_readonly(tiny_run) as st:
        rec = st.iterations()[0]
    calc = elt.load_potential(rec["members"])
    frames = read_frames(tiny_run / "data" / "iter_000.extxyz")
    assert frames
    for a in frames:
        b = a.copy()
        b.calc = calc
        assert np.allclose(b.get_forces(), a.arrays[PRED_FORCES], atol=1e-4)
        assert b.get_potential_energy() == pytest.approx(a.info[PRED_ENERGY], abs=1e-3)
