"""Local Dask cluster: worker processes on this machine, one thread each by default."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading

from elt.dispatch.base import Cluster
from elt.errors import DispatchError
from elt.registry import register


@register("cluster", "local")
class LocalDaskCluster(Cluster):
    def start(self):
        from distributed import Client, LocalCluster

        # worker processes ignore Ctrl-C: the driver alone stops the run cleanly, and a terminal's
        # SIGINT to the whole process group must not make every worker print a traceback
        # (an ignored signal stays ignored in the processes started from here)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
        try:
            self.cluster = LocalCluster(**self.cluster_options())
            self.client = Client(self.cluster)
        except Exception as e:  # pragma: no cover - environment specific
            raise DispatchError(f"could not start a local Dask cluster: {e}",
                                hint="check free memory and that this machine allows worker processes") from e
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        return self.client

    def cluster_options(self) -> dict:
        """Keyword arguments of ``distributed.LocalCluster`` (a plugin's subclass may add some,
        e.g. ``env`` for the worker processes)."""
        p = self.profile
        return dict(
            n_workers=p.workers(),
            threads_per_worker=p.threads_per_worker,
            processes=True,
            memory_limit=p.memory_limit,
            dashboard_address=":0",
            # workers log nothing below CRITICAL: task errors reach the driver through their
            # futures, and shutdown chatter (heartbeats to a closing scheduler) is not the user's
            silence_logs=logging.CRITICAL,
        )

    def close(self):
        # workers first, then the client, then the scheduler: a worker never heartbeats to a
        # scheduler that is already gone
        cluster = getattr(self, "cluster", None)
        if cluster is not None and self.client is not None:
            with contextlib.suppress(Exception):
                self.client.retire_workers(close_workers=True)
        super().close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()
            self.cluster = None

    def worker_slots(self, kind: str) -> int:
        # from the profile, not from the workers up now: the walkers' batches (and so their task
        # ids) must come out the same on a resume
        return self.profile.workers() * self.profile.threads_per_worker

    def describe(self):
        p = self.profile
        return f"local Dask cluster, {p.workers()} worker processes × {p.threads_per_worker} thread"


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def no_main_reimport():
    """While inside, spawned worker processes do not re-run the user's ``__main__`` script (spawn
    re-imports it to find functions defined there; elt's tasks live in elt's modules). This is what
    lets ``elt.run()`` be called from a plain script without an ``if __name__ == "__main__":`` guard."""
    import multiprocessing

    main = sys.modules.get("__main__")
    if main is None or multiprocessing.parent_process() is not None:  # nothing to hide in a worker
        yield
        return
    saved = {k: getattr(main, k) for k in ("__file__", "__spec__") if hasattr(main, k)}
    main.__spec__ = None  # spawn finds the script by its spec, else by its __file__
    if "__file__" in saved:
        del main.__file__
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(main, k, v)
