"""Connect to a Dask scheduler that is already running."""

from __future__ import annotations

from elt.dispatch.base import Cluster
from elt.errors import DispatchError
from elt.registry import register


@register("cluster", "address")
class AddressCluster(Cluster):
    def start(self):
        from distributed import Client

        try:
            self.client = Client(self.profile.address, timeout="30s")
        except Exception as e:
            raise DispatchError(f"could not reach the Dask scheduler at {self.profile.address}: {e}",
                                hint="check that the scheduler runs and the address/port are reachable from here") from e
        return self.client

    def describe(self):
        return f"Dask scheduler at {self.profile.address}"
