"""Any ASE calculator as a labeler (``label.kind: ase``); EMT is one instance (``label.kind: emt``).

The calculator is built afresh for each frame from its import path and keyword arguments
(:class:`elt.config.label.AseLabel`), with ``directory`` set to the frame's task folder, so that
calculators that write input and output files keep them there. Failures are classified as the
engine expects (:mod:`elt.labeling.base`): a non-finite energy, force or stress and ASE's
``SCFError`` are physics failures (recorded, not retried); any other exception of the calculator
is an infrastructure failure (retried ``label.retries`` times, then recorded).
"""

from __future__ import annotations

import contextlib
import inspect
import os
from pathlib import Path
from typing import Optional

import numpy as np
from ase import Atoms

from elt.data.frames import fully_periodic
from elt.errors import CalculationError
from elt.labeling.base import Labeler, Labels
from elt.registry import register


@contextlib.contextmanager
def omp_threads(n: int):
    """OMP_NUM_THREADS (read by programs the calculator starts) and, where threadpoolctl is
    installed, the thread pools already loaded in this process, set to ``n`` while inside."""
    old = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(max(1, int(n)))
    try:
        with contextlib.ExitStack() as stack:
            with contextlib.suppress(ImportError):
                from threadpoolctl import threadpool_limits

                stack.enter_context(threadpool_limits(max(1, int(n))))
            yield
    finally:
        if old is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = old


def _takes_directory(factory) -> bool:
    """Whether ``factory(directory=...)`` is accepted: an explicit parameter, or an ASE
    ``Calculator`` subclass that passes its keyword arguments on to ``Calculator.__init__``."""
    from ase.calculators.calculator import Calculator

    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    if "directory" in params:
        return True
    return (isinstance(factory, type) and issubclass(factory, Calculator)
            and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()))


def _close(calc) -> None:
    """Stop what a calculator keeps running between calls (CP2K's shell, a socket server)."""
    close = getattr(calc, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


@register("labeler", "ase")
class AseLabeler(Labeler):
    """Labels from the ASE calculator of the config (:class:`elt.config.label.AseLabel`)."""

    @property
    def calculator_config(self):
        """The :class:`elt.config.label.AseLabel` that says which calculator (a subclass for one
        fixed calculator, such as EMT, returns its own)."""
        return self.config

    def calculator_path(self) -> str:
        return self.calculator_config.calculator

    def make_calculator(self, workdir: Optional[Path] = None):
        """A fresh calculator from the config; it reads and writes its files in ``workdir``."""
        cfg = self.calculator_config
        factory = cfg.factory()
        kwargs = dict(cfg.parameters)
        if workdir is not None and _takes_directory(factory):
            kwargs["directory"] = str(workdir)
        calc = factory(**kwargs)
        if workdir is not None and "directory" not in kwargs and hasattr(calc, "directory"):
            calc.directory = str(workdir)
        return calc

    def wants_stress(self, atoms: Atoms, calc) -> bool:
        return (self.calculator_config.stress and fully_periodic(atoms)
                and "stress" in getattr(calc, "implemented_properties", ("stress",)))

    def compute(self, atoms: Atoms, workdir: Path) -> Labels:
        from ase.calculators.calculator import SCFError

        name = self.calculator_path()
        a = atoms.copy()
        a.calc = None
        try:
            # a broken frame may divide by zero: the result is checked for finiteness below
            with omp_threads(self.exec.threads), np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                energy, forces, stress = self._calculate(a, workdir)
        except CalculationError:
            raise
        except SCFError as e:
            raise CalculationError(f"{name}: SCF did not converge: {e}", reason="scf_not_converged",
                                   physics=True, workdir=str(workdir)) from None
        except Exception as e:  # the calculator's own error: infrastructure, retried by the engine
            raise CalculationError(f"{name} failed: {type(e).__name__}: {e}", reason=type(e).__name__,
                                   physics=False, workdir=str(workdir)) from None
        values = [np.asarray(energy, dtype=np.float64), forces] + ([stress] if stress is not None else [])
        if not all(np.all(np.isfinite(v)) for v in values):
            raise CalculationError(f"{name} returned a non-finite energy, force or stress", reason="non_finite",
                                   physics=True, workdir=str(workdir))
        return Labels(float(energy), forces, stress, info={"calculator": name})

    def _calculate(self, a: Atoms, workdir: Path):
        a.calc = self.make_calculator(workdir)
        try:
            energy = a.get_potential_energy(force_consistent=self.calculator_config.energy == "free_energy")
            forces = np.array(a.get_forces(), dtype=np.float64)
            stress = np.array(a.get_stress(), dtype=np.float64) if self.wants_stress(a, a.calc) else None
            return energy, forces, stress
        finally:
            _close(a.calc)

    def check(self, elements: list[str], periodic: Optional[bool] = None) -> list[str]:
        try:
            calc = self.make_calculator()
        except Exception as e:
            return [f"building the calculator {self.calculator_path()}(**label.parameters) failed: "
                    f"{type(e).__name__}: {e}; check label.parameters"]
        _close(calc)
        props = getattr(calc, "implemented_properties", None)
        if props is not None and not {"energy", "forces"} <= set(props):
            missing = " and ".join(p for p in ("energy", "forces") if p not in props)
            return [f"{self.calculator_path()} does not compute {missing} (it implements {', '.join(props)}); "
                    "a labeler needs both: choose another calculator"]
        return []
