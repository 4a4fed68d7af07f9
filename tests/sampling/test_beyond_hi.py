"""Walkers past trust_hi: stop, continue or restart; frames at or above trust_hi are never
candidates. Real trained ensemble, real MD."""

import numpy as np
import pytest

from elt.data.modeldevi import stopped_on_bad_frame
from elt.config.sampling import BeyondHi
from elt.config.workflow import StageConfig
from elt.engine.tasks import ExploreJob, explore_task
from elt.records import SelectionLevels, WalkerSpec
from elt.sampling.md import run_walker


def _hi(cu_ensemble, q=0.5):
    """A trust_hi that the walkers below cross part of the time: the q-quantile of the max force
    deviation along a plain walk at 900 K."""
    from elt.potentials.deepmd import load_ensemble

    pot = load_ensemble(cu_ensemble[0])
    rec = run_walker(cu_ensemble[1][0], pot.calculator(), temperature=900, steps=200, record_every=5, seed=11)
    return pot, float(np.quantile(rec.devi_array()[:, 3], q))


def test_continue_goes_past_hi_and_ends_after_its_steps(cu_ensemble):
    pot, hi = _hi(cu_ensemble)
    kw = dict(temperature=900, steps=200, record_every=5, seed=11, stop_at=hi)
    stop = run_walker(cu_ensemble[1][0], pot.calculator(), **kw)
    assert stop.stop_reason == "above_trust_hi" and stop.beyond_frames == 0
    assert stop.devi_array()[-1, 3] >= hi and (stop.devi_array()[:-1, 3] < hi).all()
    cont = run_walker(cu_ensemble[1][0], pot.calculator(), beyond=BeyondHi(mode="continue", steps=10), **kw)
    d = cont.devi_array()[:, 3]
    assert cont.steps_done > stop.steps_done and cont.beyond_frames >= 1
    above = d >= hi
    # never more than steps/record_every = 2 recorded frames in a row at or above hi survive; a
    # third ends the walker
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, above.astype(int), 0]) != 0))[::2]
    if cont.stop_reason == "above_trust_hi":
        assert runs[-1] == 3 and (runs[:-1] <= 2).all()
    else:
        assert cont.stop_reason == "completed" and (runs <= 2).all()
    assert cont.beyond_frames == int(above.sum()) - (cont.stop_reason == "above_trust_hi")


def test_restart_goes_back_to_the_last_trusted_frame(cu_ensemble):
    pot, hi = _hi(cu_ensemble, 0.6)
    seen = []

    def on_record(step):
        seen.append(step)

    rec = run_walker(cu_ensemble[1][0], pot.calculator(), temperature=900, steps=200, record_every=5, seed=11,
                     stop_at=hi, beyond=BeyondHi(mode="restart", restarts=3), on_record=on_record)
    d = rec.devi_array()[:, 3]
    assert rec.restarts >= 1 and rec.restarts <= 3
    # the frame recorded after a restart is one record interval of MD from the trusted frame
    # before the one at/above hi, with fresh velocities: about sqrt(2) times closer to it (rms)
    # than to the untrusted frame (each one interval from the trusted frame, independently)
    i = int(np.flatnonzero(d >= hi)[0])
    assert i >= 1 and d[i - 1] < hi

    def rms(x, y):
        return float(np.sqrt(np.mean((rec.frames[x].positions - rec.frames[y].positions) ** 2)))

    assert rms(i + 1, i - 1) < 0.9 * rms(i + 1, i)
    if rec.restarts < 3:
        assert rec.stop_reason == "completed"


def test_frames_past_hi_are_never_candidates_and_the_walker_passes_them(tmp_path, cu_ensemble):
    """A flatten-biased walker (default rule for biased stages: continue) records frames at or
    above trust_hi, goes on past them, and none of them is a candidate."""
    _, hi = _hi(cu_ensemble, 0.4)
    stage = StageConfig(steps=200, record_every=5, bias={"kind": "flatten", "strength": 0.5})
    assert stage.past_hi().mode == "continue"
    assert StageConfig().past_hi().mode == "stop"
    walker = WalkerSpec(id="w0", temperature=900.0, pressure=None, seed=11, iteration=1)
    r = explore_task(tmp_path, ExploreJob([walker], [cu_ensemble[1][0]], [str(p) for p in cu_ensemble[0]], "deepmd",
                                          stage, SelectionLevels(lo=0.0, hi=hi, strategy="random")))
    table = np.loadtxt(tmp_path / "model_devi.out", ndmin=2)
    above = table[:, 4] >= hi * (1 - 1e-6)  # the file keeps 7 digits; hi is one frame's own deviation
    assert r["beyond_frames"] >= 1 and above[:-1].any()  # went on after a frame at/above hi
    # failed: the frames at/above hi, and the frame that stopped the walker for a bad reason
    bad_last = stopped_on_bad_frame(r["stop_reason"]) and not above[-1]
    assert r["counts"]["failed"] == int(above.sum()) + int(bad_last)
    assert r["candidates"] and all(c["max_devi_f"] < hi for c in r["candidates"])
    steps_above = set(table[above, 0].astype(int))
    assert not steps_above & {c["step"] for c in r["candidates"]}


def test_beyond_hi_config():
    st = StageConfig(bias={"kind": "udd"}, beyond_hi={"mode": "restart", "restarts": 2})
    assert st.past_hi() == BeyondHi(mode="restart", restarts=2)
    assert StageConfig(metad={"cvs": [{"kind": "distance", "atoms": [0, 1]}]}).past_hi().mode == "continue"
    with pytest.raises(Exception):
        StageConfig(beyond_hi={"mode": "jump"})
