"""Dispatch: turn a cluster profile into a Dask client.

A cluster plugin (registered under group ``cluster`` with the profile's ``kind``) is a subclass of
:class:`Cluster`. The engine uses it as a context manager and asks it only five things: the
client, the submit options for a task kind (``train``, ``explore``, ``label``), the execution
settings of label tasks, a one-line description, and (while it waits for tasks) ``check()``,
which raises a DispatchError when the cluster cannot make progress (e.g. SLURM worker jobs that
never connect).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from elt.records import ExecSettings


class Cluster(ABC):
    def __init__(self, profile, run_dir: Path):
        self.profile = profile
        self.run_dir = Path(run_dir)
        self.client = None

    @abstractmethod
    def start(self):
        """Start (or connect to) the cluster; return a ``distributed.Client``."""

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.close()
            except Exception:
                pass
            self.client = None

    def submit_options(self, kind: str) -> dict[str, Any]:
        """Extra ``client.submit`` keyword arguments for a task kind (resources, workers...)."""
        return {}

    def worker_slots(self, kind: str) -> int:
        """How many tasks of ``kind`` can run at once (how many batches to make of the walkers).
        Clusters whose size the profile fixes say it from the profile, so that a resume makes the
        same batches; here, an existing scheduler, it is what the scheduler has now."""
        try:
            return max(1, sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values()))
        except Exception:
            return 1

    def exec_settings(self, kind: str = "label") -> ExecSettings:
        return self.profile.exec_settings()

    def describe(self) -> str:
        return type(self).__name__

    def check(self) -> None:
        """Raise :class:`elt.errors.DispatchError` if tasks cannot run (workers never connect,
        submissions refused). Cheap; the engine may call it every few seconds while it waits."""

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_cluster(profile, run_dir: Path) -> Cluster:
    from elt import registry

    return registry.get("cluster", profile.kind)(profile, run_dir)
