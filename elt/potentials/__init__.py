"""Potentials: plugin interface, deviation math, the built-in Deep Potential ensemble."""

from __future__ import annotations


def get_plugin(kind: str = "deepmd"):
    from elt import registry

    return registry.get("potential", kind)


def load_calculator(path, kind: str = "deepmd", **kwargs):
    """ASE calculator from a checkpoint: a member file, a list of member files, or a directory of them."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        paths = sorted(p.glob("member_*.pt"))
    elif isinstance(path, (list, tuple)):
        paths = [Path(x) for x in path]
    else:
        paths = [p]
    return get_plugin(kind).load_ensemble(paths, **kwargs).calculator()
