"""Typed, versioned records of what crosses a task boundary or is stored in the run state.

A task function takes its inputs as records and returns a record dumped to JSON (``model_dump``),
which :func:`elt.engine.tasks.run_in_dir` stores in the task's ``result.json`` and the driver
stores in ``state.db``; the driver reads it back with ``Record.model_validate``. ``version`` says
which layout a stored record has; a record written before the field existed reads as version 1.

Task ids are derived from records (:func:`ident`): the version is left out, so a new version of a
record that says the same thing keeps its task ids (finished work is reused across upgrades).
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any, ClassVar, Iterable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from elt.data.modeldevi import CLASSES


def ident(obj: Any) -> Any:
    """What task ids and run fingerprints are derived from: a record's or config section's
    :meth:`ident`, another model's JSON dump, containers item by item, paths as text."""
    if hasattr(obj, "ident"):
        return obj.ident()
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, (list, tuple)):
        return [ident(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): ident(x) for k, x in obj.items()}
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


def fields_ident(model: BaseModel, added: Iterable[str] = (), exclude: Iterable[str] = ()) -> dict:
    """A model's fields as ids see them: without excluded ones and without the fields ``added``
    after runs were made while they hold their default (so those runs keep their task ids)."""
    out = {}
    for name, field in type(model).model_fields.items():
        if field.exclude or name in exclude:
            continue
        v = getattr(model, name)
        if name in added and v == field.get_default(call_default_factory=True):
            continue
        out[name] = ident(v)
    return out


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # fields added after runs were made: left out of task ids while they hold their default
    ADDED: ClassVar[frozenset[str]] = frozenset()

    version: int = Field(1, description="Layout version of this record.")

    def ident(self) -> dict:
        """What task ids are derived from: the content without the version."""
        return fields_ident(self, self.ADDED, exclude={"version"})


class TaskResult(Record):
    """Fields that :func:`elt.engine.tasks.run_in_dir` adds to every task's result."""

    seconds: float = Field(0.0, description="Wall time inside the task (s).")
    host: Optional[str] = Field(None, description="Host the task ran on.")
    pid: Optional[int] = Field(None, description="Worker process id.")
    slurm_job_id: Optional[str] = Field(None, description="SLURM job of the worker, if any.")
    reused: bool = Field(False, description="The result came from an existing result.json (work done before a crash).")
    cache: bool = Field(True, description="Whether the result is kept in result.json (infrastructure failures are not).")


# ------------------------------------------------------------------ exploration
class WalkerSpec(Record):
    """One MD walker of an iteration."""

    id: str = Field(description="Walker name, unique in its iteration (e.g. s0-T300-w0).")
    temperature: float = Field(description="Thermostat temperature (K).")
    pressure: Optional[float] = Field(None, description="Barostat pressure (GPa) for npt, else None.")
    seed: int = Field(description="Seed of the walker's velocities and thermostat noise.")
    iteration: int = Field(description="Iteration the walker belongs to.")


class SelectionLevels(Record):
    """Trust levels and per-walker selection rules an explorer applies next to its trajectory."""

    ADDED = frozenset({"calibration"})

    lo: float = Field(description="Lower trust level on the max force deviation (eV/Å).")
    hi: float = Field(description="Upper trust level (eV/Å): frames at or above it are failed, never labeled.")
    elo: Optional[float] = Field(None, description="Lower level on the energy deviation per atom (eV), if used.")
    ehi: Optional[float] = Field(None, description="Upper level on the energy deviation per atom (eV), if used.")
    max_per_walker: Optional[int] = Field(None, description="Most candidates one walker keeps.")
    strategy: str = Field("random", description="How a walker thins its candidates: random | highest | fps.")
    calibration: int = Field(0, ge=0, description="Frames below hi, not candidates, drawn at random and kept with the ensemble's prediction so the driver can label some to calibrate the deviation on an unrestricted sample.")



class Candidate(Record):
    index: int = Field(description="Position of the frame in the walker's candidates.extxyz.")
    step: int = Field(description="MD step of the frame.")
    frame_id: str = Field(description="Content hash of the frame.")
    max_devi_f: float = Field(description="Max force deviation of the frame (eV/Å).")
    devi_e: float = Field(description="Energy deviation per atom of the frame (eV).")


class ExploreResult(TaskResult):
    """What one walker produced (files stay in the task folder)."""

    walker: str = Field(description="WalkerSpec.id.")
    n_frames: int = Field(description="Recorded frames.")
    counts: dict[str, int] = Field(description=f"Frames per class ({', '.join(CLASSES)}).")
    stop_reason: str = Field(description="Why the walker ended (completed, above_trust_hi, nan, too_close, energy_spike).")
    steps_done: int = Field(description="Last MD step recorded.")
    candidates: list[Candidate] = Field(description="The frames the walker kept as candidates.")
    calibration: list[Candidate] = Field(default_factory=list, description="Random frames below hi that are not candidates (SelectionLevels.calibration of them), in the same candidates file after the candidates.")
    features_file: Optional[str] = Field(None, description="candidates_desc.npy (fps only): one descriptor vector per candidate.")
    bias: Optional[str] = Field(None, description="Name of the bias calculator the MD followed, if any.")
    hills: int = Field(0, description="Metadynamics hills deposited.")
    beyond_frames: int = Field(0, description="Recorded frames at or above trust_hi that did not end the walker (stage beyond_hi: continue or restart); they are failed, never candidates.")
    restarts: int = Field(0, description="Times the walker went back to its last frame below trust_hi (beyond_hi: restart).")
    max_devi_f_max: Optional[float] = Field(None, description="Largest max force deviation of the walker (eV/Å).")
    candidates_file: str = Field(description="candidates.extxyz of the walker.")
    model_devi_file: str = Field(description="model_devi.out of the walker.")


