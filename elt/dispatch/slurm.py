"""SLURM through dask-jobqueue: one Dask scheduler in the driver, worker jobs in pools.

Design (see docs/slurm.md):

- the driver runs one Dask scheduler (a ``SpecCluster`` without a fixed worker spec) and one
  ``distributed.Client``;
- each pool of the profile is one kind of SLURM job (dask-jobqueue's ``SLURMJob``: partition,
  account, walltime, cores, memory, prologue ...). Its workers offer the Dask resource
  ``pool-<name>``; :meth:`SlurmDaskCluster.submit_options` asks for that resource, so a task
  of kind K runs only on the pool that owns K (DFT jobs stay off training workers and vice
  versa);
- :class:`elt.dispatch.slurm_pools.PoolScaler` submits, replaces and cancels jobs per pool;
- workers live ``--lifetime`` = walltime - margin (± margin/2, staggered) and then retire
  cleanly: their tasks move to other workers, and new jobs take over.

:func:`job_scripts` renders the job script of every pool without SLURM (``elt cluster script``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

from elt.dispatch import QUIET_DASK
from elt.dispatch.base import Cluster
from elt.dispatch.dask_adapter import SpecClusterAdapter
from elt.data.layout import RunLayout
from elt.dispatch.slurm_pools import PoolScaler, cancel_recorded_jobs, pool_resource
from elt.errors import ConfigError, DispatchError
from elt.records import ExecSettings
from elt.registry import register

log = logging.getLogger(__name__)

SLURM_COMMANDS = ("sbatch", "squeue", "scancel")
PLACEHOLDER_ADDRESS = "tcp://SCHEDULER-ADDRESS:PORT"


def _log_dir(profile, run_dir: Optional[Path]) -> str:
    if profile.log_directory:
        return profile.log_directory
    return str(Path(run_dir) / "slurm-logs") if run_dir is not None else "slurm-logs"


def slurm_memory(text: str, divide: int = 1) -> str:
    """A size (divided by ``divide``) as SLURM's --mem wants it: '32GB' and '32GiB' → '32G'
    (SLURM's G is GiB; the Dask worker's memory limit stays at 32e9 bytes, a little below, which
    leaves room)."""
    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)", text.strip(), re.IGNORECASE)
    number, unit = float(m.group(1)) / divide, (m.group(2) or "").upper()
    if not unit:  # plain bytes
        return f"{max(1, math.ceil(number / 2**20))}M"
    if number != int(number):  # 1.5GB -> 1536M
        lower = {"K": "K", "M": "K", "G": "M", "T": "G"}[unit]
        return f"{math.ceil(number * 1024)}{lower}"
    return f"{int(number)}{unit}"


def job_options(profile, pool_name: str, log_dir: str) -> dict[str, Any]:
    """Keyword arguments of dask-jobqueue's ``SLURMJob`` for one pool of ``profile``."""
    pool = profile.pools[pool_name]
    lifetime, stagger = pool.lifetime()
    directives = [f"-o {log_dir}/elt-{pool_name}-%j.out", f"-e {log_dir}/elt-{pool_name}-%j.err"]
    skip: list[str] = []
    if pool.ntasks > 1:  # MPI ranks: SLURMJob's "-n 1" and "--cpus-per-task=cores" give way
        skip = ["#SBATCH -n 1", "--cpus-per-task"]
        directives += [f"--ntasks={pool.ntasks}", f"--cpus-per-task={pool.cores // pool.ntasks}"]
    if pool.memory_request != "per-job":  # sites that refuse --mem
        skip.append("--mem")
        if pool.memory_request == "per-cpu":
            directives.append(f"--mem-per-cpu={slurm_memory(pool.memory, divide=pool.cores)}")
    if pool.qos:
        directives.append(f"--qos={pool.qos}")
    directives += pool.extra_sbatch
    # BLAS/OpenMP threads of the worker's tasks; MPI programs under a launcher get 1 per rank
    omp = 1 if pool.launcher else pool.threads_per_task
    prologue = [f"export OMP_NUM_THREADS={omp}", *pool.prologue]
    if os.environ.get(QUIET_DASK):  # elt quieted Dask for its terminal; a job's log keeps its warnings
        prologue.insert(0, f"unset DASK_LOGGING__DISTRIBUTED {QUIET_DASK}")
    return dict(
        cores=pool.cores,
        memory=pool.memory,
        job_mem=slurm_memory(pool.memory),
        job_directives_skip=skip,
        processes=pool.processes,
        queue=pool.partition,
        account=pool.account,
        walltime=pool.walltime,
        job_name=f"elt-{pool_name}",
        interface=profile.interface,
        python=profile.python or sys.executable,
        local_directory=profile.local_directory,
        death_timeout=int(profile.death_timeout),
        log_directory=None,  # -o/-e above: nothing is created on disk just to render a script
        job_script_prologue=prologue,
        job_extra_directives=directives,
        worker_extra_args=["--resources", f"{pool_resource(pool_name)}={pool.slots_per_worker()}",
                           "--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"],
    )


