"""One exception tree for elt, split by phase.

Every error a user can cause carries three things: what was wrong, what was received and what to
write instead (``hint``). The CLI maps the classes to exit codes in one place
(:mod:`elt.cli.main`); nothing else prints tracebacks.
"""

from __future__ import annotations


class EltError(Exception):
    """Base of every error elt raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:  # message, then the hint on its own line
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(EltError):
    """workflow.yaml or a cluster profile is invalid (field path, received, expected)."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None, problems: list[str] | None = None):
        super().__init__(message, hint=hint)
        self.problems = problems or []

    def __str__(self) -> str:
        lines = [self.message] + [f"  - {p}" for p in self.problems]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


class SetupError(EltError):
    """The environment cannot do what the workflow asks (missing binary, missing package, bad file)."""

    exit_code = 3


class CalculationError(EltError):
    """A calculation failed. ``physics`` failures (SCF not converged, bad geometry) are data:
    they are recorded and the frame is excluded. Other failures (binary missing, killed, time
    limit) are infrastructure failures and are retried."""

    exit_code = 4

    def __init__(self, message: str, *, reason: str = "error", physics: bool = False,
                 hint: str | None = None, workdir: str | None = None):
        super().__init__(message, hint=hint)
        self.reason = reason
        self.physics = physics
        self.workdir = workdir

    def __reduce__(self):  # keep attributes when pickled across Dask workers
        return (_rebuild_calc_error, (self.message, self.reason, self.physics, self.hint, self.workdir))


def _rebuild_calc_error(message, reason, physics, hint, workdir):
    return CalculationError(message, reason=reason, physics=physics, hint=hint, workdir=workdir)


class DispatchError(EltError):
    """The cluster could not be started, reached or used."""

    exit_code = 5


class StateError(EltError):
    """The run directory's state is locked, corrupted, or incompatible with the workflow."""

    exit_code = 6


class CampaignError(EltError):
    """The campaign cannot go on (too many failed labels, a stuck stage)."""

    exit_code = 7
