"""Pieces shared by the conformance checks: the report, assertions with clear messages, config
sections validated as the workflow validates them, and finite differences (Å, eV, eV/Å, eV/Å³)."""

from __future__ import annotations

import pickle
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from ase import Atoms
from pydantic import BaseModel

from elt.potentials.base import fully_periodic  # noqa: F401  (the rule of which frames have a stress)

# where each plugin kind's section lives in a workflow: (put it there, take it out)
_SECTIONS = {
    "train": (lambda v: {"train": v}, lambda wf: wf.train),
    "label": (lambda v: {"label": v}, lambda wf: wf.label),
    "explorer": (lambda v: {"explore": {"stages": [{"explorer": v}]}}, lambda wf: wf.explore.stages[0].explorer),
}
_DUMMY_SYSTEM = {"structures": [{"kind": "molecule", "name": "H2"}]}
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))  # ASE's order: xx yy zz yz xz xy


@dataclass
class Report:
    """What a check did: the names of the checks that passed, in order, and what it computed."""

    plugin: str
    passed: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def ok(self, name: str) -> None:
        if name not in self.passed:
            self.passed.append(name)


def fail(plugin: str, check: str, detail: str) -> AssertionError:
    return AssertionError(f"{plugin}: {check}: {detail}")


def require(cond: bool, plugin: str, check: str, detail: str) -> None:
    if not cond:
        raise fail(plugin, check, detail)


def require_close(got, want, plugin: str, check: str, atol: float, rtol: float, what: str = "") -> None:
    """``|got - want| <= atol + rtol * |want|`` everywhere, else an AssertionError naming the worst entry."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise fail(plugin, check, f"shape {got.shape} where {want.shape} was expected {what}".rstrip())
    err = np.abs(got - want) - (atol + rtol * np.abs(want))
    if not np.all(np.isfinite(got)) or (err.size and err.max() > 0):
        i = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(err), err, np.inf))), err.shape) if err.size else ()
        raise fail(plugin, check, f"{what} got {got[i]:.6g} where {want[i]:.6g} was expected at index "
                                  f"{tuple(int(x) for x in i)} (tolerance {atol:g} + {rtol:g}·|expected|)")


def section(name: str, value: Any) -> BaseModel:
    """``value`` (a config model, a mapping with ``kind``, or a kind name) as the workflow's section
    ``name`` (train, label or explorer) validates it: the same registry lookup and messages."""
    if isinstance(value, BaseModel):
        return value
    if isinstance(value, str):
        value = {"kind": value}
    from elt.config.workflow import parse_workflow

    place, take = _SECTIONS[name]
    return take(parse_workflow({"system": _DUMMY_SYSTEM, **place(value)}, f"{name} section"))


def plugin_class(group: str, cfg, base: type, config_base: type, name: str, why: str = "") -> type:
    """The class the registry has for ``cfg.kind`` in ``group``, checked to subclass ``base``; the
    config checked to be a ``config_base`` that survives pickling."""
    from elt import registry

    cls = registry.get(group, cfg.kind)
    require(isinstance(cls, type) and issubclass(cls, base), name, "registry",
            f"registry.get({group!r}, {cfg.kind!r}) is {cls!r}, not a subclass of {base.__module__}.{base.__qualname__}")
    require(isinstance(cfg, config_base), name, "config model",
            f"{type(cfg).__name__} must subclass {config_base.__module__}.{config_base.__qualname__}{why}")
    require(round_trip(cfg, name, "the config") == cfg, name, "pickling", "the config changes through pickle")
    return cls


def work_dir(workdir: Optional[Path], prefix: str) -> Path:
    d = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix=f"elt-check-{prefix}-"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def round_trip(obj: Any, plugin: str, what: str) -> Any:
    """``obj`` through pickle (what Dask does to task arguments and results)."""
    try:
        return pickle.loads(pickle.dumps(obj))
    except Exception as e:
        raise fail(plugin, "pickling", f"{what} does not survive pickle (Dask sends it to workers that "
                                       f"way): {type(e).__name__}: {e}") from None


def displaced(atoms: Atoms, atom: int, direction: np.ndarray, s: float) -> Atoms:
    a = atoms.copy()
    a.calc = None
    a.positions[atom] += s * np.asarray(direction, dtype=np.float64)
    return a


def strained(atoms: Atoms, voigt: int, e: float) -> Atoms:
    """``atoms`` under the symmetric strain whose Voigt component ``voigt`` is ``e`` (an engineering
    shear for the off-diagonal ones), atoms moved with the cell."""
    i, j = VOIGT[voigt]
    eps = np.zeros((3, 3))
    eps[i, j] += e / 2 if i != j else e
    eps[j, i] += e / 2 if i != j else 0.0
    a = atoms.copy()
    a.calc = None
    a.set_cell(atoms.cell.array @ (np.eye(3) + eps), scale_atoms=True)
    return a


def fd_force(energy: Callable[[Atoms], Any], atoms: Atoms, atom: int, direction: np.ndarray, h: float):
    """-dE/ds along the unit ``direction`` on ``atom`` by central differences (eV/Å); ``energy``
    may return one energy or one per member."""
    ep = np.asarray(energy(displaced(atoms, atom, direction, h)), dtype=np.float64)
    em = np.asarray(energy(displaced(atoms, atom, direction, -h)), dtype=np.float64)
    return -(ep - em) / (2 * h)


def fd_stress(energy: Callable[[Atoms], Any], atoms: Atoms, voigt: int, h: float):
    """(1/V) dE/dε of Voigt component ``voigt`` by central differences (eV/Å³): ASE's stress."""
    ep = np.asarray(energy(strained(atoms, voigt, h)), dtype=np.float64)
    em = np.asarray(energy(strained(atoms, voigt, -h)), dtype=np.float64)
    return (ep - em) / (2 * h) / atoms.get_volume()


def probe_atoms(forces: np.ndarray, n: int) -> list[tuple[int, np.ndarray]]:
    """The ``n`` atoms with the largest forces and each one's force direction (x where it has none):
    where a finite-difference check has the most signal."""
    f = np.asarray(forces, dtype=np.float64).reshape(-1, 3)
    order = np.argsort(-np.linalg.norm(f, axis=1))[:max(1, n)]
    out = []
    for i in order:
        norm = np.linalg.norm(f[i])
        out.append((int(i), f[i] / norm if norm > 1e-8 else np.array([1.0, 0.0, 0.0])))
    return out


def coincident(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` with atom 1 put on atom 0: a frame every method must fail on."""
    a = atoms.copy()
    a.calc = None
    a.positions[1] = a.positions[0]
    return a
