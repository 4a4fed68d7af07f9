"""SlurmDaskCluster against the real single-node SLURM of .ci/slurm/start.sh: real sbatch, real
worker jobs connecting over the loopback interface, real scancel."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import cloudpickle
import pytest
from distributed import KilledWorker
from drive import wait_for

from elt.config.cluster import load_profile, parse_profile
from elt.dispatch.base import open_cluster
from elt.errors import DispatchError

pytestmark = pytest.mark.slurm

# Workers cannot import this test module: its task functions travel by value (cloudpickle).
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def by_value(fn):
    """Dask pickles a module-level function by reference unless stdlib pickle fails on it; a
    closure makes it fail, so cloudpickle ships the function (registered above) itself."""
    def task(*args, **kwargs):
        return fn(*args, **kwargs)
    task.__name__ = fn.__name__
    return task


@by_value
def where_am_i(pause: float = 0.5):
    import os
    import time

    time.sleep(pause)
    return os.environ.get("SLURM_JOB_ID"), os.environ.get("SLURM_JOB_NAME")


@by_value
def slow_the_first_time(marker: str):
    """Sleeps long on its first attempt (the test kills that job), returns at once afterwards."""
    import os
    import pathlib
    import time

    m = pathlib.Path(marker)
    first = not m.exists()
    with m.open("a") as f:
        f.write(os.environ["SLURM_JOB_ID"] + "\n")
    if first:
        time.sleep(300)
    return os.environ["SLURM_JOB_ID"]


@by_value
def kill_my_worker(counter: str):
    import os

    with open(counter, "a") as f:
        f.write(os.environ["SLURM_JOB_ID"] + "\n")
    os._exit(1)


def localhost_profile(log_dir: Path, **changes):
    """The shipped slurm-localhost profile with its logs in ``log_dir`` and a few changes."""
    data = load_profile("slurm-localhost").model_dump()
    pools = changes.pop("pools", None)
    data.update(log_directory=str(log_dir), **changes)
    if pools is not None:
        data["pools"] = pools
    return parse_profile(data)


def squeue_ids() -> set[str]:
    out = subprocess.run(["squeue", "--me", "-h", "-o", "%i"], capture_output=True, text=True, timeout=30)
    return set(out.stdout.split())


@pytest.fixture(scope="module")
def cluster(slurm, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slurm")
    data = load_profile("slurm-localhost").model_dump()
    data["pools"]["dft"]["max_jobs"] = 1          # a killed label job must be *replaced*
    prof = localhost_profile(tmp / "logs", max_task_attempts=2, pools=data["pools"])
    with open_cluster(prof, tmp / "run") as c:
        yield c
    # closing cancels every worker job (squeue lists a cancelled job for a moment as COMPLETING)
    ours = {j.job_id for j in c.scaler.jobs.values()}
    wait_for(lambda: not ours & squeue_ids(), f"end of the worker jobs {sorted(ours)} after close", poll=0.5)


def test_tasks_run_in_slurm_jobs_of_their_pool(cluster):
    client = cluster.client
    kinds = ["label", "train", "explore", "label"]
    futures = [client.submit(where_am_i, pure=False, **cluster.submit_options(k)) for k in kinds]
    results = client.gather(futures)
    submitted = {j.job_id: j.pool for j in cluster.scaler.jobs.values()}
    for kind, (job_id, job_name) in zip(kinds, results):
        assert job_id and job_id.isdigit(), (kind, job_id)
        pool = "dft" if kind == "label" else "work"
        assert job_name == f"elt-{pool}", (kind, job_name)
        assert submitted.get(job_id) == pool           # a job this cluster submitted for that pool
    label_jobs = {r[0] for k, r in zip(kinds, results) if k == "label"}
    other_jobs = {r[0] for k, r in zip(kinds, results) if k != "label"}
    assert not label_jobs & other_jobs                 # DFT never shares a job with train/explore
    assert (cluster.cluster.scheduler.address).startswith("tcp://127.0.0.1:")


def test_scancelled_job_is_replaced_and_its_task_completes(cluster, tmp_path):
    marker = tmp_path / "attempts"
    fut = cluster.client.submit(slow_the_first_time, str(marker), pure=False, **cluster.submit_options("label"))
    wait_for(marker.exists, "start of the task in its first job", poll=0.2)
    killed = marker.read_text().split()[0]
    subprocess.run(["scancel", killed], check=True, timeout=30)
    job_id = fut.result(timeout=120)
    assert job_id != killed
    assert marker.read_text().split() == [killed, job_id]
    events = list(cluster.scaler.events)
    assert any(f"job {killed}) lost its workers" in e for e in events), events
    assert any(f"submitted job {job_id}" in e for e in events), events   # a new job, not a spare one


def test_task_that_kills_its_workers_fails_after_max_task_attempts(cluster, tmp_path):
    counter = tmp_path / "deaths"
    fut = cluster.client.submit(kill_my_worker, str(counter), pure=False, **cluster.submit_options("explore"))
    with pytest.raises(KilledWorker):
        fut.result(timeout=120)
    assert len(counter.read_text().split()) == 2       # max_task_attempts: 2, then marked failed
    # the pool still works afterwards
    ok = cluster.client.submit(where_am_i, 0.0, pure=False, **cluster.submit_options("explore"))
    assert ok.result(timeout=120)[1] == "elt-work"


@by_value
def die_in_task(task_dir, counter):
    import os

    with open(counter, "a") as f:
        f.write(os.environ["SLURM_JOB_ID"] + "\n")
    os._exit(1)


def test_a_task_whose_workers_die_is_recorded_failed_with_a_hint_on_memory(cluster, tmp_path):
    """Dask's KilledWorker says the workers died, not why: elt's runner adds the commonest cause."""
    from elt.engine.runner import TaskRunner, TaskSpec
    from elt.engine.state import RunState

    counter = tmp_path / "deaths"
    with RunState(tmp_path / "run") as st:
        (out,) = TaskRunner(st, cluster).run([TaskSpec("t", "explore", 0, die_in_task, tmp_path / "run" / "t",
                                                       str(counter))], "test phase")
        recorded = st.task("t")
    assert out.status == "failed" and out.result["reason"] == "KilledWorker"
    assert "memory of the pool" in out.result["message"] and "`memory:`" in out.result["message"]
    assert recorded["status"] == "failed" and recorded["result"]["message"] == out.result["message"]
    assert len(counter.read_text().split()) == 2       # max_task_attempts: 2


def test_bad_partition_shows_slurms_message(slurm, tmp_path):
    data = load_profile("slurm-localhost").model_dump()
    data["pools"]["dft"]["partition"] = "no_such_partition"
    prof = localhost_profile(tmp_path / "logs", pools=data["pools"])
    with pytest.raises(DispatchError) as e:
        with open_cluster(prof, tmp_path):
            pass
    text = str(e.value)
    assert "pool 'dft'" in text and "invalid partition" in text.lower(), text
    assert "partition" in e.value.hint


def one_pool(**pool):
    return {"a": {"kinds": ["train", "explore", "label"], "partition": "debug", "walltime": "00:10:00",
                  "memory": "1GB", **pool}}


def test_job_that_exits_before_connecting_fails_start_with_its_log(slurm, tmp_path):
    # the job's end is the event: a connect timeout this long would fail with another message
    # ("without its Dask worker connecting") long after the job ended
    prof = localhost_profile(tmp_path / "logs", connect_timeout=3600, pools=one_pool(
        min_jobs=1, prologue=["echo elt-test-broken-environment >&2", "exit 3"]))
    with pytest.raises(DispatchError) as e:
        with open_cluster(prof, tmp_path):
            pass
    text = str(e.value)
    assert "ended before its Dask worker connected" in text and "elt-test-broken-environment" in text, text
    assert "interface lo" in text and "tcp://127.0.0.1:" in text


def test_worker_that_never_connects_times_out_with_a_hint(slurm, tmp_path):
    prof = localhost_profile(tmp_path / "logs", connect_timeout=4, pools=one_pool(min_jobs=1, prologue=["sleep 300"]))
    with pytest.raises(DispatchError) as e:
        with open_cluster(prof, tmp_path):
            pass
    text = str(e.value)
    assert "without its Dask worker connecting" in text, text
    m = [w for w in text.split() if w.startswith("tcp://127.0.0.1:")]
    assert m, text                                      # which address/port the workers were given
    assert "interface lo" in text and "firewall" in text
    job = re.search(r"job (\d+) ran 4 s", text).group(1)
    wait_for(lambda: job not in squeue_ids(), f"cancellation of the sleeping job {job}", poll=0.5)


def test_tasks_fail_instead_of_waiting_forever_when_a_pool_cannot_start(slurm, tmp_path):
    prof = localhost_profile(tmp_path / "logs", pools=one_pool(prologue=["echo no-python-here >&2", "exit 3"]))
    with open_cluster(prof, tmp_path) as c:             # min_jobs 0: nothing submitted yet
        fut = c.client.submit(where_am_i, pure=False, **c.submit_options("label"))
        with pytest.raises(DispatchError) as e:
            fut.result(timeout=120)
        assert "no-python-here" in str(e.value)
        with pytest.raises(DispatchError):
            c.check()
        assert c.scaler.start_failures["a"] == 3       # tried three jobs, then gave up


def test_idle_jobs_are_cancelled_down_to_min_jobs(slurm, tmp_path):
    # two Dask worker processes per job: both are recognised as the job's (names elt-a-N-0/-1)
    prof = localhost_profile(tmp_path / "logs", pools=one_pool(idle_timeout=1, max_jobs=2, cores=2, processes=2))
    with open_cluster(prof, tmp_path) as c:
        futs = [c.client.submit(where_am_i, 1.0, pure=False, **c.submit_options("train")) for _ in range(2)]
        (job_id, _), (other, _) = c.client.gather(futs, errors="raise")
        assert job_id == other                          # 2 tasks, 2 slots in one job: one job
        workers = {w["name"] for w in c.client.scheduler_info()["workers"].values()}
        assert workers == {"elt-a-1-0", "elt-a-1-1"}
        wait_for(lambda: not c.scaler.jobs, f"cancellation of the idle job {job_id} (events: {list(c.scaler.events)})",
                 poll=0.5)
        assert any(f"job {job_id}): idle above demand, cancelled" in e for e in c.scaler.events)
        wait_for(lambda: job_id not in squeue_ids(), f"end of the cancelled job {job_id}", poll=0.5)


@by_value
def job_id_after(task_dir, marker):
    """A task of elt's runner: waits for ``marker`` (if given), returns its SLURM job id."""
    import os
    import pathlib
    import time

    while marker and not pathlib.Path(marker).exists():
        time.sleep(0.2)
    return {"job": os.environ["SLURM_JOB_ID"]}


