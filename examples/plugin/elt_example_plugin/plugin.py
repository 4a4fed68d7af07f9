"""The entry point: importing this module registers every plugin of the package with elt."""

from elt_example_plugin import cluster, config, explorer, labeler  # noqa: F401  (they register on import)
