"""Adaptive scaling of SLURM worker jobs, pool by pool, around one Dask scheduler.

dask-jobqueue's ``adapt()`` sizes one homogeneous cluster from the scheduler's total load. elt
runs several pools (train, explore, label ...) against *one* scheduler, so this module sizes
each pool from the tasks that need it: a task of kind K carries the Dask resource
``pool-<P>`` of the pool P that runs K, and a pool's workers offer that resource.

Every ``interval`` seconds, on the cluster's event loop, :class:`PoolScaler`

- counts each pool's demand: tasks waiting for its resource (``no-worker``) plus the tasks
  processing on its workers, and asks for ``ceil(demand / slots per job)`` jobs, within
  ``[min_jobs, max_jobs]``;
- submits jobs (``sbatch`` through dask-jobqueue's ``SLURMJob``) when the pool has too few;
- replaces jobs that died (``scancel``, node failure, walltime or worker lifetime reached):
  a job whose workers left and that ``squeue`` no longer lists is dropped, and the demand
  brings a new one; Dask re-runs the tasks that ran there (a task on more than
  ``max_task_attempts`` dying workers is marked failed by the scheduler);
- counts jobs that exit, or run ``connect_timeout`` seconds, without their worker connecting
  as failures; after ``MAX_START_FAILURES`` in a row the pool is *broken*: it stops submitting,
  :attr:`failure` says why, and the tasks waiting for the pool fail with that message instead
  of waiting forever;
- retires idle jobs above the demand after ``idle_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from distributed.diagnostics.plugin import SchedulerPlugin

from elt.dispatch.dask_adapter import SpecClusterAdapter
from elt.errors import DispatchError

log = logging.getLogger(__name__)

MAX_START_FAILURES = 3
SQUEUE_INTERVAL = 2.0       # seconds between squeue calls while a job is new or lost its workers
SQUEUE_SLOW_INTERVAL = 15.0  # ... while jobs only wait in the queue (none when all are connected)
LOST_GRACE = 30.0           # a job listed by squeue whose workers are gone this long is replaced
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "SUSPENDED", "REQUEUED", "RESIZING", "COMPLETING"}


def pool_resource(pool: str) -> str:
    """Name of the Dask worker resource that pins tasks to pool ``pool``."""
    return f"pool-{pool}"


@dataclass
class JobRecord:
    """What the scaler knows about one submitted worker job (one SpecCluster worker spec)."""

    name: str                    # spec name, also the Dask worker name (plus -i with processes > 1)
    pool: str
    worker_names: list[str]
    submitted: float = field(default_factory=time.monotonic)
    job_id: Optional[str] = None
    seen: bool = False           # a worker of this job connected at least once
    last_seen: float = 0.0
    running_since: Optional[float] = None  # first time squeue said RUNNING
    slurm_state: Optional[str] = None
    idle_since: Optional[float] = None


class PoolScaler:
    """Keeps each pool's jobs in line with its tasks. Runs on ``cluster.loop``; see module doc."""

    def __init__(self, cluster, profile, job_specs: dict[str, dict[str, Any]], log_dir: Path,
                 interval: float = 1.0, jobs_file: Optional[Path] = None):
        self.cluster = cluster                  # a distributed SpecCluster with our scheduler
        self.dask = SpecClusterAdapter(cluster)  # its internals, in one place
        self.profile = profile
        self.job_specs = job_specs              # pool -> {"cls": SLURMJob, "options": ..., ["group"]}
        self.log_dir = Path(log_dir)
        self.jobs_file = jobs_file              # every submitted job id, one per line (see cancel_recorded_jobs)
        self.interval = interval
        self.jobs: dict[str, JobRecord] = {}
        self.start_failures = {p: 0 for p in profile.pools}
        self.broken: dict[str, DispatchError] = {}
        self.last_error: dict[str, DispatchError] = {}   # latest start failure of each pool
        self.failure: Optional[DispatchError] = None
        self.events: deque[str] = deque(maxlen=500)  # notable events, newest last (logs and tests)
        self._counter = 0
        self._squeue_tried = 0.0                 # last squeue call (rate limit)
        self._squeue_at = 0.0                    # last *successful* squeue snapshot
        self._squeue: dict[str, str] = {}
        self._surplus_since: dict[str, Optional[float]] = {p: None for p in profile.pools}
        self._task: Optional[asyncio.Task] = None
        self._stopped = False
        self._wake: Optional[asyncio.Event] = None
        self._connected = _ConnectLog()
        self.default_pool = profile.pool_for("explore")

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._connected = _ConnectLog()
        self.dask.add_plugin(self._connected, name="elt-connect-log")
        await self.step()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Stop after the current step (never in the middle of an sbatch, which would leave a
        job nobody tracks)."""
        self._stopped = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=120)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                pass
            self._task = None

    async def _run(self) -> None:
        while not self._stopped:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)
            except asyncio.TimeoutError:
                pass
            if self._stopped:
                break
            try:
                await self.step()
            except Exception:  # keep scaling even if one step hits a transient SLURM error
                log.exception("SLURM pool scaling step failed")

    # ------------------------------------------------------------------ one step
    async def step(self) -> None:
        now = time.monotonic()
        by_name = self.dask.workers_by_name()
        self._observe(by_name, now)
        await self._poll_squeue(now)
        await self._drop_dead(by_name, now)
        for pool in self.profile.pools:
            await self._scale_pool(pool, by_name, now)
        self._fail_waiting_tasks()

    def _observe(self, by_name: dict, now: float) -> None:
        for job in self.jobs.values():
            if job.job_id is None:
                job.job_id = self.dask.job_id(job.name)
            workers = [by_name[n] for n in job.worker_names if n in by_name]
            if not job.seen and any(n in self._connected.names for n in job.worker_names):
                # connected and gone again between two steps (e.g. killed at once): still seen
                job.seen, job.last_seen = True, now - 0.001
                self.start_failures[job.pool] = 0
            if workers:
                if not job.seen:
                    self._event(f"{job.name} (job {job.job_id}) connected after "
                                f"{now - job.submitted:.1f} s", logging.DEBUG)
                job.seen, job.last_seen = True, now
                self.start_failures[job.pool] = 0
                busy = any(ws.processing for ws in workers)
                job.idle_since = None if busy else (job.idle_since or now)

    def _squeue_interval(self, now: float) -> Optional[float]:
        """How often squeue must be asked now: often while a job lost its workers or was just
        submitted, rarely while jobs only wait in the queue, never while all are connected."""
        interval = None
        for job in self.jobs.values():
            if job.seen and job.last_seen == now:
                continue
            if job.seen or now - job.submitted < 60:
                return SQUEUE_INTERVAL
            interval = SQUEUE_SLOW_INTERVAL
        return interval

    async def _poll_squeue(self, now: float) -> None:
        interval = self._squeue_interval(now)
        if interval is None or now - self._squeue_tried < interval:
            return
        self._squeue_tried = now
        try:
            out = await asyncio.to_thread(
                subprocess.run, ["squeue", "--me", "-h", "-o", "%i %T"],
                capture_output=True, text=True, timeout=30)
        except Exception as e:  # squeue hung or vanished: try again next step
            log.warning("squeue failed: %s", e)
            return
        if out.returncode != 0:
            log.warning("squeue failed: %s", out.stderr.strip())
            return
        self._squeue = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
        self._squeue_at = now
        for job in self.jobs.values():
            if job.job_id is None:
                continue
            state = self._squeue.get(job.job_id)
            job.slurm_state = state
            if state == "RUNNING" and job.running_since is None:
                job.running_since = now

    async def _drop_dead(self, by_name: dict, now: float) -> None:
        dead: list[JobRecord] = []
        for job in list(self.jobs.values()):
            if job.job_id is None or (job.seen and job.last_seen == now):
                continue
            listed = job.slurm_state in ACTIVE_STATES and job.job_id in self._squeue
            checked = self._squeue_at > job.submitted   # a snapshot taken after the job was queued
            if job.seen:
                if (checked and not listed) or now - job.last_seen > LOST_GRACE:
                    self._event(f"{job.name} (job {job.job_id}) lost its workers "
                                f"(SLURM state: {job.slurm_state or 'gone'}); replacing it if needed")
                    dead.append(job)
            elif checked and not listed:
                self._start_failed(job, f"job {job.job_id} ended before its Dask worker connected")
                dead.append(job)
            elif job.running_since is not None and now - job.running_since > self.profile.connect_timeout:
                self._start_failed(job, f"job {job.job_id} ran {self.profile.connect_timeout:.0f} s "
                                        "without its Dask worker connecting")
                dead.append(job)
        if dead:
            for job in dead:
                self.jobs.pop(job.name, None)
                self.dask.drop_job(job.name)
            await self._sync()

    async def _scale_pool(self, pool: str, by_name: dict, now: float) -> None:
        cfg = self.profile.pools[pool]
        demand = self._demand(pool, by_name)
        per_job = cfg.slots_per_worker() * cfg.processes
        want = min(cfg.max_jobs, max(cfg.min_jobs, math.ceil(demand / per_job)))
        jobs = [j for j in self.jobs.values() if j.pool == pool]
        if pool in self.broken:
            return
        if want > len(jobs):
            self._surplus_since[pool] = None
            await self._submit(pool, want - len(jobs))
        elif want < len(jobs):
            since = self._surplus_since[pool] or now
            self._surplus_since[pool] = since
            if now - since >= cfg.idle_timeout:
                await self._retire(pool, jobs, len(jobs) - want, by_name, now)
        else:
            self._surplus_since[pool] = None

    def _demand(self, pool: str, by_name: dict) -> int:
        """Tasks that need this pool now: waiting for its resource, or processing on its workers."""
        res = pool_resource(pool)
        n = len(self._waiting_for(pool))
        if pool == self.default_pool:
            n += self.dask.queued_count()
        for ws in by_name.values():
            if res in ws.resources:
                n += len(ws.processing)
        return n

    def _waiting_for(self, pool: str) -> list:
        """Tasks no connected worker can run that need this pool (its resource; tasks without
        restrictions go to the default pool)."""
        res = pool_resource(pool)
        return [ts for ts in self.dask.waiting_tasks()
                if (ts.resource_restrictions and res in ts.resource_restrictions)
                or (not ts.resource_restrictions and pool == self.default_pool)]

    # ------------------------------------------------------------------ actions
    async def _submit(self, pool: str, count: int) -> None:
        spec = self.job_specs[pool]
        new = []
        for _ in range(count):
            self._counter += 1
            name = f"elt-{pool}-{self._counter}"
            group = spec.get("group")
            workers = [f"{name}{g}" for g in group] if group else [name]
            self.jobs[name] = JobRecord(name, pool, workers)
            self.dask.add_job(name, spec)
            new.append(name)
        try:
            await self._sync()
        except Exception as e:
            message = _slurm_message(e)
            for name in new:
                if self.dask.job_id(name):
                    continue  # this one was submitted
                self.jobs.pop(name, None)
                self.dask.drop_job(name)
                self.dask.forget_worker(name)
            self._start_failed_pool(pool, f"sbatch refused a job of pool {pool!r}: {message}",
                                    hint="check partition, account, qos, walltime and memory of the pool "
                                         "(`elt cluster script PROFILE` prints the job script)")
            return
        for name in new:
            job = self.jobs.get(name)
            if job is not None:
                job.job_id = self.dask.job_id(name)
                job.submitted = time.monotonic()
                self._record_job(job)
                self._event(f"{name}: submitted job {job.job_id}", logging.DEBUG)

    async def _retire(self, pool: str, jobs: list[JobRecord], count: int, by_name: dict, now: float) -> None:
        idle_timeout = self.profile.pools[pool].idle_timeout
        pending = [j for j in jobs if not j.seen]
        idle = [j for j in jobs if j.seen and j.idle_since is not None and now - j.idle_since >= idle_timeout]
        chosen = (pending + sorted(idle, key=lambda j: j.idle_since or now))[:count]
        if not chosen:
            return
        addresses = [by_name[n].address for j in chosen for n in j.worker_names if n in by_name]
        if addresses:
            try:
                await self.dask.retire(addresses)
            except Exception as e:  # the job is cancelled anyway
                log.warning("retiring workers %s failed: %s", addresses, e)
        for j in chosen:
            self._event(f"{j.name} (job {j.job_id}): idle above demand, cancelled")
            self.jobs.pop(j.name, None)
            self.dask.drop_job(j.name)
        await self._sync()

    async def _sync(self) -> None:
        """Submit and cancel jobs to match ``self.jobs``. A job whose worker left long enough ago
        for the SpecCluster to close it (distributed's lost-worker-timeout) is dropped first: its
        spec would otherwise be submitted again as a new job with no task waiting for it."""
        for job in list(self.jobs.values()):
            if job.job_id is not None and job.seen and not self.dask.has_job_object(job.name):
                self._event(f"{job.name} (job {job.job_id}) closed after its workers left; not resubmitted")
                self.jobs.pop(job.name, None)
                self.dask.drop_job(job.name)
        await self.dask.sync()

    def _record_job(self, job: JobRecord) -> None:
        if self.jobs_file is None or job.job_id is None:
            return
        try:
            with open(self.jobs_file, "a") as f:
                f.write(f"{job.job_id} {job.pool} {job.name}\n")
        except OSError as e:  # the jobs are still cancelled at a clean shut-down
            log.warning("could not record job %s in %s: %s", job.job_id, self.jobs_file, e)

    # ------------------------------------------------------------------ failures
    def _start_failed(self, job: JobRecord, what: str) -> None:
        where = self.dask.address
        log_file = self.log_dir / f"elt-{job.pool}-{job.job_id}.err"
        iface = self.profile.interface or "default (Dask's choice)"
        hint = (f"the workers connect to the scheduler at {where} (interface {iface}); check that the "
                f"compute nodes reach this host on that port (firewall; `interface` must name a network "
                f"both share, see `ip addr`), that the pool's prologue activates an environment where "
                f"`{self.profile.python or 'python'} -c 'import elt, distributed'` works, and the job's "
                f"log {log_file}")
        tail = _tail(log_file)
        if tail:
            what += f"; end of its log:\n{tail}"
        self._start_failed_pool(job.pool, f"pool {job.pool!r}: {what}", hint=hint)

    def _start_failed_pool(self, pool: str, message: str, hint: Optional[str] = None) -> None:
        self.start_failures[pool] += 1
        self._event(message, logging.ERROR)
        err = DispatchError(message, hint=hint)
        self.last_error[pool] = err
        if self.start_failures[pool] >= MAX_START_FAILURES or "sbatch refused" in message:
            self.broken[pool] = err
            if self.failure is None:
                self.failure = err

    def _fail_waiting_tasks(self) -> None:
        """Tasks waiting for a broken pool fail with its message (instead of waiting forever)."""
        for pool, err in self.broken.items():
            keys = [ts.key for ts in self._waiting_for(pool)]
            if not keys:
                continue
            self.dask.fail_tasks(keys, DispatchError(str(err)))
            self._event(f"{len(keys)} task(s) waiting for broken pool {pool!r} marked failed", logging.ERROR)

    def _event(self, text: str, level: int = logging.INFO) -> None:
        log.log(level, "%s", text)
        self.events.append(text)

    # ------------------------------------------------------------------ inspection
    def summary(self) -> dict[str, dict[str, int]]:
        out = {}
        for pool in self.profile.pools:
            jobs = [j for j in self.jobs.values() if j.pool == pool]
            out[pool] = {"jobs": len(jobs), "connected": sum(j.seen for j in jobs)}
        return out


class _ConnectLog(SchedulerPlugin):
    """Scheduler plugin: names of every worker that ever connected (a worker may come and go
    between two scaling steps)."""

    def __init__(self):
        self.names: set = set()

    def add_worker(self, scheduler, worker: str) -> None:
        ws = scheduler.workers.get(worker)
        if ws is not None:
            self.names.add(ws.name)


def _slurm_message(e: BaseException) -> str:
    """SLURM's own words from dask-jobqueue's 'Command exited with non-zero exit code' error."""
    text = str(e)
    if "stderr:" in text:
        err = text.split("stderr:", 1)[1].strip()
        if err:
            return err
    return text.strip()


def _tail(path: Path, lines: int = 8) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join("    " + line for line in content[-lines:])


def cancel_recorded_jobs(jobs_file: Path, timeout: float = 300.0) -> list[str]:
    """Cancel the worker jobs a previous driver of this run recorded in ``jobs_file`` and still
    queued or running (the driver died without cancelling them: they would go on running its
    tasks while this driver starts the same tasks again), and wait until SLURM lists none of them,
    so that no task runs twice. Returns the ids cancelled; the file is emptied."""
    try:
        recorded = [line.split()[0] for line in Path(jobs_file).read_text().splitlines() if line.strip()]
    except OSError:
        return []
    alive = _active_jobs(recorded)
    if alive:
        subprocess.run(["scancel", *alive], capture_output=True, text=True, timeout=60)
        deadline = time.monotonic() + timeout
        while _active_jobs(alive):
            if time.monotonic() > deadline:
                raise DispatchError(f"worker jobs {', '.join(_active_jobs(alive))} of the previous driver of this "
                                    f"run are still listed by squeue {timeout:.0f} s after scancel",
                                    hint="wait until `squeue --me` no longer lists them (or ask the admins), then "
                                         "run `elt run` again: their tasks would otherwise run twice")
            time.sleep(1.0)
    Path(jobs_file).write_text("")
    return alive


def _active_jobs(ids: list[str]) -> list[str]:
    """Those of ``ids`` that squeue lists in an active state."""
    if not ids:
        return []
    out = subprocess.run(["squeue", "--me", "-h", "-o", "%i %T"], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise DispatchError(f"squeue failed: {out.stderr.strip()}", hint="check that SLURM is reachable (`squeue --me`)")
    listed = dict(line.split(None, 1) for line in out.stdout.splitlines() if line.strip())
    return [i for i in ids if listed.get(i, "").strip() in ACTIVE_STATES]