def test_after_every_job_is_cancelled_jobs_are_submitted_only_for_the_tasks_left(slurm, tmp_path):
    """Issue 19: after all worker jobs were scancelled, label-pool jobs were submitted with no
    label waiting: the runner held the futures of finished labels, so Dask computed their lost
    results again in new jobs. A phase of elt's runner: label A finishes, train B still runs when
    every job is cancelled; a job comes for B (work pool), none for A (dft pool)."""
    import time

    import dask

    from elt.engine.runner import TaskRunner, TaskSpec
    from elt.engine.state import RunState

    marker, run = tmp_path / "go", tmp_path / "run"
    specs = [TaskSpec("a", "label", 0, job_id_after, run / "a", None),
             TaskSpec("b", "train", 0, job_id_after, run / "b", str(marker))]
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1s"}):  # the window passes quickly
        with open_cluster(localhost_profile(tmp_path / "logs"), tmp_path) as c, RunState(run) as st:
            seen: dict = {}

            def cancel_everything(outcome):
                if outcome.spec.id != "a":
                    return []
                assert outcome.status == "done"
                ours = {j.job_id for j in c.scaler.jobs.values()}
                assert {j.pool for j in c.scaler.jobs.values()} == {"dft", "work"}
                subprocess.run(["scancel", *sorted(ours)], check=True, timeout=30)
                wait_for(lambda: not ours & {j.job_id for j in c.scaler.jobs.values()} and not ours & squeue_ids(),
                         f"the scaler dropping the cancelled jobs {sorted(ours)} (events: {list(c.scaler.events)})",
                         poll=0.5)
                n = len(c.scaler.events)
                time.sleep(5 * c.scaler.interval + 3.0)  # past the lost-worker timeout, several scaling steps
                seen.update(ours=ours, after=list(c.scaler.events)[n:], jobs=dict(c.scaler.jobs))
                marker.touch()
                return []

            out = {o.spec.id: o for o in TaskRunner(st, c).run(specs, "test phase", follow=cancel_everything)}
    events = "\n".join(seen["after"])
    assert not [e for e in seen["after"] if e.startswith("elt-dft-") and "submitted job" in e], events
    assert all(j.pool == "work" for j in seen["jobs"].values()), (seen["jobs"], events)
    assert out["a"].status == out["b"].status == "done"
    assert out["b"].result["job"] not in seen["ours"]  # B ran again, in a job submitted for it


