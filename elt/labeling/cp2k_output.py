"""Reading CP2K's main output (``-o elt.out``): energy, forces, stress and SCF status, converted to
eV, eV/Å and eV/Å³ (ASE's stress sign: CP2K prints the pressure-positive tensor, ASE's is its
negative)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from elt.data.frames import voigt
from elt.units import (GPA_TO_EV_PER_ANGSTROM3, HARTREE_PER_BOHR3_TO_EV_PER_ANGSTROM3,
                       hartree_per_bohr_to_ev_per_angstrom, hartree_to_ev)

SCF_NOT_CONVERGED = "SCF run NOT converged"

_ENERGY = re.compile(r"ENERGY\|\s+Total FORCE_EVAL \(\s*\w+\s*\) energy \[([^\]]+)\]:\s+(\S+)")
_FORCES = re.compile(r"ATOMIC FORCES in \[([^\]]+)\]")
_STRESS = re.compile(r"STRESS\|\s+(Analytical|Numerical) stress tensor \[([^\]]+)\]")
_SCF_DONE = re.compile(r"SCF run converged in\s+(\d+)\s+steps")

_STRESS_UNITS = {  # to eV/Å³
    "GPA": GPA_TO_EV_PER_ANGSTROM3,
    "BAR": 1e-4 * GPA_TO_EV_PER_ANGSTROM3,
    "A.U.": HARTREE_PER_BOHR3_TO_EV_PER_ANGSTROM3,
    "AU": HARTREE_PER_BOHR3_TO_EV_PER_ANGSTROM3,
}


class OutputError(ValueError):
    """The output lacks what elt needs, or has it in a shape elt does not read."""


@dataclass
class Result:
    energy: float                         # eV
    forces: np.ndarray                    # (N, 3) eV/Å
    stress: Optional[np.ndarray] = None   # (6,) eV/Å³, ASE sign and Voigt order
    scf_converged: bool = True
    scf_steps: list[int] = field(default_factory=list)


def scf_failed(text: str) -> bool:
    return SCF_NOT_CONVERGED in text


def abort_message(text: str) -> str:
    """The words inside CP2K's last ``[ABORT]`` box (e.g. "invalid value for enumeration:X"), or ''."""
    lines = text.splitlines()
    starts = [n for n, line in enumerate(lines) if "[ABORT]" in line]
    if not starts:
        return ""
    words = []
    for line in lines[starts[-1] - 2: starts[-1] + 8]:
        body = line.strip().strip("*").strip()
        body = re.sub(r"^(\[ABORT\]|[/\\|_O ]+)(?=\s|$)", "", body).strip()
        if body and not re.fullmatch(r"[\w/.]+\.F:\d+", body):
            words.append(body)
    return " ".join(words)


def parse(text: str, symbols: list[str]) -> Result:
    """Parse a finished ENERGY_FORCE run of ``len(symbols)`` atoms; raise :class:`OutputError`."""
    energy = _energy(text)
    forces = _forces(text, symbols)
    stress = _stress(text)
    values = [energy, forces] + ([stress] if stress is not None else [])
    if not all(np.all(np.isfinite(v)) for v in values):
        raise OutputError("non-finite energy, force or stress in the output")
    steps = [int(m.group(1)) for m in _SCF_DONE.finditer(text)]
    return Result(energy, forces, stress, not scf_failed(text), steps)


def _energy(text: str) -> float:
    found = _ENERGY.findall(text)
    if not found:
        raise OutputError("no 'ENERGY| Total FORCE_EVAL' line (the run did not finish its energy)")
    unit, value = found[-1]
    if unit.strip().lower() not in ("a.u.", "hartree"):
        raise OutputError(f"energy in unexpected unit [{unit}]")
    try:
        return float(hartree_to_ev(float(value)))
    except ValueError:
        raise OutputError(f"energy value {value!r} is not a number") from None


def _forces(text: str, symbols: list[str]) -> np.ndarray:
    matches = list(_FORCES.finditer(text))
    if not matches:
        raise OutputError("no 'ATOMIC FORCES' block (FORCE_EVAL/PRINT/FORCES was not printed)")
    m = matches[-1]
    if m.group(1).strip().lower() != "a.u.":
        raise OutputError(f"forces in unexpected unit [{m.group(1)}]")
    rows = []
    for line in text[m.end():].splitlines()[1:]:
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("SUM OF ATOMIC FORCES"):
            break
        parts = s.split()
        if len(parts) != 6:
            raise OutputError(f"unexpected line in the forces block: {s!r}")
        rows.append(parts)
        if len(rows) > len(symbols):
            break
    if len(rows) != len(symbols):
        raise OutputError(f"forces block has {len(rows)} atoms, the frame has {len(symbols)}")
    for n, (row, sym) in enumerate(zip(rows, symbols)):
        if row[2].lower() != sym.lower():
            raise OutputError(f"forces block atom {n + 1} is {row[2]}, the frame's is {sym}")
    try:
        f = np.array([[float(x) for x in row[3:]] for row in rows])
    except ValueError:
        raise OutputError("a force value is not a number") from None
    return hartree_per_bohr_to_ev_per_angstrom(f)


def _stress(text: str) -> Optional[np.ndarray]:
    matches = list(_STRESS.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    unit = m.group(2).strip().upper()
    if unit not in _STRESS_UNITS:
        raise OutputError(f"stress in unexpected unit [{m.group(2)}]")
    rows = {}
    for line in text[m.end():].splitlines()[1:6]:
        parts = line.split()
        if len(parts) == 5 and parts[0] == "STRESS|" and parts[1] in ("x", "y", "z"):
            try:
                rows[parts[1]] = [float(x) for x in parts[2:]]
            except ValueError:
                raise OutputError("a stress value is not a number") from None
    if set(rows) != {"x", "y", "z"}:
        raise OutputError("stress tensor block is incomplete")
    s = np.array([rows["x"], rows["y"], rows["z"]]) * _STRESS_UNITS[unit]
    return voigt(-s)  # ASE sign: CP2K prints the pressure-positive tensor
