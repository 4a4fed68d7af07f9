"""Potentials: plugin interface, deviation math, the built-in Deep Potential ensemble, MACE.

A model folder (``RUN_DIR/model``) holds the members' checkpoints and a manifest
(:data:`elt.data.layout.MODEL_MANIFEST`) naming the potential's kind and the member files;
:func:`load_calculator` reads it. Folders written before the manifest existed hold deepmd's
``member_*.pt``; a member file's JSON twin (``member_0.pt`` -> ``member_0.json``) names its kind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

DEFAULT_KIND = "deepmd"  # the kind of runs made before the manifest (and of a workflow without train.kind)


def get_plugin(kind: str = DEFAULT_KIND):
    from elt import registry

    return registry.get("potential", kind)


def write_manifest(folder, kind: str, members: Sequence) -> None:
    """Record ``kind`` and the member files (their names, in order) next to them in ``folder``."""
    from elt.data.frames import atomic_write_text
    from elt.data.layout import MODEL_MANIFEST

    atomic_write_text(Path(folder) / MODEL_MANIFEST,
                      json.dumps({"kind": kind, "members": [Path(m).name for m in members]}, indent=1))


def _manifest(folder: Path) -> Optional[dict]:
    from elt.data.layout import MODEL_MANIFEST
    from elt.errors import SetupError

    p = folder / MODEL_MANIFEST
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
        return {"kind": str(data["kind"]), "members": [folder / str(m) for m in data["members"]]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SetupError(f"{str(p)!r} is not a readable model manifest ({type(exc).__name__}: {exc})",
                         hint='it should read {"kind": "deepmd", "members": ["member_0.pt", ...]}; '
                              "rewrite it or pass the member files and kind= to load_potential") from None


def _kind_of_member(path: Path) -> Optional[str]:
    """The kind a member checkpoint's JSON twin names (written by the deepmd and mace plugins)."""
    try:
        return str(json.loads(path.with_suffix(".json").read_text())["kind"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def ensemble_source(path) -> tuple[str, list[Path]]:
    """(kind, member files) from a model folder, a member file or a list of member files."""
    from elt.errors import SetupError

    if isinstance(path, (list, tuple)):
        paths = [Path(x) for x in path]
    elif Path(path).is_dir():
        folder = Path(path)
        found = _manifest(folder)
        if found is not None:
            return found["kind"], found["members"]
        paths = sorted(folder.glob("member_*.pt"), key=lambda q: (len(q.name), q.name))
        if not paths:
            raise SetupError(f"directory {str(folder)!r} holds no model manifest (potential.json) and no "
                             "member_*.pt checkpoints",
                             hint="point to a run's model folder, an iteration's train task folders' "
                                  "member files, or pass the member files")
    else:
        paths = [Path(path)]
    kinds = {k for k in (_kind_of_member(p) for p in paths) if k is not None}
    if len(kinds) > 1:
        raise SetupError(f"the member files are of different kinds ({', '.join(sorted(kinds))})",
                         hint="load the members of one ensemble together")
    return (kinds.pop() if kinds else DEFAULT_KIND), paths


def member_paths(path) -> list:
    """Member checkpoint files from a file, a list of files, or a model folder."""
    return ensemble_source(path)[1]


def load_calculator(path, kind: Optional[str] = None, **kwargs):
    """ASE calculator from a model folder, a member file or a list of member files. ``kind``: the
    potential's kind; default: the folder's manifest, the members' JSON twins, else deepmd."""
    found, paths = ensemble_source(path)
    return get_plugin(kind or found).load_ensemble(paths, **kwargs).calculator()
