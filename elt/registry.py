"""One registry of plugins keyed by their config's ``kind``.

Groups: ``labeler``, ``potential``, ``cluster``, ``sampler``. Built-ins register themselves in
:func:`load_builtins`; third-party packages can add theirs through the ``elt.plugins`` entry point
group (each entry point is a module that calls :func:`register` on import). The engine never
imports a concrete plugin by name: it asks ``get(group, kind)``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from elt.errors import ConfigError

_REGISTRY: dict[str, dict[str, Any]] = {}
_BUILTIN_MODULES = {
    "labeler": {
        "emt": "elt.labeling.emt",
        "pyscf": "elt.labeling.pyscf",
        "cp2k": "elt.labeling.cp2k",
    },
    "potential": {"deepmd": "elt.potentials.deepmd"},
    "cluster": {
        "local": "elt.dispatch.local",
        "slurm": "elt.dispatch.slurm",
        "address": "elt.dispatch.address",
    },
}
_entry_points_loaded = False


def register(group: str, kind: str) -> Callable[[Any], Any]:
    """Decorator: ``@register("labeler", "emt")`` on a class or factory."""

    def deco(obj):
        _REGISTRY.setdefault(group, {})[kind] = obj
        return obj

    return deco


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    try:
        from importlib.metadata import entry_points

        for ep in entry_points(group="elt.plugins"):
            ep.load()
    except Exception:  # a broken third-party plugin must not break the built-ins
        pass


def get(group: str, kind: str) -> Any:
    """The plugin registered for ``kind`` in ``group``; imports the built-in module lazily."""
    if kind not in _REGISTRY.get(group, {}):
        module = _BUILTIN_MODULES.get(group, {}).get(kind)
        if module is not None:
            importlib.import_module(module)
        else:
            _load_entry_points()
    try:
        return _REGISTRY[group][kind]
    except KeyError:
        known = sorted(set(_BUILTIN_MODULES.get(group, {})) | set(_REGISTRY.get(group, {})))
        raise ConfigError(
            f"unknown {group} kind {kind!r}", hint=f"use one of: {', '.join(known)}"
        ) from None