def _slurm_job_class():
    """dask-jobqueue's SLURMJob. Importing it imports dask_jobqueue.runner, which replaces Python's
    SIGINT handler with ``sys.exit`` (for its own runner scripts): Ctrl-C of the driver would then
    exit 1 silently instead of raising KeyboardInterrupt (message, exit 130, jobs cancelled), so
    the handler found before the import is put back."""
    import signal
    import threading

    before = signal.getsignal(signal.SIGINT)
    from dask_jobqueue.slurm import SLURMJob

    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not before:
        signal.signal(signal.SIGINT, before if before is not None else signal.default_int_handler)
    return SLURMJob


def job_spec(profile, pool_name: str, log_dir: str) -> dict[str, Any]:
    """A ``SpecCluster`` worker spec: one SLURM job of the pool (a group when processes > 1)."""
    SLURMJob = _slurm_job_class()
    spec: dict[str, Any] = {"cls": SLURMJob, "options": job_options(profile, pool_name, log_dir)}
    processes = profile.pools[pool_name].processes
    if processes > 1:
        spec["group"] = [f"-{i}" for i in range(processes)]
    return spec


def job_scripts(profile, run_dir: Optional[Path] = None,
                scheduler_address: str = PLACEHOLDER_ADDRESS) -> dict[str, str]:
    """The job script each pool would submit, by pool name. Nothing is submitted or created."""
    SLURMJob = _slurm_job_class()
    if getattr(profile, "kind", None) != "slurm":
        raise ConfigError(f"cluster profile of kind {getattr(profile, 'kind', '?')!r} submits no job scripts",
                          hint="give a profile with 'kind: slurm' (e.g. the shipped `slurm`, or the slurm.yaml that `elt init` writes)")
    log_dir = _log_dir(profile, run_dir)
    return {name: SLURMJob(scheduler_address, name=f"elt-{name}-N", **job_options(profile, name, log_dir)).job_script()
            for name in profile.pools}


def require_slurm() -> None:
    """DispatchError unless sbatch, squeue and scancel are on PATH."""
    missing = [c for c in SLURM_COMMANDS if shutil.which(c) is None]
    if missing:
        raise DispatchError(
            f"SLURM command(s) not found on PATH: {', '.join(missing)}; this machine cannot submit worker jobs",
            hint="run the driver on a login node of the cluster or inside a SLURM job (`module load slurm` "
                 "if your site needs it), or use a local profile; `elt cluster script PROFILE` prints the "
                 "job script without SLURM")


