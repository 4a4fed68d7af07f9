"""The one home of the model-deviation rules: DP-GEN's ``model_devi.out`` format, the walker stop
reasons, and the classification of frames by their deviation. The explorers write the files, the
engine classifies and selects, the reports read and count: all through this module.

Columns (DP-GEN's layout, plus ``devi_e``): step, max/min/avg virial deviation (eV/atom),
max/min/avg force deviation (eV/Å), energy deviation per atom (eV/atom). Lines starting with ``#``
are comments, so ``numpy.loadtxt`` reads every file, and the aggregated ones, as they are.

A frame's max force deviation ``f`` (eV/Å) puts it in one of three classes (DP-GEN semantics):
``accurate`` if f < lo, ``candidate`` if lo ≤ f < hi, ``failed`` if f ≥ hi (NaN counts failed).
With the optional energy criterion (deviation per atom ``e`` with levels elo/ehi) a frame is
accurate only when both are below their lower levels, failed when either reaches its upper level,
a candidate otherwise. The frame that stopped its walker for a bad reason (:data:`BAD_STOPS`) is
failed whatever its deviation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

COLUMNS = ("step", "max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e")
DEVI_KEYS = COLUMNS[1:]              # one recorded frame's deviations, in file order
MAX_DEVI_F = COLUMNS.index("max_devi_f")
DEVI_E = COLUMNS.index("devi_e")
HEADER = " ".join(COLUMNS)
FORMAT = ["%12d"] + ["%19.6e"] * (len(COLUMNS) - 1)

# why a walker stopped: ran to the end, or one of these (the first word of its stop reason)
COMPLETED = "completed"
ABOVE_TRUST_HI = "above_trust_hi"
BAD_STOPS = ("nan", "too_close", "energy_spike")   # the last recorded frame is off the map

ACCURATE, CANDIDATE, FAILED = "accurate", "candidate", "failed"
CLASSES = (ACCURATE, CANDIDATE, FAILED)


def stopped_on_bad_frame(stop_reason: Optional[str]) -> bool:
    """The walker's last recorded frame triggered a physical stop (nan, too_close, energy_spike)."""
    return bool(stop_reason) and str(stop_reason).split(" ")[0] in BAD_STOPS


def write_model_devi(path: Path, steps: Sequence[int], devi: np.ndarray) -> None:
    """Write one walker's table: ``steps`` (n,) and ``devi`` (n, 7) in :data:`DEVI_KEYS` order."""
    devi = np.asarray(devi, dtype=np.float64).reshape(-1, len(DEVI_KEYS))
    table = np.column_stack([np.asarray(steps, dtype=float), devi]) if len(devi) else np.zeros((0, len(COLUMNS)))
    np.savetxt(Path(path), table, fmt=FORMAT, header=HEADER)


def read_model_devi(path: Path) -> np.ndarray:
    """The table of one ``model_devi.out`` as an (n, 8) array (n may be 0)."""
    path = Path(path)
    if path.stat().st_size == 0:
        return np.zeros((0, len(COLUMNS)))
    table = np.loadtxt(path, ndmin=2)
    if table.size == 0:
        return np.zeros((0, len(COLUMNS)))
    if table.shape[1] != len(COLUMNS):
        raise ValueError(f"{path}: {table.shape[1]} columns, expected {len(COLUMNS)} ({HEADER})")
    return table


def classify(max_devi_f: np.ndarray, lo: float, hi: float,
             devi_e: Optional[np.ndarray] = None, elo: Optional[float] = None,
             ehi: Optional[float] = None, last_failed: bool = False) -> np.ndarray:
    """Class of each frame as an array of strings (accurate, candidate, failed). ``last_failed``:
    the last frame is failed whatever its deviation (it stopped its walker)."""
    f = np.asarray(max_devi_f, dtype=np.float64)
    acc = f < lo
    fail = ~(f < hi)  # NaN counts as failed
    if devi_e is not None and elo is not None and ehi is not None:
        e = np.asarray(devi_e, dtype=np.float64)
        acc &= e < elo
        fail |= ~(e < ehi)
    out = np.full(f.shape, CANDIDATE, dtype=object)
    out[acc] = ACCURATE
    out[fail] = FAILED
    if last_failed and len(out):
        out[-1] = FAILED
    return out


def counts(classes: Sequence[str]) -> dict[str, int]:
    c = {k: 0 for k in CLASSES}
    for x in classes:
        c[x] += 1
    return c


def classify_table(table: np.ndarray, lo: float, hi: float, elo: Optional[float] = None,
                   ehi: Optional[float] = None, stop_reason: Optional[str] = None) -> np.ndarray:
    """:func:`classify` on the rows of a model_devi table (n, 8) of a walker that stopped for ``stop_reason``."""
    return classify(table[:, MAX_DEVI_F], lo, hi, table[:, DEVI_E], elo, ehi, stopped_on_bad_frame(stop_reason))
