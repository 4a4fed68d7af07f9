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
      report/                  what `elt report` writes
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

INITIAL_FILES = ("imported.extxyz", "init.extxyz")
MODEL_MANIFEST = "potential.json"  # in a model folder: {"kind": KIND, "members": [FILE, ...]}


@dataclass(frozen=True)
class RunLayout:
    run_dir: Path

    def __post_init__(self):
        object.__setattr__(self, "run_dir", Path(self.run_dir))

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