def check_submission(pool_name: str, script: str) -> None:
    """Ask SLURM whether it would accept the pool's job (``sbatch --test-only``, nothing is queued)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix=f"elt-{pool_name}-") as f:
        f.write(script)
        f.flush()
        try:
            out = subprocess.run(["sbatch", "--test-only", f.name], capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            raise DispatchError(f"sbatch --test-only for pool {pool_name!r} did not answer within 60 s",
                                hint="check that slurmctld is up: `sinfo`, `scontrol ping`") from None
    if out.returncode != 0:
        message = (out.stderr.strip() or out.stdout.strip() or f"exit code {out.returncode}")
        raise DispatchError(
            f"SLURM refused the worker job of pool {pool_name!r}: {message}",
            hint="check the pool's partition, account, qos, walltime, cores and memory against `sinfo` and "
                 "`sacctmgr show assoc user=$USER`; `elt cluster script PROFILE` prints the job script")


@register("cluster", "slurm")
class SlurmDaskCluster(Cluster):
    """A SLURM profile (:class:`elt.config.cluster.SlurmProfile`) as one Dask client."""

    cluster = None
    scaler: Optional[PoolScaler] = None
    cancelled: list[str] = []  # job ids of a previous driver cancelled at start

    def start(self):
        from distributed import Client
        from distributed.deploy.spec import SpecCluster
        from distributed.scheduler import Scheduler

        p = self.profile
        require_slurm()
        log_dir = Path(_log_dir(p, self.run_dir))
        log_dir.mkdir(parents=True, exist_ok=True)
        for name, script in job_scripts(p, self.run_dir).items():
            check_submission(name, script)
        specs = {name: job_spec(p, name, str(log_dir)) for name in p.pools}
        jobs_file = RunLayout(self.run_dir).slurm_jobs
        self.cancelled = cancel_recorded_jobs(jobs_file)  # their tasks would run twice

        # Dask's HTTP endpoints listen on a free port; the dashboard only when an address is given
        options = {"protocol": "tcp://", "dashboard": "dashboard_address" in p.scheduler_options,
                   "dashboard_address": ":0", **p.scheduler_options}
        if p.interface and "host" not in options:
            options.setdefault("interface", p.interface)
        try:
            # distributed's own INFO chatter (worker registered ...) stays quiet, as for the local cluster
            self.cluster = SpecCluster(workers={}, scheduler={"cls": Scheduler, "options": options},
                                       name="elt-slurm", silence_logs=logging.ERROR)
        except Exception as e:
            raise DispatchError(f"could not start the Dask scheduler with options {options}: {e}",
                                hint="check `interface` (see `ip addr`) and scheduler_options (port in use?)") from e
        try:
            # a task on more than max_task_attempts dying workers is marked failed (KilledWorker)
            SpecClusterAdapter(self.cluster).set_allowed_failures(p.max_task_attempts - 1)
            self.scaler = PoolScaler(self.cluster, p, specs, log_dir, jobs_file=jobs_file)
            self.cluster.sync(self.scaler.start)
            self.client = Client(self.cluster)
            self._wait_for_min_jobs()
        except BaseException:
            self.close()
            raise
        log.info("%s", self.describe())
        return self.client

    def _wait_for_min_jobs(self) -> None:
        """Wait until each pool with min_jobs > 0 has a connected worker. Raises the first start
        failure; stops waiting (with a warning) when the jobs only wait in the queue."""
        pools = [n for n, pool in self.profile.pools.items() if pool.min_jobs > 0]
        t0 = time.monotonic()
        while pools:
            s = self.scaler
            for name in list(pools):
                if name in s.last_error:
                    raise s.last_error[name]
                if any(j.seen for j in list(s.jobs.values()) if j.pool == name):
                    pools.remove(name)
            waited = time.monotonic() - t0
            if pools and waited > self.profile.connect_timeout:
                running = [j for j in list(s.jobs.values()) if j.pool in pools and j.running_since is not None]
                if not running:
                    log.warning("worker jobs of pool(s) %s still wait in the SLURM queue after %.0f s; "
                                "tasks will start when they run", ", ".join(pools), waited)
                    return
            time.sleep(0.2)

    def check(self) -> None:
        if self.scaler is not None and self.scaler.failure is not None:
            raise self.scaler.failure

    def close(self) -> None:
        super().close()
        if self.cluster is not None:
            if self.scaler is not None:
                try:
                    self.cluster.sync(self.scaler.stop)
                except Exception:
                    pass
            try:
                self.cluster.close()  # cancels every job (scancel) and stops the scheduler
            except Exception as e:
                log.warning("closing the SLURM cluster: %s", e)
            else:  # nothing left for the next driver to cancel
                RunLayout(self.run_dir).slurm_jobs.unlink(missing_ok=True)
            self.cluster = None

    def pool_for(self, kind: str) -> str:
        """The pool that runs tasks of ``kind``; kinds outside train/explore/label (e.g. evaluate)
        run where explore runs."""
        try:
            return self.profile.pool_for(kind)
        except KeyError:
            return self.profile.pool_for("explore")

    def submit_options(self, kind: str) -> dict[str, Any]:
        return {"resources": {pool_resource(self.pool_for(kind)): 1}}

    def worker_slots(self, kind: str) -> int:
        # jobs start on demand: count what the pool may grow to, not the workers up now
        pool = self.profile.pools[self.pool_for(kind)]
        return pool.max_jobs * pool.processes

    def exec_settings(self, kind: str = "label") -> ExecSettings:
        return self.profile.pools[self.pool_for(kind)].exec_settings()

    @property
    def scheduler_address(self) -> Optional[str]:
        return SpecClusterAdapter(self.cluster).address if self.cluster is not None else None

    def describe(self) -> str:
        parts = []
        for name, pool in self.profile.pools.items():
            where = f" on {pool.partition}" if pool.partition else ""
            parts.append(f"{name} ({'/'.join(pool.kinds)}: {pool.min_jobs}-{pool.max_jobs} jobs × "
                         f"{pool.cores} cores, {pool.walltime}{where})")
        addr = f", scheduler {self.scheduler_address}" if self.cluster is not None else ""
        cancelled = (f"; cancelled {len(self.cancelled)} worker job(s) the previous driver of this run left "
                     f"behind ({' '.join(self.cancelled)}) before starting" if self.cancelled else "")
        return "SLURM pools " + "; ".join(parts) + addr + cancelled
