"""JSON in and out of the hot path (orjson), safe for any text a client can send.

A JSON body may carry ``"\\ud800"``: a lone surrogate, valid JSON but not encodable as
UTF-8. Such text must become a bad row, never a 500, so ``dumps`` falls back to ASCII
escapes (which keep the original exactly) and ``envelope_json`` reports it.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from sidecar.common.envelope import Envelope, iso_ms

JSONDecodeError = json.JSONDecodeError


def loads(data: bytes | str) -> Any:
    """orjson, and the standard parser for what it refuses but JSON allows (integers past
    64 bits, lone surrogates): such input is valid JSON, and is judged per event later."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; ASCII escapes where the text is not valid Unicode."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode()


def envelope_json(env: Envelope) -> bytes:
    """Byte for byte ``Envelope.to_json()``, faster; raises ValueError on invalid Unicode."""
    doc = {
        "event_id": env.event_id,
        "event_type": env.event_type,
        "source": env.source,
        "occurred_at": iso_ms(env.occurred_at_ms) if env.occurred_at_ms is not None else None,
        "accepted_at": iso_ms(env.accepted_at_ms),
        "attributes": dict(env.attributes),
        "payload": env.payload,
    }
    try:
        return orjson.dumps(doc)
    except TypeError as exc:
        raise ValueError(f"event holds text that is not valid Unicode: {exc}") from exc
