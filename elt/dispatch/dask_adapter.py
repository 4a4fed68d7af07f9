"""Every use of Dask's internals that elt's SLURM pools need, in one place.

distributed's ``SpecCluster`` scales from a dict of worker specs (``worker_spec``) and submits or
cancels jobs when ``_correct_state()`` brings the running workers in line with it; dask-jobqueue
builds on that. elt scales several pools against *one* scheduler (:mod:`elt.dispatch.slurm_pools`),
which ``adapt()`` cannot do, so it edits the spec itself and reads the scheduler's task state to
count each pool's demand. None of this is public API: each method below says which internal it
touches and why, so an upgrade of distributed is checked here and nowhere else (the SLURM tests
exercise every method).
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Optional


class SpecClusterAdapter:
    """The internals of one ``SpecCluster`` (and its in-process scheduler) that the pool scaler uses."""

    def __init__(self, cluster):
        self.cluster = cluster

    # ------------------------------------------------------------------ the worker spec (jobs)
    def add_job(self, name: str, spec: dict) -> None:
        """Ask for one more worker job. ``worker_spec`` is the SpecCluster's wanted state: there
        is no public call to add a named, heterogeneous spec (``scale()`` takes one template)."""
        self.cluster.worker_spec[name] = spec

    def drop_job(self, name: str) -> None:
        """Forget a job: removed from the wanted state, ``sync()`` cancels it (``scancel``) if it runs."""
        self.cluster.worker_spec.pop(name, None)

    def forget_worker(self, name: str) -> None:
        """Drop the job object of a job whose sbatch failed: SpecCluster keeps it in ``workers``
        and would try to close it (scancel of no job id) at shut-down."""
        self.cluster.workers.pop(name, None)

    def has_job_object(self, name: str) -> bool:
        """Whether the SpecCluster still holds the job object of ``name``: it deletes it once the
        job's worker has been gone for distributed's lost-worker-timeout (and would then submit the
        spec again at the next ``sync()``)."""
        return name in self.cluster.workers

    def job_id(self, name: str) -> Optional[str]:
        """SLURM's job id of a submitted job: dask-jobqueue's job object (``cluster.workers[name]``)
        holds it once sbatch answered; there is no public accessor."""
        return getattr(self.cluster.workers.get(name), "job_id", None)

    async def sync(self) -> None:
        """Submit and cancel jobs until the running ones match the wanted state. ``_correct_state``
        is what ``scale()`` calls inside; awaiting it directly lets the scaler see sbatch errors
        (``scale()`` schedules it and drops them)."""
        await self.cluster._correct_state()

    # ------------------------------------------------------------------ the scheduler
    @property
    def scheduler(self):
        """The in-process scheduler (SpecCluster runs it in the driver)."""
        return self.cluster.scheduler

    @property
    def address(self) -> str:
        return self.cluster.scheduler.address

    def set_allowed_failures(self, n: int) -> None:
        """How many dying workers a task may take down before it is marked failed: a scheduler
        setting (``distributed.scheduler.allowed-failures``) fixed at its start; set on the
        running scheduler so each profile can choose it."""
        self.cluster.scheduler.allowed_failures = n

    def add_plugin(self, plugin, name: str) -> None:
        """A scheduler plugin on the in-process scheduler (public on the Scheduler object)."""
        self.cluster.scheduler.add_plugin(plugin, name=name)

    def workers_by_name(self) -> dict[str, Any]:
        """Connected workers by their name (WorkerState objects: ``.address``, ``.processing``,
        ``.resources``). The scheduler's ``workers`` dict; the client's ``scheduler_info()`` would
        be a round trip per step, and it has no ``processing`` sets."""
        return {ws.name: ws for ws in self.cluster.scheduler.workers.values()}

    def waiting_tasks(self) -> list:
        """Tasks no connected worker can run (TaskState ``unrunnable``: e.g. waiting for a pool's
        resource) — the demand of pools whose jobs are not there yet."""
        return list(self.cluster.scheduler.unrunnable)

    def queued_count(self) -> int:
        """Tasks queued by the scheduler (``queued``, without resource restrictions) waiting for a
        free thread on the workers that exist."""
        return len(self.cluster.scheduler.queued)

    async def retire(self, addresses: list[str]) -> None:
        """Retire workers (their tasks move elsewhere first); ``Scheduler.retire_workers`` is
        public on the scheduler object but needs a stimulus id when called in-process."""
        await self.cluster.scheduler.retire_workers(workers=addresses, close_workers=True,
                                                    stimulus_id=f"elt-scale-down-{time.time()}")

    def fail_tasks(self, keys: Iterable, error: BaseException) -> None:
        """Mark waiting tasks failed with ``error`` (the client's future raises it). There is no
        public call to fail a task from the scheduler side; the scheduler's own transition to
        ``erred`` is what a task gets when its worker raises."""
        from distributed.protocol import pickle

        sched = self.cluster.scheduler
        exc = pickle.dumps(error)
        stimulus = f"elt-pool-broken-{time.time()}"
        for key in keys:
            recs = sched.transition(key, "erred", stimulus_id=stimulus, exception=exc, cause=key)
            sched.transitions(recs, stimulus)
