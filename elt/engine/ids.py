"""Content-derived ids and seeds: the same task after a restart has the same id and seed."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def _canon(obj: Any):
    if hasattr(obj, "ident"):  # config sections and records: their content for ids
        return obj.ident()
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if isinstance(obj, (list, tuple)):
        return [_canon(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): _canon(v) for k, v in obj.items()}
    return obj


def content_id(*parts: Any, length: int = 16) -> str:
    text = json.dumps([_canon(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def derive_seed(*parts: Any) -> int:
    return int(content_id("seed", *parts), 16) % (2**31 - 1)
