"""DP-GEN ``model_devi.out`` files: one per exploration walker, read and aggregated per iteration
(the format, the stop reasons and the classification rules live in :mod:`elt.data.modeldevi`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from elt.data.modeldevi import HEADER, MAX_DEVI_F


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