@by_value
def sleep_and_tell(seconds: float):
    import os
    import time

    time.sleep(seconds)
    return os.environ["SLURM_JOB_ID"]


@pytest.mark.slow
def test_workers_hand_over_before_the_walltime(slurm, tmp_path):
    """Walltime 90 s, margin 20 s: the worker retires after 70 ± 10 s, by itself and before SLURM's
    time limit; the task it was running moves to a new job without counting as a failure
    (max_task_attempts: 1 would turn a counted death into KilledWorker)."""
    # the worker's log must say why it closed: an `elt` command run earlier in this process set
    # DASK_LOGGING__DISTRIBUTED=error (what elt's users see); the worker jobs drop it again
    prof = localhost_profile(tmp_path / "logs", max_task_attempts=1,
                             pools=one_pool(walltime="00:01:30", lifetime_margin=20, max_jobs=1))
    with open_cluster(prof, tmp_path) as c:
        jobs = []
        for _ in range(30):  # 8 s tasks one after the other until a second job runs them (~70 s)
            jobs.append(c.client.submit(sleep_and_tell, 8.0, pure=False,
                                        **c.submit_options("label")).result(timeout=600))
            if len(set(jobs)) == 2:
                break
        assert len(set(jobs)) == 2, f"240 s of tasks ran in one job of walltime 90 s: {jobs}"
        first, second = sorted(set(jobs), key=jobs.index)[:2]
        err = (tmp_path / "logs" / f"elt-a-{first}.err").read_text()
        assert "DUE TO TIME LIMIT" not in err, err[-2000:]
        assert "worker-lifetime-reached" in err or "lifetime" in err.lower(), err[-2000:]
        assert any(f"job {first}) lost its workers" in e for e in c.scaler.events)


