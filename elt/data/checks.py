"""Checks of structures and labeled data against the workflow, with messages that name the frames."""

from __future__ import annotations

from typing import Optional, Sequence

from ase import Atoms

from elt.errors import ConfigError

SHOWN = 5  # frames listed per element


def foreign_elements(frames: Sequence[Atoms], allowed: Sequence[str],
                     origins: Optional[Sequence[str]] = None) -> dict[str, list[str]]:
    """Elements outside ``allowed`` -> the frames (by origin, e.g. 'data.extxyz frame 3') holding them."""
    allowed = set(allowed)
    out: dict[str, list[str]] = {}
    for i, a in enumerate(frames):
        where = origins[i] if origins is not None else f"frame {i}"
        for el in sorted(set(a.get_chemical_symbols()) - allowed):
            out.setdefault(el, []).append(where)
    return out


def check_elements(frames: Sequence[Atoms], allowed: Optional[Sequence[str]],
                   origins: Optional[Sequence[str]] = None, what: str = "the data") -> None:
    """Raise a ConfigError naming each element ``allowed`` lacks and the frames that hold it."""
    if not allowed:
        return
    bad = foreign_elements(frames, allowed, origins)
    if not bad:
        return
    problems = []
    for el, where in sorted(bad.items()):
        more = f" and {len(where) - SHOWN} more" if len(where) > SHOWN else ""
        problems.append(f"{el} in {len(where)} frame(s): {', '.join(where[:SHOWN])}{more}")
    raise ConfigError(f"{what} contain elements that system.elements ({', '.join(allowed)}) does not list:",
                      problems=problems,
                      hint=f"add {sorted(bad)} to system.elements, or remove those frames")
