"""Shared pieces of the config models: strict, frozen pydantic models and error formatting."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SerializeAsAny, ValidationError
from pydantic_core import InitErrorDetails

from elt.errors import ConfigError
from elt.records import fields_ident


class Strict(BaseModel):
    """Base of every config section: unknown keys are errors, values are frozen once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)

    # fields added after runs were made with this section: left out of task ids and run
    # fingerprints while they hold their default, so an old run resumes without a refusal
    ADDED: ClassVar[frozenset[str]] = frozenset()

    def ident(self) -> dict:
        """The section as task ids see it: ``model_dump(mode="json")`` without excluded fields and
        without the :attr:`ADDED` fields that hold their default."""
        return fields_ident(self, self.ADDED)


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


def _problems(err: ValidationError) -> list[str]:
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
            msg = msg.removeprefix("Value error, ")
            problems.append(f"{path}: {msg}" + ("" if "received" in msg else f"; received {_short(received)}"))
    return problems


def format_validation_error(err: ValidationError, source: str) -> ConfigError:
    """Turn pydantic's error into a ConfigError listing field path, what was received, what is expected."""
    problems = _problems(err)
    return ConfigError(f"{source} is not valid ({len(problems)} problem{'s' if len(problems) != 1 else ''}):",
                       problems=problems,
                       hint="see workflows/ for complete examples; `elt validate FILE` checks a file")


class PluginConfig(Strict):
    """Base of a plugin's config section: ``kind`` names the plugin in :mod:`elt.registry`; the
    plugin's own model (a subclass) adds its fields."""

    kind: str = Field(description="Which plugin (a built-in or an installed one).")


def plugin_section(group: str, default_kind: str | None = None):
    """The type of a config section validated through the registry by its ``kind``: unknown kinds
    list the known ones (installed plugins included), the plugin's model checks the rest. A bare
    string is shorthand for ``{kind: NAME}``."""

    def validate(value: Any):
        if isinstance(value, PluginConfig):
            return value
        if isinstance(value, str):
            value = {"kind": value}
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping with a kind (or a kind name), received {_short(value)}")
        kind = value.get("kind", default_kind)
        if kind is None:
            raise ValueError("kind is missing: name the plugin, e.g. kind: " + (default_kind or "NAME"))
        from elt import registry

        try:
            model = registry.config_model(group, kind)
        except ConfigError as e:  # reported at the section's kind field
            raise ValidationError.from_exception_data("kind", [InitErrorDetails(
                type="value_error", loc=("kind",), input=kind,
                ctx={"error": ValueError("; ".join([e.message, *e.problems, e.hint]))})]) from None
        try:
            return model.model_validate({**value, "kind": kind})
        except ValidationError as e:  # re-raised under the kind, as a discriminated union reports it
            raise ValidationError.from_exception_data(e.title, [
                InitErrorDetails(type=d["type"], loc=(kind, *d["loc"]), input=d["input"], ctx=d.get("ctx", {}))
                for d in e.errors()]) from None

    return Annotated[SerializeAsAny[PluginConfig], BeforeValidator(validate)]
