"""The ``local-env`` cluster: elt's local Dask cluster, whose worker processes start with the
profile's extra environment variables (``distributed.Nanny``'s ``env``)."""

from __future__ import annotations

from elt.dispatch.local import LocalDaskCluster
from elt.registry import register


@register("cluster", "local-env")
class LocalEnvCluster(LocalDaskCluster):
    def cluster_options(self) -> dict:
        return {**super().cluster_options(), "env": dict(self.profile.env)}

    def describe(self) -> str:
        names = ", ".join(sorted(self.profile.env)) or "none"
        return f"{super().describe()} (example plugin local-env; worker environment: {names})"
