"""The `address` cluster profile: a Dask scheduler and workers the user started (`dask scheduler`,
`dask worker` processes), elt connecting to it. One tiny EMT iteration runs on those workers, the
run resumes without redoing anything, and elt leaves the user's cluster running.

Known limit (not tested here): batched explorers size their batch tasks from the workers
connected at that moment (Cluster.worker_slots), so a resume with another number of workers
connected can make other batch tasks; the walker-per-task explorer used here does not batch."""

from __future__ import annotations

import json
import sys

import yaml
from drive import Journal, journal_ends, process, wait_for

from elt.cli.main import main
from elt.engine.state import open_readonly

WORKFLOW = {
    "name": "addr", "seed": 4,
    "system": {"structures": [{"kind": "bulk", "element": "Cu", "a": 3.61, "supercell": [2, 2, 2]}], "n_initial": 4},
    "train": {"ensemble_size": 2, "epochs": 8, "warm_epochs": 4, "min_steps": 1, "warm_min_steps": 1, "batch_size": 2,
              "model": {"rcut": 4.0, "embedding": [8, 16], "axis_neuron": 4, "fitting": [16, 16]}},
    "explore": {"stages": [{"temperatures": [300, 700], "steps": 40, "record_every": 10, "max_iterations": 1}]},
    "select": {"trust_lo": 0.03, "trust_hi": 0.6, "max_candidates": 3},
    "converge": {"max_iterations": 1},
}


def _worker_pids(address: str) -> set[int]:
    """The process ids of the scheduler's workers."""
    import os

    from distributed import Client

    with Client(address, timeout="60s") as c:
        return set(c.run(os.getpid).values())


def test_a_run_on_an_existing_scheduler_resumes_and_leaves_the_cluster_running(tmp_path, capsys):
    sched_file = tmp_path / "scheduler.json"
    dask = [sys.executable, "-m", "dask"]
    with process([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                  "--scheduler-file", str(sched_file)], tmp_path / "scheduler.log") as sched:
        address = wait_for(lambda: sched_file.exists() and json.loads(sched_file.read_text() or "{}").get("address"),
                           "scheduler file", proc=sched, log=tmp_path / "scheduler.log")
        with process([*dask, "worker", address, "--nworkers", "2", "--nthreads", "1", "--memory-limit", "0",
                      "--name", "mine", "--no-dashboard"], tmp_path / "workers.log") as workers:
            from distributed import Client

            with Client(address, timeout="60s") as c:
                c.wait_for_workers(2, timeout=600)  # a safety net: the workers connect in seconds
            pids = _worker_pids(address)
            profile = tmp_path / "existing.yaml"
            profile.write_text(yaml.safe_dump({"kind": "address", "address": address}))
            wf = tmp_path / "wf.yaml"
            wf.write_text(yaml.safe_dump(WORKFLOW))
            run_dir = tmp_path / "run"
            args = ["run", str(wf), "--workdir", str(run_dir), "--cluster", str(profile)]
            assert main(args) == 0, capsys.readouterr().err[-3000:]
            assert f"Dask scheduler at {address}" in capsys.readouterr().out

            with open_readonly(run_dir) as st:
                [rec] = st.iterations()
                assert json.loads(st.get_meta("final"))["status"] == "stage_budget"  # its one stage used its one iteration
            assert rec["walkers"] == 2 and rec["labels_ok"] == len(rec["label_tasks"])
            journal = Journal(run_dir)
            journal.new()
            kinds = {e["task"].split(":")[0] for e in journal.seen}
            assert kinds == {"train", "explore", "label"}
            assert {e["pid"] for e in journal.seen} <= pids  # every task ran on the user's workers
            ends = journal_ends(run_dir)
            assert ends and max(ends.values()) == 1

            # resume through the same scheduler: everything is reused, nothing dispatched
            assert main(args) == 0
            out = capsys.readouterr().out
            assert "resuming: " in out and "resuming after iteration 0" in out
            assert journal_ends(run_dir) == ends and not journal.new()
            # elt closed its client only: the user's scheduler and workers are still there
            assert sched.poll() is None and workers.poll() is None
            assert _worker_pids(address) == pids
