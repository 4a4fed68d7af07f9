"""Member checkpoints of elt's potential plugins: one ``torch.save`` file per member holding the
weights and a JSON metadata string, tagged with the plugin's format name and version; a JSON
copy of the metadata is written next to it (``member_0.pt`` -> ``member_0.json``) for people and
for :func:`elt.load_potential` (its ``kind``). Loading uses ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from elt.data.frames import atomic_write_bytes, atomic_write_text
from elt.errors import SetupError


def save_checkpoint(path: Path, fmt: str, version: int, state: dict, meta: dict) -> None:
    path = Path(path)
    buf = io.BytesIO()
    payload = {"format": fmt, "version": version, "metadata": json.dumps(meta),
               "state": {k: v.detach().cpu().clone() for k, v in state.items()}}
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True))


def read_checkpoint(path: Path, fmt: str, version: int, what: str) -> tuple[dict, dict]:
    """(state, metadata) of one checkpoint of format ``fmt`` (``what``: its name for people), with a
    clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise SetupError(f"potential checkpoint {str(path)!r} does not exist",
                         hint="point to a member checkpoint file or the model folder holding them")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SetupError(f"{str(path)!r} is not a readable torch checkpoint ({type(exc).__name__}: {exc})",
                         hint="the file may be truncated or from another program; retrain the member") from None
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise SetupError(f"{str(path)!r} is not an elt {what} checkpoint (format {got!r}, expected {fmt!r})",
                         hint="load checkpoints with the plugin that wrote them (load_potential's kind=, "
                              "or the model folder's potential.json)")
    if int(payload.get("version", -1)) > version:
        raise SetupError(f"{str(path)!r} has checkpoint version {payload.get('version')}, newer than this "
                         f"elt understands ({version})", hint="upgrade elt")
    return payload["state"], json.loads(payload["metadata"])