def _retire_as_at_lifetime():
    def retire(dask_worker):  # Client.run passes the worker to a parameter of this name
        """What ``dask worker --lifetime`` does when the lifetime is up: close gracefully."""
        dask_worker.loop.add_callback(dask_worker.close_gracefully, reason="worker-lifetime-reached")
    return retire  # a closure: pickled by value (see by_value)


retire_as_at_lifetime = _retire_as_at_lifetime()


def test_a_worker_retiring_mid_task_hands_the_task_to_a_new_job_without_a_failure(slurm, tmp_path):
    """The default-suite representative of the hand-over test above (which waits for a real
    lifetime): the worker of the pool's one job retires the way a lifetime makes it retire, while
    its task runs; the task finishes in a replacement job, not counted as a failure
    (max_task_attempts: 1 would turn a counted death into KilledWorker)."""
    prof = localhost_profile(tmp_path / "logs", max_task_attempts=1, pools=one_pool(max_jobs=1))
    marker = tmp_path / "attempts"
    with open_cluster(prof, tmp_path) as c:
        fut = c.client.submit(slow_the_first_time, str(marker), pure=False, **c.submit_options("label"))
        wait_for(marker.exists, "start of the task in its first job", poll=0.2)
        first = marker.read_text().split()[0]
        [worker] = c.client.scheduler_info()["workers"]  # max_jobs 1: the job's one worker
        c.client.run(retire_as_at_lifetime, workers=[worker])
        job = fut.result(timeout=600)  # a safety net: the new job starts in seconds
        assert job != first and marker.read_text().split() == [first, job]
        assert any(f"job {first}) lost its workers" in e for e in c.scaler.events), list(c.scaler.events)
        assert any(f"submitted job {job}" in e for e in c.scaler.events), list(c.scaler.events)
