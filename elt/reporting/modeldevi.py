"""DP-GEN ``model_devi.out`` files: one per exploration walker, read and aggregated per iteration.

Columns (DP-GEN's layout, plus ``devi_e``): step, max/min/avg virial deviation (eV/atom),
max/min/avg force deviation (eV/Å), energy deviation per atom (eV/atom). Lines starting with ``#``
are comments, so ``numpy.loadtxt`` reads every file, and the aggregated ones, as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import numpy as np

COLUMNS = ("step", "max_devi_v", "min_devi_v", "avg_devi_v", "max_devi_f", "min_devi_f", "avg_devi_f", "devi_e")
MAX_DEVI_F = COLUMNS.index("max_devi_f")
DEVI_E = COLUMNS.index("devi_e")
HEADER = " ".join(COLUMNS)


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


# a walker that stopped for one of these reasons had its last recorded frame counted failed
BAD_STOPS = ("nan", "too_close", "energy_spike")


def stopped_on_bad_frame(stop_reason) -> bool:
    return bool(stop_reason) and str(stop_reason).split(" ")[0] in BAD_STOPS


def count_classes(max_devi_f: np.ndarray, lo: float, hi: float, last_failed: bool = False) -> dict[str, int]:
    """DP-GEN classes by the force criterion: accurate f < lo, candidate lo ≤ f < hi, failed
    otherwise (NaN included). ``last_failed``: the last frame is failed whatever its deviation
    (the frame that stopped its walker: nan, too_close, energy_spike)."""
    f = np.array(max_devi_f, dtype=np.float64)
    if last_failed and len(f):
        f[-1] = np.nan
    acc = int(np.sum(f < lo))
    fail = int(np.sum(~(f < hi)))
    return {"accurate": acc, "candidate": int(len(f)) - acc - fail, "failed": fail}


def summarize(table: np.ndarray) -> Optional[dict]:
    """Frames and max-force-deviation quantiles of one table (None when empty)."""
    if not len(table):
        return None
    f = table[:, MAX_DEVI_F]
    fin = f[np.isfinite(f)]
    q = (lambda p: float(np.quantile(fin, p))) if len(fin) else (lambda p: None)
    return {"frames": int(len(f)), "nan": int(len(f) - len(fin)), "median": q(0.5), "p90": q(0.9),
            "max": float(fin.max()) if len(fin) else None}


def write_aggregate(blocks: Iterable[tuple[str, Path]], out: Path) -> None:
    """One file for an iteration: the walkers' files one after the other, each block introduced by
    a ``# walker ID: PATH`` comment; still 8 columns for numpy.loadtxt. The data lines are copied
    as they are (the walkers wrote them in this layout), so 10^6 frames take a second, not a minute;
    a last line without its newline (a file still being written) is left out."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(out).with_name(Path(out).name + ".tmp")
    with open(tmp, "w") as dst:
        dst.write("# " + HEADER + "\n")
        for walker, path in blocks:
            dst.write(f"# walker {walker}: {path}\n")
            with open(path) as src:
                for line in src:
                    if line.endswith("\n") and line.strip() and not line.lstrip().startswith("#"):
                        dst.write(line)
    tmp.replace(out)
