"""JSON in and out of the hot path (orjson), safe for any text a client can send.

A JSON body may carry ``"\\ud800"``: a lone surrogate, valid JSON but not encodable as
UTF-8. Such text must become a bad row, never a 500, so ``dumps`` falls back to ASCII
escapes (which keep the original exactly) and ``envelope_json`` reports it.

Work per document is bounded: ``loads`` refuses JSON nested deeper than ``MAX_DEPTH`` (a
2 KB body of brackets made the standard parser raise ``RecursionError``, which escaped
every handler as a 500), so whatever is parsed can also be validated and serialised again
without deep recursion anywhere.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import orjson

from sidecar.common.envelope import Envelope, iso_ms

JSONDecodeError = json.JSONDecodeError
# Every event of a request shares its accepted_at: format each timestamp once.
_iso = functools.lru_cache(maxsize=4096)(iso_ms)
# Deeper than any tracker payload (Snowplow's own events nest a handful of levels), far
# below orjson's 1024 and Python's recursion limit, which jsonschema and json.dumps reach.
MAX_DEPTH = 64


def loads(data: bytes | str) -> Any:
    """orjson, and the standard parser for what it refuses but JSON allows (integers past
    64 bits, lone surrogates): such input is valid JSON, and is judged per event later."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):
            raise _too_deep(data) from None
        try:
            doc = json.loads(data)
        except RecursionError:
            raise _too_deep(data) from None
    # Nesting deeper than MAX_DEPTH needs more opening brackets than that: counting them
    # (at C speed) spares walking the documents that cannot be too deep, nearly all of them.
    if isinstance(doc, dict | list) and _openers(data) > MAX_DEPTH and depth(doc) > MAX_DEPTH:
        raise _too_deep(data)
    return doc


def _openers(data: bytes | str) -> int:
    if isinstance(data, str):
        return data.count("[") + data.count("{")
    return data.count(b"[") + data.count(b"{")


def depth(doc: Any) -> int:
    """Nesting depth of a parsed document, without recursion (1 for ``[]`` or ``{}``)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, d = stack.pop()
        if d > deepest:
            deepest = d
            if deepest > MAX_DEPTH:
                return deepest
        children = node.values() if isinstance(node, dict) else node
        for child in children:
            if isinstance(child, dict | list) and child:
                stack.append((child, d + 1))
            elif isinstance(child, dict | list) and d + 1 > deepest:
                deepest = d + 1
    return deepest


def _too_deep(data: bytes | str) -> JSONDecodeError:
    text = data if isinstance(data, str) else data[:100].decode("utf-8", "replace")
    return JSONDecodeError(f"nested deeper than {MAX_DEPTH} levels", text[:100], 0)


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
        "occurred_at": _iso(env.occurred_at_ms) if env.occurred_at_ms is not None else None,
        "accepted_at": _iso(env.accepted_at_ms),
        "attributes": dict(env.attributes),
        "payload": env.payload,
    }
    try:
        return orjson.dumps(doc)
    except TypeError as exc:
        raise ValueError(f"event holds text that is not valid Unicode: {exc}") from exc
