"""Local Dask cluster: worker processes on this machine, one thread each by default."""

from __future__ import annotations

from elt.dispatch.base import Cluster
from elt.errors import DispatchError
from elt.registry import register


@register("cluster", "local")
class LocalDaskCluster(Cluster):
    def start(self):
        from distributed import Client, LocalCluster

        p = self.profile
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
