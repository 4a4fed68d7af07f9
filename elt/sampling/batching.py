"""Which walkers share an exploration task when the explorer runs many walkers in one batched MD."""

from __future__ import annotations

import math
from typing import Optional, Sequence


def split_batches(sizes: Sequence[int], workers: int = 1, max_atoms: int = 4096,
                  max_walkers: Optional[int] = None) -> list[list[int]]:
    """Walker indices grouped into tasks: at most ``max_atoms`` atoms and ``max_walkers`` walkers
    per task, and at least ``workers`` tasks when there are that many walkers (so every worker
    gets one). Walkers keep their order inside a task; ``sizes`` are their atom counts."""
    n = len(sizes)
    if n == 0:
        return []
    per = math.ceil(n / max(1, min(workers, n)))
    if max_walkers is not None:
        per = min(per, max_walkers)
    batches, cur, atoms = [], [], 0
    for i, s in enumerate(sizes):
        if cur and (len(cur) >= per or atoms + s > max_atoms):
            batches.append(cur)
            cur, atoms = [], 0
        cur.append(i)
        atoms += s
    batches.append(cur)
    return batches
