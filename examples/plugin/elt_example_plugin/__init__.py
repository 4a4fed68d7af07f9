"""An out-of-tree elt plugin package: three plugin kinds with their config models.

- labeler ``morse``: a Morse pair potential (energy eV, forces eV/Å, stress eV/Å³), written here
  from scratch against :class:`elt.labeling.base.Labeler`;
- explorer ``metropolis``: Metropolis Monte Carlo on the ensemble's mean energy, against
  :class:`elt.sampling.explorer.Explorer`;
- cluster ``local-env``: elt's local Dask cluster whose worker processes get extra environment
  variables, against :class:`elt.dispatch.base.Cluster`.

elt finds them through the entry point in pyproject.toml (``elt_example_plugin.plugin``). Config
models live in :mod:`elt_example_plugin.config`, which imports nothing heavy, so that
``elt validate`` stays instant.
"""
