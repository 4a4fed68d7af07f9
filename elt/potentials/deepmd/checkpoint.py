"""Deep Potential member checkpoints (:mod:`elt.potentials.checkpoint`, format ``elt-deepmd-se_e2_a``):
the weights (k = 1) and metadata (elements, model hyperparameters, statistics, data-set hash,
metrics). Loading never touches the training code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from elt.errors import SetupError
from elt.potentials.checkpoint import read_checkpoint, save_checkpoint

FORMAT = "elt-deepmd-se_e2_a"
VERSION = 1
# hyperparameters that must agree between members (and between a warm start and its config)
ARCH_KEYS = ("rcut", "rcut_smth", "embedding", "axis_neuron", "fitting")


def save_member(path: Path, state: dict, meta: dict) -> None:
    save_checkpoint(path, FORMAT, VERSION, state, meta)


def read_member(path: Path) -> tuple[dict, dict]:
    """(state, metadata) of one member checkpoint, with a clear error for anything else."""
    return read_checkpoint(path, FORMAT, VERSION, "Deep Potential")


def check_compatible(metas: Sequence[dict], paths: Sequence[Path]) -> None:
    """All members must share elements and architecture."""
    ref = metas[0]
    for meta, path in zip(metas[1:], paths[1:]):
        if list(meta["elements"]) != list(ref["elements"]):
            raise SetupError(f"member {str(path)!r} was trained for elements {meta['elements']}, "
                             f"but {str(paths[0])!r} for {ref['elements']}",
                             hint="load members of one ensemble (same iteration and elements) together")
        diff = [k for k in ARCH_KEYS if meta["model"][k] != ref["model"][k]]
        if diff:
            raise SetupError(f"member {str(path)!r} differs from {str(paths[0])!r} in {', '.join(diff)}",
                             hint="load members of one ensemble (same model hyperparameters) together")
