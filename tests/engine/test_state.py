import multiprocessing as mp
import os

import pytest

from elt.engine.state import RunLock, RunState, holder, open_readonly
from elt.errors import StateError


def test_tasks_and_iterations_round_trip(tmp_path):
    with RunState(tmp_path) as st:
        st.record_task("abc", "label", 0, "done", {"energy": -1.5})
        st.record_iteration(0, {"iteration": 0, "accurate_ratio": 0.5})
    with RunState(tmp_path) as st:
        assert st.task("abc") == {"status": "done", "result": {"energy": -1.5}}
        assert st.task("nope") is None
        assert st.iterations() == [{"iteration": 0, "accurate_ratio": 0.5}]
        assert st.count_tasks() == {"label": 1}


def _hold_lock(run_dir, ready, stop):
    with RunLock(run_dir):
        ready.set()
        stop.wait(30)


def test_second_driver_is_refused_and_stale_lock_is_taken_over(tmp_path):
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_lock, args=(tmp_path, ready, stop))
    p.start()
    try:
        assert ready.wait(30)
        assert f"pid {p.pid}" in holder(tmp_path)
        with pytest.raises(StateError, match="another elt driver is running") as ei:
            RunLock(tmp_path).acquire()
        assert f"pid {p.pid}" in str(ei.value)
    finally:
        p.kill()  # dies holding the lock: the lock file stays, the lock does not
        p.join()
    assert (tmp_path / "driver.lock").exists()
    assert holder(tmp_path) is None
    with RunLock(tmp_path):
        assert f"pid {os.getpid()}" in holder(tmp_path)


@pytest.mark.parametrize("garbage", [b"", b"this is not sqlite at all" * 100, None])
def test_corrupted_state_is_reported_and_not_overwritten(tmp_path, garbage):
    path = tmp_path / "state.db"
    if garbage is None:  # a real state file, truncated in the middle
        with RunState(tmp_path) as st:
            for i in range(200):
                st.record_task(f"t{i}", "label", 0, "done", {"x": "y" * 100})
        for extra in ("state.db-wal", "state.db-shm"):
            if (tmp_path / extra).exists():
                (tmp_path / extra).unlink()
        data = path.read_bytes()
        garbage = data[: len(data) // 2 + 100]
    path.write_bytes(garbage)
    before = path.read_bytes()
    # an empty file too: a new state is made aside and moved in, so only damage leaves 0 bytes
    with pytest.raises(StateError) as ei:
        RunState(tmp_path)
    assert str(path) in str(ei.value)
    assert path.read_bytes() == before


def test_open_readonly_on_a_non_run(tmp_path):
    with pytest.raises(StateError, match="holds no elt run"):
        open_readonly(tmp_path)
