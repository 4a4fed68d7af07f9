"""Member checkpoints: one ``torch.save`` file per member holding the weights (k = 1) and a JSON
metadata string (elements, model hyperparameters, statistics, data-set hash, metrics). A JSON
copy of the metadata is written next to it (``member_0.pt`` -> ``member_0.json``) for people.
Loading uses ``torch.load(weights_only=True)`` and never touches the training code.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Sequence

import torch

from elt.data.frames import atomic_write_bytes, atomic_write_text
from elt.errors import SetupError

FORMAT = "elt-deepmd-se_e2_a"
VERSION = 1
# hyperparameters that must agree between members (and between a warm start and its config)
ARCH_KEYS = ("rcut", "rcut_smth", "embedding", "axis_neuron", "fitting")


def save_member(path: Path, state: dict, meta: dict) -> None:
    path = Path(path)
    buf = io.BytesIO()
    payload = {"format": FORMAT, "version": VERSION, "metadata": json.dumps(meta),
               "state": {k: v.detach().cpu().clone() for k, v in state.items()}}
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True))


def read_member(path: Path) -> tuple[dict, dict]:
    """(state, metadata) of one member checkpoint, with a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise SetupError(f"potential checkpoint {str(path)!r} does not exist",
                         hint="point to a member_*.pt file or the directory holding them")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SetupError(f"{str(path)!r} is not a readable torch checkpoint ({type(exc).__name__}: {exc})",
                         hint="the file may be truncated or from another program; retrain the member") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise SetupError(f"{str(path)!r} is not an elt Deep Potential checkpoint (format {got!r}, "
                         f"expected {FORMAT!r})",
                         hint="load checkpoints written by elt's deepmd trainer, or use the plugin that wrote it")
    if int(payload.get("version", -1)) > VERSION:
        raise SetupError(f"{str(path)!r} has checkpoint version {payload.get('version')}, newer than this "
                         f"elt understands ({VERSION})", hint="upgrade elt")
    return payload["state"], json.loads(payload["metadata"])


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
