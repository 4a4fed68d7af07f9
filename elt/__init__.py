"""elt: active learning of machine-learned interatomic potentials (exploration, labeling, training).

The Python API::

    import elt

    summary = elt.run("workflows/quickstart.yaml")          # or a dict of the same sections
    calc = elt.load_potential(summary.run_dir + "/model")   # an ASE calculator (float32; precision="float64")

Both work from a plain script: no ``if __name__ == "__main__":`` guard is needed.
"""

__version__ = "0.1.0"


def run(workflow, workdir=None, cluster=None, reporter=None):
    """Run (or resume) the campaign of ``workflow`` and return its :class:`elt.engine.loop.RunSummary`.

    ``workflow``: a path to a workflow YAML or a mapping of its sections (relative paths in it are
    relative to the current directory); ``workdir``: the run directory (default: the workflow's,
    or NAME next to the file); ``cluster``: a cluster profile name, path or mapping instead of the
    workflow's; ``reporter``: an :class:`elt.engine.runner.Reporter` for progress (default: log lines).
    Raises :class:`elt.errors.EltError` subclasses with messages that say what to do.
    """
    from pathlib import Path

    from elt.config import load_profile, load_workflow, parse_workflow
    from elt.dispatch.local import no_main_reimport
    from elt.engine.loop import run_workflow

    if isinstance(workflow, dict):
        wf = parse_workflow(workflow, "workflow", base_dir=Path.cwd())
    else:
        wf = load_workflow(workflow)
    profile = load_profile(cluster if cluster is not None else wf.cluster, wf.base_dir)
    with no_main_reimport():
        return run_workflow(wf, Path(workdir) if workdir is not None else None, profile, reporter)


def load_potential(path, kind=None, **kwargs):
    """Load a trained ensemble (a run's ``model`` folder, a member checkpoint or a list of them) and
    return an ASE calculator: mean energy, forces, stress plus the model deviation in ``calc.results``.
    ``kind``: the potential's kind (deepmd, mace, a plugin's); default: what the model folder's
    manifest or the members' JSON twins record, else deepmd (runs made before the manifest).
    ``precision="float64"`` evaluates in double precision (default: the precision it was trained in)."""
    from elt.potentials import load_calculator

    return load_calculator(path, kind=kind, **kwargs)
