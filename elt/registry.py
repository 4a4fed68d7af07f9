"""One registry of plugins keyed by their config's ``kind``.

Groups: ``labeler``, ``potential``, ``explorer``, ``cluster``. Each plugin has an implementation
(registered with :func:`register`) and, for the sections validated through the registry, a pydantic
config model (registered with :func:`register_config`; the model has a ``kind`` field). Built-ins
are listed below by module path and imported lazily, the same way as third-party plugins: a
package adds its own through the ``elt.plugins`` entry-point group (each entry point is a module
that calls :func:`register` / :func:`register_config` on import). The engine never imports a
concrete plugin by name: it asks ``get(group, kind)``; the config asks ``config_model(group, kind)``.

A plugin that fails to import is reported by name with its error (never silenced).
"""

from __future__ import annotations

import importlib
import traceback
from typing import Any, Callable

from elt.errors import ConfigError

_REGISTRY: dict[str, dict[str, Any]] = {}
_CONFIGS: dict[str, dict[str, Any]] = {}
_BUILTIN_MODULES = {
    "labeler": {
        "emt": "elt.labeling.emt",
        "ase": "elt.labeling.ase_calculator",
        "pyscf": "elt.labeling.pyscf",
        "cp2k": "elt.labeling.cp2k",
    },
    "potential": {"deepmd": "elt.potentials.deepmd", "mace": "elt.potentials.mace"},
    "explorer": {"ase": "elt.sampling.ase_explorer", "batched": "elt.sampling.batched_explorer"},
    "cluster": {
        "local": "elt.dispatch.local",
        "slurm": "elt.dispatch.slurm",
        "address": "elt.dispatch.address",
    },
}
# config models of the built-ins: light modules (no torch, pyscf or dask), so validation is instant
_BUILTIN_CONFIGS = {
    "explorer": {"ase": "elt.config.sampling:AseExplorer", "batched": "elt.config.sampling:BatchedExplorer"},
    "labeler": {"emt": "elt.config.label:EMTLabel", "ase": "elt.config.label:AseLabel", "pyscf": "elt.config.label:PySCFLabel",
                "cp2k": "elt.config.label:CP2KLabel"},
    "cluster": {"local": "elt.config.cluster:LocalProfile", "slurm": "elt.config.cluster:SlurmProfile",
                "address": "elt.config.cluster:AddressProfile"},
    "potential": {"deepmd": "elt.config.train:DeepMDTrain", "mace": "elt.config.train:MaceTrain"},
}
_entry_points_loaded = False
_broken: dict[str, str] = {}  # entry point name -> its import error


def register(group: str, kind: str) -> Callable[[Any], Any]:
    """Decorator: ``@register("labeler", "emt")`` on a class or factory."""

    def deco(obj):
        _REGISTRY.setdefault(group, {})[kind] = obj
        return obj

    return deco


def register_config(group: str, kind: str) -> Callable[[Any], Any]:
    """Decorator: ``@register_config("explorer", "mine")`` on the plugin's pydantic config model."""

    def deco(model):
        _CONFIGS.setdefault(group, {})[kind] = model
        return model

    return deco


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group="elt.plugins"):
        try:
            ep.load()
        except Exception as e:  # a broken third-party plugin must not break the built-ins
            _broken[ep.name] = f"{ep.value}: " + "".join(traceback.format_exception_only(type(e), e)).strip()


def broken_plugins() -> dict[str, str]:
    """Entry-point plugins that failed to import, with their errors."""
    _load_entry_points()
    return dict(_broken)


def _unknown(group: str, kind: str, table: dict) -> ConfigError:
    known = sorted(set(_BUILTIN_MODULES.get(group, {})) | set(_BUILTIN_CONFIGS.get(group, {})) | set(table.get(group, {})))
    broken = [f"plugin {name!r} failed to import: {err}" for name, err in sorted(_broken.items())]
    return ConfigError(f"unknown {group} kind {kind!r}", problems=broken or None,
                       hint=f"use one of: {', '.join(known)}"
                            + ("; fix or uninstall the broken plugin(s) above" if broken else ""))


def _lookup(table: dict, builtins: dict, group: str, kind: str, load) -> Any:
    if kind not in table.get(group, {}):
        target = builtins.get(group, {}).get(kind)
        if target is not None:
            load(target)
        else:
            _load_entry_points()
    try:
        return table[group][kind]
    except KeyError:
        raise _unknown(group, kind, table) from None


def get(group: str, kind: str) -> Any:
    """The plugin registered for ``kind`` in ``group``; imports the built-in module lazily."""
    return _lookup(_REGISTRY, _BUILTIN_MODULES, group, kind, importlib.import_module)


def _load_config(target: str) -> None:
    module, name = target.split(":")
    model = getattr(importlib.import_module(module), name)
    for group, kinds in _BUILTIN_CONFIGS.items():
        for kind, t in kinds.items():
            if t == target:
                _CONFIGS.setdefault(group, {})[kind] = model


def config_model(group: str, kind: str) -> Any:
    """The pydantic config model of ``kind`` in ``group`` (built-in or from a plugin)."""
    return _lookup(_CONFIGS, _BUILTIN_CONFIGS, group, kind, _load_config)


def known(group: str) -> list[str]:
    """Every kind of ``group``: built-ins and installed plugins."""
    _load_entry_points()
    return sorted(set(_BUILTIN_MODULES.get(group, {})) | set(_BUILTIN_CONFIGS.get(group, {}))
                  | set(_REGISTRY.get(group, {})) | set(_CONFIGS.get(group, {})))
