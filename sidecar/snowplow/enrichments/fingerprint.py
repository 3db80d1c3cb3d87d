"""Event fingerprint: Snowplow's event_fingerprint enrichment.

``event_fingerprint`` = the hex digest (MD5 by default, as Snowplow; SHA-256 if configured)
of every tracker parameter of the event as sent, name then value, in name order, except
``exclude_parameters`` (``stm`` and ``eid`` by default: a tracker's retry changes ``stm``,
and ``eid`` is deduplicated anyway). Two sends of the same event have the same fingerprint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from . import Step
from .config import FingerprintSettings


def fingerprint(params: Mapping[str, str], exclude: frozenset[str], algorithm: str) -> str:
    text = "".join([f"{name}{params[name]}" for name in sorted(params) if name not in exclude])
    data = text.encode("utf-8", "surrogatepass")
    h = hashlib.md5(data, usedforsecurity=False) if algorithm == "MD5" else hashlib.sha256(data)
    return h.hexdigest()


def build(settings: FingerprintSettings) -> Step:
    exclude = frozenset(settings.exclude_parameters)
    algorithm = settings.hash_algorithm

    def step(_payload: Any, params: Mapping[str, str]) -> dict[str, Any] | None:
        return {"event_fingerprint": fingerprint(params, exclude, algorithm)}

    return step
