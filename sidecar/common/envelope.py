"""The envelope every event travels in, whatever its source (see the architecture doc).

``event_id`` is the idempotency key end to end: bridges dedup on it before Kafka and sinks
upsert on it. ``accepted_at`` is when a bridge took the event, so delivery latency is
always ``landed_at - accepted_at`` once a sink adds ``landed_at``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Built once: json.dumps with any option builds a new encoder per call, which shows per event.
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)

ENVELOPE_FIELDS = ("event_id", "event_type", "source", "occurred_at", "accepted_at",
                   "attributes", "payload")


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class Envelope:
    event_id: str
    event_type: str
    source: str
    accepted_at_ms: int
    payload: Any
    occurred_at_ms: int | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def to_avro(self) -> dict[str, Any]:
        """Plain values for fastavro; times are epoch millis (timestamp-millis)."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "source": self.source,
            "occurred_at": self.occurred_at_ms,
            "accepted_at": self.accepted_at_ms,
            "attributes": dict(self.attributes),
            "payload": self.payload,
        }

    def to_json(self, raw_payload: bytes | None = None) -> bytes:
        """JSON for humans and schemaless consumers; times as ISO-8601 UTC strings.

        ``raw_payload``: the payload as the JSON text it arrived in (strict JSON, UTF-8),
        spliced in as is instead of re-encoding ``payload``; the bridge's hot path.
        """
        if raw_payload is not None:
            head = self._json_doc()
            del head["payload"]
            text = _COMPACT.encode(head).encode()
            return text[:-1] + b',"payload":' + raw_payload + b"}"
        return _COMPACT.encode(self._json_doc()).encode()

    def _json_doc(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "source": self.source,
            "occurred_at": iso_ms(self.occurred_at_ms) if self.occurred_at_ms is not None else None,
            "accepted_at": iso_ms(self.accepted_at_ms),
            "attributes": dict(self.attributes),
            "payload": self.payload,
        }


def envelope_avro_schema(name: str, namespace: str, payload_schema: Any) -> dict[str, Any]:
    """The Avro record for an envelope whose payload has ``payload_schema``."""
    ts = {"type": "long", "logicalType": "timestamp-millis"}
    return {
        "type": "record",
        "name": name,
        "namespace": namespace,
        "doc": "Conveyor envelope: one per event, whatever its source.",
        "fields": [
            {"name": "event_id", "type": "string"},
            {"name": "event_type", "type": "string"},
            {"name": "source", "type": "string"},
            {"name": "occurred_at", "type": ["null", ts], "default": None},
            {"name": "accepted_at", "type": ts},
            {"name": "attributes", "type": {"type": "map", "values": "string"}, "default": {}},
            {"name": "payload", "type": payload_schema},
        ],
    }
