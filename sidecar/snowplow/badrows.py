"""Bad rows: what the collector writes for anything it cannot accept as a good event.

A bad row is a self-describing JSON, ``iglu:com.conveyor.snowplow/bad_row/jsonschema/1-0-1``
(the schema ships in the bundled Iglu repository and documents every field)::

    {"schema": "iglu:com.conveyor.snowplow/bad_row/jsonschema/1-0-1",
     "data": {
       "bad_row_id": "<uuid>",            # key of the Kafka record
       "check": "size" | "protocol" | "schema",
       "reason": "request_too_large" | "json" | "base64" | "schema_not_found" | ...,
       "message": "human-readable, names the field",
       "violations": [{"path": "$.ue.data.total", "message": "...", "schema": "iglu:..."}],
       "event_id": "<eid>" | null,         # when the event had a usable one
       "event_index": 3 | null,            # position in the tp2 batch; null = whole request
       "received_at": "2024-05-01T10:00:00.123+00:00",
       "collector": "conveyor-snowplow/0.1.0",
       "request": {"method", "path", "querystring", "content_type", "content_encoding",
                   "useragent", "referer", "ip", "network_userid", "anonymous", "body_size"},
       "original": {"encoding": "utf-8" | "base64", "data": "...", "size": 1234,
                    "truncated": false}}}

``original`` holds the bytes as received: the event's own JSON for one event of a batch,
the querystring of a GET, the whole body when the body itself is the problem. It is text
when it is valid UTF-8 and base64 otherwise, and is cut at a configured size (``truncated``
then says so, ``size`` keeps the full length) so that a bad row always fits in Kafka.

Checks, in the order the collector runs them:
- ``size``: ``request_too_large`` (body over ``http.max_body_bytes``, also after gzip),
  ``event_too_large`` (one event's envelope over ``limits.max_event_bytes``);
- ``protocol``: ``content_type``, ``encoding`` (not UTF-8, bad gzip), ``empty``, ``json``,
  ``payload_format`` (not a payload_data self-describing JSON), ``tracker_protocol``
  (payload_data violations, missing/invalid fields, eid not a UUID, bad timestamps, unknown
  ``e``), ``base64`` (``ue_px``/``cx``), ``embedded_json`` (``ue_pr``/``co``/decoded
  base64 not JSON);
- ``schema``: ``invalid_schema_key``, ``schema_not_found``, ``invalid_schema``,
  ``schema_violation``;
- and from enrich (1-0-1): ``protocol/raw_format`` (a raw record it cannot read),
  ``protocol/unprocessable`` (an unexpected failure while enriching the request, named in
  the message: a bug to fix, after which the row can be replayed), and
  ``size/rejected_by_kafka`` (Kafka refused the good event, e.g. over the topic's
  ``max.message.bytes``);
- ``enrichment_failures`` (1-0-2): an enrichment failed on a valid event; ``reason`` names
  it (``ua_parser``, ``ip_lookup``, ``pii``, ...), ``message`` says what it raised. The
  original is the event as sent, so it can be replayed once the cause is fixed.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any

from sidecar.common.envelope import iso_ms

from . import codec
from .iglu import Violation

BAD_ROW_SCHEMA = "iglu:com.conveyor.snowplow/bad_row/jsonschema/1-0-1"
# 1-0-2 adds the enrichment_failures check; only those rows need it, so the others keep
# naming 1-0-1 (which every 1-0-2 reader reads too: a revision only adds values).
ENRICHMENT_BAD_ROW_SCHEMA = "iglu:com.conveyor.snowplow/bad_row/jsonschema/1-0-2"
CHECKS = ("size", "protocol", "schema", "enrichment_failures")
# A bad row is never larger than this, whatever the original: text of control characters
# grows sixfold as JSON escapes and base64 by a third, so the original is cut further until
# the row fits (below Kafka's default 1 MB record limit, with room for headers).
MAX_BAD_ROW_BYTES = 900_000
MAX_VIOLATIONS = 100


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """The request facts a bad row records (the IP is already dropped when anonymous)."""

    method: str
    path: str
    querystring: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    useragent: str | None = None
    referer: str | None = None
    ip: str | None = None
    network_userid: str | None = None
    anonymous: bool = False
    body_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "path": self.path, "querystring": self.querystring,
            "content_type": self.content_type, "content_encoding": self.content_encoding,
            "useragent": self.useragent, "referer": self.referer, "ip": self.ip,
            "network_userid": self.network_userid, "anonymous": self.anonymous,
            "body_size": self.body_size,
        }


@dataclass(frozen=True, slots=True)
class BadRow:
    check: str
    reason: str
    message: str
    original: bytes
    request: RequestInfo
    received_at_ms: int
    collector: str
    violations: list[Violation] = field(default_factory=list)
    event_id: str | None = None
    event_index: int | None = None
    original_size: int | None = None  # when ``original`` is already a cut sample
    bad_row_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        if self.check not in CHECKS:
            raise ValueError(f"unknown check {self.check!r}")

    def to_dict(self, max_original_bytes: int) -> dict[str, Any]:
        return {
            "schema": ENRICHMENT_BAD_ROW_SCHEMA if self.check == "enrichment_failures"
            else BAD_ROW_SCHEMA,
            "data": {
                "bad_row_id": self.bad_row_id,
                "check": self.check,
                "reason": self.reason,
                "message": self.message[:2000],
                "violations": [v.to_dict() for v in self.violations[:MAX_VIOLATIONS]],
                "event_id": self.event_id,
                "event_index": self.event_index,
                "received_at": iso_ms(self.received_at_ms),
                "collector": self.collector,
                "request": self.request.to_dict(),
                "original": encode_original(self.original, max_original_bytes,
                                            self.original_size),
            },
        }

    def to_json(self, max_original_bytes: int, max_bytes: int = MAX_BAD_ROW_BYTES) -> bytes:
        """The row as JSON, at most ``max_bytes``: the original is cut until it fits."""
        limit = max_original_bytes
        while True:
            out = codec.dumps(self.to_dict(limit))
            if len(out) <= max_bytes or limit == 0:
                return out
            # Scale by how far over we are, and at least halve: a few rounds at most.
            limit = min(limit // 2, int(limit * max_bytes / len(out)))

    @property
    def key(self) -> str:
        return self.event_id or self.bad_row_id


def encode_original(raw: bytes, limit: int, full_size: int | None = None) -> dict[str, Any]:
    """Text when the bytes are UTF-8, base64 otherwise; cut at ``limit`` bytes."""
    size = full_size if full_size is not None else len(raw)
    cut = raw[:limit]
    truncated = size > len(cut)
    # A cut may split a multi-byte character: up to 3 trailing bytes may be dropped.
    for drop in range(4 if truncated else 1):
        try:
            text = cut[: len(cut) - drop].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return {"encoding": "utf-8", "data": text, "size": size, "truncated": truncated}
    return {"encoding": "base64", "data": base64.b64encode(cut).decode("ascii"),
            "size": size, "truncated": truncated}
