"""Cluster profiles: where and how tasks run (never what). Kept apart from workflow.yaml.

A profile's ``kind`` names a cluster plugin in :mod:`elt.registry` (group ``cluster``): the
built-ins local, slurm and address, or an installed plugin's, whose config model subclasses
:class:`ClusterBase` (or :class:`LabelExec`, for its label-task settings)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from elt.config.base import PluginConfig, Strict, format_validation_error, plugin_section
from elt.errors import ConfigError
from elt.records import ExecSettings

TASK_KINDS = ("train", "explore", "label")


class ClusterBase(PluginConfig):
    """Base of every cluster profile (built-in or a plugin's): ``kind`` names the cluster plugin;
    how work is cut into tasks on this cluster (one definition for every profile)."""

    walkers_per_task: Optional[int] = Field(None, ge=1, description="Most walkers one exploration task runs when the stage's explorer batches walkers (explorer.kind: batched); null: as many as spread the walkers evenly over the workers.")

    def exec_settings(self) -> ExecSettings:
        """Where-and-how settings of label tasks on this cluster (threads, launcher, command)."""
        return ExecSettings()


class LabelExec(ClusterBase):
    """How label tasks start the reference code on this cluster (one definition for every profile)."""

    label_threads: int = Field(1, ge=1, description="OMP threads a DFT label task may use.")
    label_command: Optional[str] = Field(None, description="DFT program command of label tasks (CP2K: default cp2k.psmp; a full path works).")
    launcher: Optional[str] = Field(None, description="Launcher prefix of the DFT program, e.g. 'mpirun -n 2'.")

    def exec_settings(self) -> ExecSettings:
        return ExecSettings(threads=self.label_threads, launcher=self.launcher, command=self.label_command)


class LocalProfile(LabelExec):
    """A Dask LocalCluster of worker processes on this machine."""

    kind: Literal["local"] = Field("local", description="Local worker processes.")
    n_workers: Optional[int] = Field(None, ge=1, description="Worker processes; default: the number of CPU cores.")
    threads_per_worker: int = Field(1, ge=1, description="Threads per worker process (1 is fastest for these tasks).")
    memory_limit: str = Field("auto", description="Memory limit per worker (Dask syntax, e.g. '4GB', or 'auto').")
    dashboard: bool = Field(False, description="Start Dask's dashboard (on a free port).")

    def workers(self) -> int:
        return self.n_workers or (os.cpu_count() or 1)


_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d{1,3}):(\d{2}):(\d{2})$")
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_POOL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def walltime_seconds(text: str) -> int:
    """Seconds in a SLURM walltime ``HH:MM:SS`` or ``D-HH:MM:SS``."""
    m = _WALLTIME.match(text.strip())
    if m is None:
        raise ValueError("walltime must look like HH:MM:SS or D-HH:MM:SS (e.g. 02:00:00, 1-00:00:00)")
    days, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return ((days * 24 + h) * 60 + mi) * 60 + s


class SlurmPool(Strict):
    """One pool of SLURM worker jobs for some task kinds (maps to dask-jobqueue's SLURMJob).

    Each job runs ``processes`` Dask worker processes on ``cores`` cores; a worker runs
    ``cores / processes / threads_per_task`` tasks at a time. Workers stop ``lifetime_margin``
    seconds (± half of it) before the walltime, so that their tasks move elsewhere cleanly.
    """

    kinds: list[Literal["train", "explore", "label"]] = Field(
        default_factory=lambda: list(TASK_KINDS),
        description="Task kinds this pool runs (train, explore, label); each kind in exactly one pool.")
    partition: Optional[str] = Field(None, description="Partition of the worker jobs (#SBATCH -p).")
    account: Optional[str] = Field(None, description="Account charged for the worker jobs (#SBATCH -A).")
    qos: Optional[str] = Field(None, description="Quality of service (#SBATCH --qos).")
    walltime: str = Field("01:00:00", description="Walltime of one worker job, HH:MM:SS or D-HH:MM:SS; "
                          "workers hand over before it ends and new jobs replace them.")
    cores: int = Field(1, ge=1, description="Cores per job (#SBATCH --cpus-per-task).")
    memory: str = Field("2GB", description="Memory per job, e.g. '4GB' (#SBATCH --mem); the Dask workers' "
                        "memory limit.")
    memory_request: Literal["per-job", "per-cpu", "none"] = Field(
        "per-job", description="How the job asks SLURM for memory: per-job (--mem=memory), per-cpu "
        "(--mem-per-cpu=memory/cores, for sites that refuse --mem) or none (the site assigns it by cores).")
    processes: int = Field(1, ge=1, description="Dask worker processes per job; must divide cores.")
    ntasks: int = Field(1, ge=1, description="SLURM tasks per job (#SBATCH --ntasks): 1 for Python work; the "
                        "number of MPI ranks for label programs started with an srun/mpirun launcher "
                        "(cores are then split as --cpus-per-task = cores / ntasks).")
    threads_per_task: int = Field(1, ge=1, description="Cores one task uses (OMP threads of a DFT label, "
                                  "torch threads of training); label tasks receive it as their thread count.")
    prologue: list[str] = Field(default_factory=list, description="Shell lines run in the job before the worker "
                                "starts, e.g. 'module load cp2k', 'source ~/venvs/elt/bin/activate'.")
    extra_sbatch: list[str] = Field(default_factory=list, description="Extra #SBATCH directives, e.g. "
                                    "'--gres=gpu:1' or '--constraint=cpu' ('#SBATCH' prefix optional).")
    label_command: Optional[str] = Field(None, description="DFT program command of label tasks in this pool (CP2K: default cp2k.psmp).")
    launcher: Optional[str] = Field(None, description="MPI launcher prefix of label programs (CP2K), "
                                    "e.g. 'srun --mpi=pmix -n 4' or 'mpirun -n 4'.")
    min_jobs: int = Field(0, ge=0, description="Adaptive scaling: jobs kept even when idle.")
    max_jobs: int = Field(4, ge=1, description="Adaptive scaling: most jobs at once.")
    idle_timeout: float = Field(60.0, ge=0, description="Seconds an idle job above min_jobs is kept before it "
                                "is cancelled.")
    lifetime_margin: Optional[int] = Field(None, ge=0, description="Seconds before the walltime at which "
                                           "workers retire (± half of it, staggered); default: 10% of the "
                                           "walltime, at least 60 s and at most 900 s.")

    def exec_settings(self) -> ExecSettings:
        return ExecSettings(threads=self.threads_per_task, launcher=self.launcher, command=self.label_command)

    @field_validator("kinds")
    @classmethod
    def _kinds(cls, v):
        if not v:
            raise ValueError("a pool needs at least one task kind (train, explore, label)")
        if len(set(v)) != len(v):
            raise ValueError(f"task kinds repeated: {v}")
        return v

    @field_validator("walltime")
    @classmethod
    def _walltime(cls, v):
        walltime_seconds(v)
        return v.strip()

    @field_validator("memory")
    @classmethod
    def _memory(cls, v):
        if not _MEMORY.match(v):
            raise ValueError("memory must be a size such as '4GB', '500MB' or '16GiB'")
        return v.strip()

    @field_validator("extra_sbatch")
    @classmethod
    def _extra(cls, v):
        return [re.sub(r"^#SBATCH\s+", "", line.strip()) for line in v]

    @model_validator(mode="after")
    def _consistent(self):
        if self.min_jobs > self.max_jobs:
            raise ValueError(f"min_jobs ({self.min_jobs}) exceeds max_jobs ({self.max_jobs})")
        if self.cores % self.processes:
            raise ValueError(f"cores ({self.cores}) must be a multiple of processes ({self.processes})")
        if self.cores % self.ntasks:
            raise ValueError(f"cores ({self.cores}) must be a multiple of ntasks ({self.ntasks})")
        if self.threads_per_task > self.cores // self.processes:
            raise ValueError(f"threads_per_task ({self.threads_per_task}) exceeds the cores of one worker "
                             f"process ({self.cores // self.processes} = cores / processes)")
        self.lifetime()
        return self

    def slots_per_worker(self) -> int:
        """Tasks one worker process runs at a time."""
        return (self.cores // self.processes) // self.threads_per_task

    def lifetime(self) -> tuple[int, int]:
        """(lifetime, stagger) in seconds of the Dask workers of one job: lifetime + stagger stays
        below the walltime by at least half the margin."""
        wall = walltime_seconds(self.walltime)
        margin = self.lifetime_margin
        if margin is None:
            margin = min(900, max(60, wall // 10))
        life = wall - margin
        if life < 60:
            raise ValueError(f"walltime {self.walltime} leaves workers {life} s after the lifetime margin of "
                             f"{margin} s; give a walltime of at least {margin + 60} s or a smaller lifetime_margin")
        return life, margin // 2


class SlurmProfile(ClusterBase):
    """SLURM through dask-jobqueue: one Dask scheduler in the driver, worker jobs in pools.

    Every task kind (train, explore, label) belongs to exactly one pool, so DFT jobs stay off
    training workers and vice versa; a pool grows and shrinks between min_jobs and max_jobs with
    the tasks waiting for it.
    """

    kind: Literal["slurm"] = Field(description="SLURM batch jobs running Dask workers.")
    interface: Optional[str] = Field(None, description="Network interface the scheduler listens on and the "
                                     "workers use (e.g. ib0, eth0; 'lo' when everything runs on one machine).")
    python: Optional[str] = Field(None, description="Python executable on the compute nodes; default: the "
                                  "driver's own (right when the prologue activates the same environment).")
    local_directory: Optional[str] = Field(None, description="Node-local scratch directory of the workers "
                                           "(e.g. $TMPDIR or /scratch/$USER).")
    log_directory: Optional[str] = Field(None, description="Where the jobs' stdout/stderr go; default: "
                                         "RUN_DIR/slurm-logs.")
    connect_timeout: float = Field(300.0, gt=0, description="Seconds a running worker job may take to connect "
                                   "to the scheduler before it counts as failed (time pending in the queue "
                                   "does not count).")
    death_timeout: float = Field(120.0, gt=0, description="Seconds a worker waits for a lost scheduler before "
                                 "it exits (so that jobs end when the driver dies).")
    max_task_attempts: int = Field(3, ge=1, description="A task running on this many workers that died is "
                                   "marked failed (KilledWorker) instead of being retried forever.")
    scheduler_options: dict[str, Any] = Field(default_factory=dict, description="Extra keyword arguments of "
                                              "the Dask scheduler, e.g. {port: 8786, dashboard_address: ':8787'}.")
    pools: dict[str, SlurmPool] = Field(default_factory=lambda: {"default": SlurmPool()},
                                        description="Named pools of worker jobs; each task kind in exactly one.")

    @field_validator("pools")
    @classmethod
    def _pools(cls, pools):
        if not pools:
            raise ValueError("at least one pool is needed, e.g. pools: {default: {cores: 1}}")
        for name in pools:
            if not _POOL_NAME.match(name):
                raise ValueError(f"pool name {name!r} must start with a letter and use only letters, "
                                 "digits and '_' (it names jobs and Dask resources)")
        owner: dict[str, str] = {}
        for name, pool in pools.items():
            for kind in pool.kinds:
                if kind in owner:
                    raise ValueError(f"task kind {kind!r} is in pools {owner[kind]!r} and {name!r}; "
                                     "give each kind to one pool (set 'kinds' on every pool)")
                owner[kind] = name
        missing = [k for k in TASK_KINDS if k not in owner]
        if missing:
            raise ValueError(f"no pool runs task kind(s) {', '.join(missing)}; add them to a pool's 'kinds'")
        return pools

    def pool_for(self, kind: str) -> str:
        """Name of the pool that runs task kind ``kind``."""
        for name, pool in self.pools.items():
            if kind in pool.kinds:
                return name
        raise KeyError(kind)


class AddressProfile(LabelExec):
    """Connect to a Dask scheduler that is already running."""

    kind: Literal["address"] = Field(description="An existing Dask scheduler.")
    address: str = Field(description="Scheduler address, e.g. tcp://10.0.0.5:8786")


ClusterProfile = plugin_section("cluster", "local")  # local, slurm, address or an installed cluster plugin
_ADAPTER = TypeAdapter(ClusterProfile)

PROFILE_DIR = Path(__file__).resolve().parents[1] / "cluster_profiles"  # package data; ./cluster_profiles links here


def is_profile_file(path: Path) -> bool:
    """A YAML file that is a cluster profile (a mapping with ``kind`` and no workflow section), not a workflow."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "kind" in data and "system" not in data


def yaml_error(path: Path, text: str, err: Exception) -> ConfigError:
    """A ConfigError for a YAML syntax error, with a hint for the usual cause (tabs)."""
    hint = None
    if "\t" in text:
        line = next(i for i, x in enumerate(text.splitlines(), 1) if "\t" in x)
        hint = f"YAML does not allow tabs for indentation (the first is on line {line}): indent with spaces"
    return ConfigError(f"{path}: not valid YAML: {err}", hint=hint)


def parse_profile(data: dict, source: str = "cluster profile"):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'kind' key, received {type(data).__name__}",
                          hint="e.g. {kind: local, n_workers: 2}")
    data = dict(data)
    data.setdefault("kind", "local")
    try:
        profile = _ADAPTER.validate_python(data)
    except ValidationError as e:
        raise format_validation_error(e, source) from None
    if not isinstance(profile, ClusterBase):
        raise ConfigError(f"{source} is not valid (1 problem):", problems=[
            f"kind {profile.kind!r}: the cluster plugin's config model {type(profile).__name__} must subclass "
            "elt.config.cluster.ClusterBase (or LocalProfile, LabelExec)"], hint="fix or update the cluster plugin")
    return profile


def load_profile(ref: str | os.PathLike | dict | None, base_dir: Path | None = None):
    """Resolve a profile reference: None (local defaults), an inline mapping, a file path, or a name
    looked up as ``NAME.yaml`` next to the workflow, in ``./cluster_profiles`` and in the shipped
    ``cluster_profiles/``."""
    if ref is None:
        return LocalProfile()
    if isinstance(ref, dict):
        return parse_profile(ref)
    ref = str(ref)
    candidates = [Path(ref)]
    if base_dir is not None:
        candidates += [base_dir / ref, base_dir / "cluster_profiles" / f"{ref}.yaml", base_dir / f"{ref}.yaml"]
    candidates += [Path("cluster_profiles") / f"{ref}.yaml", PROFILE_DIR / f"{ref}.yaml"]
    for c in candidates:
        if c.is_file():
            text = c.read_text()
            try:
                data = yaml.safe_load(text) or {}
            except yaml.YAMLError as e:
                raise yaml_error(c, text, e) from None
            return parse_profile(data, str(c))
    if ref == "local":
        return LocalProfile()
    shipped = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.yaml")))
    raise ConfigError(f"cluster profile {ref!r} not found",
                      hint=f"give a path to a profile YAML, the name of a shipped profile ({shipped}), or an inline "
                           "mapping; `elt init bulk-metal DIR` writes local.yaml and slurm.yaml to edit")
