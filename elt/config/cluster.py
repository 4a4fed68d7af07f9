"""Cluster profiles: where and how tasks run (never what). Kept apart from workflow.yaml."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import yaml
from pydantic import Field, TypeAdapter, ValidationError

from elt.config.base import Strict, format_validation_error
from elt.errors import ConfigError

TASK_KINDS = ("train", "explore", "label")


class LocalProfile(Strict):
    """A Dask LocalCluster of worker processes on this machine."""

    kind: Literal["local"] = Field("local", description="Local worker processes.")
    n_workers: Optional[int] = Field(None, ge=1, description="Worker processes; default: the number of CPU cores.")
    threads_per_worker: int = Field(1, ge=1, description="Threads per worker process (1 is fastest for these tasks).")
    memory_limit: str = Field("auto", description="Memory limit per worker (Dask syntax, e.g. '4GB', or 'auto').")
    label_threads: int = Field(1, ge=1, description="OMP threads a DFT label task may use.")
    dashboard: bool = Field(False, description="Start Dask's dashboard (on a free port).")

    def workers(self) -> int:
        return self.n_workers or (os.cpu_count() or 1)


class SlurmPool(Strict):
    """One pool of SLURM worker jobs (dask-jobqueue SLURMCluster) for some task kinds."""

    kinds: list[Literal["train", "explore", "label"]] = Field(
        default_factory=lambda: list(TASK_KINDS), description="Task kinds this pool runs.")
    partition: Optional[str] = Field(None, description="#SBATCH --partition")
    account: Optional[str] = Field(None, description="#SBATCH --account")
    qos: Optional[str] = Field(None, description="#SBATCH --qos")
    walltime: str = Field("01:00:00", description="Job walltime HH:MM:SS; workers stop a little before it.")
    cores: int = Field(1, ge=1, description="Cores per job.")
    memory: str = Field("2GB", description="Memory per job.")
    processes: int = Field(1, ge=1, description="Dask worker processes per job.")
    prologue: list[str] = Field(default_factory=list, description="Shell lines run before the worker starts (module load, source venv/bin/activate).")
    extra_sbatch: list[str] = Field(default_factory=list, description="Extra '#SBATCH ...' directives, e.g. '--gres=gpu:1'.")
    min_jobs: int = Field(0, ge=0, description="Adaptive scaling: fewest jobs.")
    max_jobs: int = Field(4, ge=1, description="Adaptive scaling: most jobs.")
    label_threads: int = Field(1, ge=1, description="OMP threads of a DFT label task.")
    launcher: Optional[str] = Field(None, description="MPI launcher prefix for CP2K, e.g. 'srun --mpi=pmix' or 'mpirun -n 4'.")
    max_task_attempts: int = Field(3, ge=1, description="A task that kills this many workers is marked failed.")


class SlurmProfile(Strict):
    """SLURM through dask-jobqueue; one pool per group of task kinds."""

    kind: Literal["slurm"] = Field(description="SLURM batch jobs running Dask workers.")
    interface: Optional[str] = Field(None, description="Network interface the workers and scheduler use (e.g. ib0; 'lo' on one machine).")
    python: Optional[str] = Field(None, description="Python executable on the compute nodes; default: this one.")
    local_directory: Optional[str] = Field(None, description="Scratch directory for workers.")
    log_directory: Optional[str] = Field(None, description="Where job stdout/stderr go; default: RUN_DIR/slurm-logs.")
    connect_timeout: float = Field(300.0, gt=0, description="Seconds to wait for the first worker before giving up.")
    scheduler_options: dict = Field(default_factory=dict, description="Extra options for the Dask scheduler (e.g. {port: 8786}).")
    pools: dict[str, SlurmPool] = Field(default_factory=lambda: {"default": SlurmPool()},
                                        description="Named pools; each task kind must belong to exactly one pool.")


class AddressProfile(Strict):
    """Connect to a Dask scheduler that is already running."""

    kind: Literal["address"] = Field(description="An existing Dask scheduler.")
    address: str = Field(description="Scheduler address, e.g. tcp://10.0.0.5:8786")
    label_threads: int = Field(1, ge=1, description="OMP threads of a DFT label task.")


ClusterProfile = Annotated[Union[LocalProfile, SlurmProfile, AddressProfile], Field(discriminator="kind")]
_ADAPTER = TypeAdapter(ClusterProfile)

PROFILE_DIR = Path(__file__).resolve().parents[2] / "cluster_profiles"


def parse_profile(data: dict, source: str = "cluster profile"):
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'kind' key, received {type(data).__name__}",
                          hint="e.g. {kind: local, n_workers: 2}")
    data = dict(data)
    data.setdefault("kind", "local")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as e:
        raise format_validation_error(e, source) from None


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
            try:
                data = yaml.safe_load(c.read_text()) or {}
            except yaml.YAMLError as e:
                raise ConfigError(f"{c}: not valid YAML: {e}") from None
            return parse_profile(data, str(c))
    if ref == "local":
        return LocalProfile()
    raise ConfigError(f"cluster profile {ref!r} not found",
                      hint="give a path to a profile YAML, a name in cluster_profiles/ (local, slurm), or an inline mapping")
