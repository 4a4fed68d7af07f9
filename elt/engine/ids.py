"""Content-derived ids and seeds: the same task after a restart has the same id and seed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from elt.records import ident


def content_id(*parts: Any, length: int = 16) -> str:
    text = json.dumps([ident(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def derive_seed(*parts: Any) -> int:
    return int(content_id("seed", *parts), 16) % (2**31 - 1)
