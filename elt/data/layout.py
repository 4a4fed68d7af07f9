"""Every path of a run directory, in one place.

    RUN_DIR/
      state.db                 run state (SQLite): iteration records, finished tasks, meta
      journal.log              one JSON line per task start/end (who ran what, where, when)
      driver.lock              held by the driver of the run (flock)
      data/imported.extxyz     system.initial_data, as imported
      data/init.extxyz         labeled perturbed copies of the start structures
      data/iter_NNN.extxyz     the labels of iteration NNN
      iter_NNN/KIND/NAME-ID8/  one folder per train/explore/evaluate task
      label/ID/                one folder per label task (shared by all iterations: a frame is labeled once)
      model/                   the final ensemble (what elt.load_potential takes): the members'
                               checkpoints (deepmd: member_I.pt) and potential.json (kind, member files)
      slurm_jobs.txt           SLURM worker jobs of the driver (cancelled by the next driver if it died)
      report/                  what `elt report` writes
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

INITIAL_FILES = ("imported.extxyz", "init.extxyz")
MODEL_MANIFEST = "potential.json"  # in a model folder: {"kind": KIND, "members": [FILE, ...]}


def recorded_origin(records: list[dict], tasks: list[dict]) -> Path | None:
    """Where a run was made, read off the absolute paths its state recorded (the first iteration's
    data file, else a finished train, walker or label task); None when nothing is recorded yet."""
    for r in records:
        if r.get("data_file"):
            return Path(r["data_file"]).parent.parent        # RUN/data/iter_NNN.extxyz
    for t in tasks:
        res = t.get("result") or {}
        if t["kind"] == "train" and res.get("checkpoint"):
            return Path(res["checkpoint"]).parents[3]        # RUN/iter_NNN/train/NAME/member_I.pt
        if t["kind"] == "explore" and res.get("model_devi_file"):
            return Path(res["model_devi_file"]).parents[3]   # RUN/iter_NNN/explore/NAME/model_devi.out
        if t["kind"] == "label" and res.get("file"):
            return Path(res["file"]).parents[2]              # RUN/label/ID/labeled.extxyz
    return None


def _rebase(p: Path, old: Path, new: Path) -> Path:
    try:
        return new / p.relative_to(old)
    except ValueError:
        return p


@dataclass(frozen=True)
class RunLayout:
    """The paths of the run directory ``run_dir``. ``origin`` is where the run was made: the state
    records absolute paths there (checkpoints, a walker's files) and task ids are derived from
    them, so a run that was moved or copied maps them with :meth:`here` (to open the files) and
    :meth:`as_recorded` (to derive the same ids); None: the run was made in ``run_dir``."""

    run_dir: Path
    origin: Path | None = None

    def __post_init__(self):
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        object.__setattr__(self, "origin", Path(self.origin) if self.origin is not None else self.run_dir)

    def here(self, recorded: str | Path) -> Path:
        """A path the state recorded, in this run directory (unchanged when it lies outside the run)."""
        return _rebase(Path(recorded), self.origin, self.run_dir)

    def as_recorded(self, path: str | Path) -> str:
        """A path in this run directory as the state records it (under the run's origin)."""
        return str(_rebase(Path(path), self.run_dir, self.origin))

    @property
    def state_db(self) -> Path:
        return self.run_dir / "state.db"

    @property
    def journal(self) -> Path:
        return self.run_dir / "journal.log"

    @property
    def lock(self) -> Path:
        return self.run_dir / "driver.lock"

    @property
    def slurm_jobs(self) -> Path:
        return self.run_dir / "slurm_jobs.txt"

    @property
    def data_dir(self) -> Path:
        return self.run_dir / "data"

    @property
    def imported_data(self) -> Path:
        return self.data_dir / INITIAL_FILES[0]

    @property
    def initial_data(self) -> Path:
        return self.data_dir / INITIAL_FILES[1]

    def initial_files(self) -> list[Path]:
        """The initial data files that exist, in data-set order."""
        return [p for p in (self.imported_data, self.initial_data) if p.exists()]

    def iteration_data(self, iteration: int) -> Path:
        return self.data_dir / f"iter_{iteration:03d}.extxyz"

    def data_file(self, recorded: str | Path) -> Path:
        """A data file recorded in the state, found by its name in this run directory (the run may
        have been copied or moved since); the recorded path when no such file is here."""
        p = self.data_dir / Path(recorded).name
        return p if p.exists() else Path(recorded)

    def task_dir(self, iteration: int, kind: str, name: str, task_id: str) -> Path:
        return self.run_dir / f"iter_{iteration:03d}" / kind / f"{name}-{task_id[:8]}"

    def explore_dir(self, iteration: int, folder: str) -> Path:
        return self.run_dir / f"iter_{iteration:03d}" / "explore" / folder

    def label_dir(self, task_id: str) -> Path:
        return self.run_dir / "label" / task_id

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    def model_member(self, name: str) -> Path:
        """The final ensemble's member checkpoint ``name`` (the file name its plugin gave it)."""
        return self.model_dir / name

    @property
    def report_dir(self) -> Path:
        return self.run_dir / "report"
