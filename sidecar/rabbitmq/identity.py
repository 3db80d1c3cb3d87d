"""``event_id`` derivation: the idempotency key of a delivery, stable across redeliveries.

Order of preference:

1. the AMQP ``message_id`` property, when the publisher set one (the publisher knows best);
2. a configured payload field (``event_id.payload_field``), when present and scalar;
3. otherwise a content hash: ``"sha256:" + hex(SHA-256(...))[:32]`` over a canonical
   encoding of the exchange, routing key, body and the publisher-set properties
   (content_type, content_encoding, type, correlation_id, app_id, user_id, timestamp,
   priority, expiration, reply_to) and headers.

Why the hash is stable across redeliveries: every input is fixed by the publisher at publish
time, and RabbitMQ redelivers the very same message. Nothing that changes per delivery goes
in: not the delivery tag, not the ``redelivered`` flag, not the consumer, and not the headers
brokers and plugins add on the way (``x-death``, ``x-delivery-count`` from quorum queues,
``x-first-death-*``/``x-last-death-*``, ``x-received-from`` from shovels/federation).

The consequence to know: two messages published with identical body, routing and
properties and no message_id are the same event as far as the bridge is concerned; a
publisher that sends byte-identical but distinct events must set ``message_id`` (or a
``timestamp``, or an id field in the payload).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from .routing import lookup_path

# Headers set by the broker or plugins, which differ between deliveries of one message.
BROKER_HEADERS = frozenset({"x-death", "x-delivery-count", "x-first-death-exchange",
                            "x-first-death-queue", "x-first-death-reason",
                            "x-last-death-exchange", "x-last-death-queue",
                            "x-last-death-reason", "x-received-from", "x-opt-deaths"})
HASHED_PROPERTIES = ("content_type", "content_encoding", "type", "correlation_id", "app_id",
                     "user_id", "timestamp", "priority", "expiration", "reply_to")
HASH_PREFIX = "sha256:"
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
MAX_ID_LEN = 255


def event_id_for(*, message_id: str | None, payload: Any, payload_field: str | None,
                 exchange: str, routing_key: str, body: bytes,
                 properties: Mapping[str, Any], headers: Mapping[str, Any] | None) -> str:
    if isinstance(message_id, bytes):  # pika hands over a short string it cannot decode
        message_id = message_id.decode("utf-8", "replace")
    if isinstance(message_id, str) and message_id:
        return message_id[:MAX_ID_LEN]
    if payload_field and payload is not None:
        value = lookup_path(payload, payload_field)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)[:MAX_ID_LEN]
    return delivery_hash(exchange=exchange, routing_key=routing_key, body=body,
                         properties=properties, headers=headers)


def delivery_hash(*, exchange: str, routing_key: str, body: bytes,
                  properties: Mapping[str, Any], headers: Mapping[str, Any] | None) -> str:
    meta = {
        "e": exchange,
        "r": routing_key,
        "p": {k: _canonical(properties[k]) for k in HASHED_PROPERTIES
              if properties.get(k) is not None},
        "h": {k: _canonical(v) for k, v in sorted((headers or {}).items())
              if k not in BROKER_HEADERS},
    }
    h = hashlib.sha256()
    encoded = _CANONICAL.encode(meta).encode()
    # Length-prefix the metadata so no body can be confused with other metadata.
    h.update(len(encoded).to_bytes(8, "big"))
    h.update(encoded)
    h.update(body)
    return HASH_PREFIX + h.hexdigest()[:32]


def _canonical(value: Any) -> Any:
    """A JSON-safe value that is the same for equal AMQP field values."""
    if isinstance(value, bytes):
        return {"b": value.hex()}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, Decimal | datetime):
        return {"s": str(value)}
    return value
