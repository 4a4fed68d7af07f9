"""Potentials: plugin interface, deviation math, the built-in Deep Potential ensemble."""

from __future__ import annotations


def get_plugin(kind: str = "deepmd"):
    from elt import registry

    return registry.get("potential", kind)


def member_paths(path) -> list:
    """Member checkpoint files from a file, a list of files, or a directory of ``member_*.pt``."""
    from pathlib import Path

    from elt.errors import SetupError

    if isinstance(path, (list, tuple)):
        return [Path(x) for x in path]
    p = Path(path)
    if p.is_dir():
        paths = sorted(p.glob("member_*.pt"), key=lambda q: (len(q.name), q.name))
        if not paths:
            raise SetupError(f"directory {str(p)!r} holds no member_*.pt checkpoints",
                             hint="point to the directory a training iteration wrote, or to member files")
        return paths
    return [p]


def load_calculator(path, kind: str = "deepmd", **kwargs):
    """ASE calculator from a checkpoint: a member file, a list of member files, or a directory of them."""
    return get_plugin(kind).load_ensemble(member_paths(path), **kwargs).calculator()
