"""Shared pieces of the config models: strict, frozen pydantic models and error formatting."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from elt.errors import ConfigError


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # pydantic adds the tag of a discriminated union and function names to the path
            if isinstance(part, str) and (part.startswith("function-") or part in {"str", "dict[str,any]"}):
                continue
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_validation_error(err: ValidationError, source: str) -> ConfigError:
    """Turn pydantic's error into a ConfigError listing field path, what was received, what is expected."""
    problems = []
    for e in err.errors():
        path = _loc(tuple(e.get("loc", ())))
        kind = e.get("type", "")
        msg = e.get("msg", "")
        received = e.get("input")
        if kind == "extra_forbidden":
            problems.append(f"{path}: unknown key (typo?); remove it or check the spelling")
        elif kind == "missing":
            problems.append(f"{path}: required field is missing")
        else:
            problems.append(f"{path}: {msg}; received {_short(received)}")
    return ConfigError(f"{source} is not valid ({len(problems)} problem{'s' if len(problems) != 1 else ''}):",
                       problems=problems,
                       hint="see workflows/ for complete examples; `elt validate FILE` checks a file")