# ------------------------------------------------------------------ training and labeling
class ExecSettings(Record):
    """Where-and-how settings of a label task, from the cluster profile (never from the workflow):
    the labelers and the clusters share this one model."""

    threads: int = Field(1, description="Threads of one calculation (OMP_NUM_THREADS, PySCF's lib.num_threads).")
    launcher: Optional[str] = Field(None, description='MPI launcher put before the command, e.g. "mpirun -n 4" (CP2K).')
    command: Optional[str] = Field(None, description='The code\'s executable, e.g. "cp2k.psmp".')



class TrainResult(TaskResult):
    checkpoint: str = Field(description="Path of the member's checkpoint.")
    metrics: dict = Field(description="The potential plugin's training metrics (see potentials/base.py).")
    member: int = Field(description="Index of the member in the ensemble.")


class LabelResult(TaskResult):
    """One frame's label, or a classified failure (physics: the method failed on this frame and
    will fail again; otherwise infrastructure, tried again on resume)."""

    status: Literal["ok", "failed"] = Field(description="ok: labeled.extxyz written; failed: see reason.")
    attempts: int = Field(1, description="Calculations tried.")
    file: Optional[str] = Field(None, description="labeled.extxyz (status ok).")
    energy: Optional[float] = Field(None, description="Energy of the label (eV).")
    info: dict = Field(default_factory=dict, description="Labeler-specific facts (SCF cycles, method, ...).")
    physics: bool = Field(False, description="The failure is the method's on this frame (not retried).")
    reason: Optional[str] = Field(None, description="Failure class, e.g. scf_not_converged.")
    message: Optional[str] = Field(None, description="What went wrong, for the user.")
    workdir: Optional[str] = Field(None, description="Task folder with the code's input and output.")


# ------------------------------------------------------------------ the run state
class IterationRecord(Record):
    """The summary of one finished iteration, as ``state.db`` stores it (one JSON row per
    iteration; reports, ``elt status`` and the stopping rule read it). Records written before a
    field existed read with its default."""

    iteration: int
    stage: int = Field(description="Index of the stage the iteration explored.")
    stage_name: str
    temperatures: list[Union[int, float]] = Field(description="The stage's temperatures (K).")
    pressures: Optional[list[Union[int, float]]] = Field(None, description="The stage's pressures (GPa), npt only.")
    trust_lo: Optional[float] = Field(None, description="Lower trust level in force (eV/Å; set by the adaptive lo where used).")
    trust_hi: Optional[float] = Field(None, description="Upper trust level (eV/Å).")
    energy_trust_lo: Optional[float] = Field(None, description="Lower level on the energy deviation per atom (eV).")
    energy_trust_hi: Optional[float] = Field(None, description="Upper level on the energy deviation per atom (eV).")
    levels: Optional[dict] = Field(None, description="How auto levels were derived (elt.sampling.levels.Levels); None when fixed.")
    calibration_labels: int = Field(0, description="Random explored frames labeled to calibrate the deviation.")
    accurate_threshold: float = Field(description="The stage's accurate ratio that counts towards convergence.")
    calibrated: bool = Field(True, description="The levels can be trusted (fixed, or auto with a calibration).")
    walkers: int
    walker_failures: list[dict] = Field(default_factory=list, description="Walkers that failed: walker, message.")
    frames: int = Field(description="Recorded frames of every walker.")
    accurate: int
    candidate: int
    failed: int
    accurate_ratio: float
    candidate_ratio: float
    failed_ratio: float
    stop_reasons: dict[str, int] = Field(description="Walkers per stop reason.")
    candidates: int = Field(description="Candidates in the pool the labels were chosen from.")
    selected: int = Field(description="Frames sent to labeling (calibration frames included).")
    labels_ok: int
    labels_failed: int
    failures: list[dict] = Field(description="Failed labels: task, frame_id, reason, message, physics, workdir.")
    dataset_size: int = Field(description="Labeled frames in the data set after this iteration.")
    train: dict = Field(description="The members' mean training metrics (rmse_e eV/atom, rmse_f eV/Å on train/valid).")
    members: list[str] = Field(description="Checkpoints of the members that explored.")
    explore_tasks: list[str] = Field(description="Walker folders under iter_NNN/explore/.")
    data_file: str = Field(description="The iteration's labeled frames (data/iter_NNN.extxyz).")
    data_sha256: Optional[str] = Field(None, description="Digest of data_file as written.")
    label_tasks: Optional[list[str]] = Field(None, description="Label task ids of the frames of data_file, in order (rebuilds it).")
    stuck: bool = False
    seconds: dict[str, float] = Field(default_factory=dict, description="Wall time per phase (s).")
    finished: float = Field(0.0, description="Unix time the iteration ended.")

    def stored(self) -> dict:
        """The row ``state.db`` keeps (JSON types)."""
        return self.model_dump(mode="json")
