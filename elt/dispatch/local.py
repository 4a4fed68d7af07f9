"""Local Dask cluster: worker processes on this machine, one thread each by default."""

from __future__ import annotations

import signal
import threading

from elt.dispatch.base import Cluster
from elt.errors import DispatchError
from elt.registry import register


@register("cluster", "local")
class LocalDaskCluster(Cluster):
    def start(self):
        from distributed import Client, LocalCluster

        p = self.profile
        # worker processes ignore Ctrl-C: the driver alone stops the run cleanly, and a terminal's
        # SIGINT to the whole process group must not make every worker print a traceback
        # (an ignored signal stays ignored in the processes started from here)
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if _main_thread() else None
        try:
            self.cluster = LocalCluster(
                n_workers=p.workers(),
                threads_per_worker=p.threads_per_worker,
                processes=True,
                memory_limit=p.memory_limit,
                dashboard_address=":0",
                silence_logs=40,
            )
            self.client = Client(self.cluster)
        except Exception as e:  # pragma: no cover - environment specific
            raise DispatchError(f"could not start a local Dask cluster: {e}",
                                hint="check free memory and that this machine allows worker processes") from e
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        return self.client

    def close(self):
        super().close()
        cluster = getattr(self, "cluster", None)
        if cluster is not None:
            try:
                cluster.close()
            except Exception:
                pass
            self.cluster = None

    def describe(self):
        p = self.profile
        return f"local Dask cluster, {p.workers()} worker processes × {p.threads_per_worker} thread"


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
