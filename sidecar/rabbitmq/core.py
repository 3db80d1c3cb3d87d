"""The pure core: from a batch of deliveries to the records of one Kafka transaction.

No pika, no Kafka client: deliveries are plain values, the Avro encoder is injected, and the
result says what to produce and how to count it. The I/O shell (``bridge.py``) only calls
``Core.prepare`` / ``Core.plan`` and carries out the plan.

Per delivery the decision is, in order:

- over ``max_message_bytes``  -> dead letter ``oversize``
- JSON nested deeper than ``max_json_depth`` -> dead letter ``undecodable`` (checked before
  parsing: json's recursion would otherwise end the process)
- body not JSON                -> dead letter ``undecodable``
- already committed (ledger) or earlier in this batch -> duplicate: acked, not produced
- no route (or its topic template cannot be rendered for it) -> dead letter ``no_route``
- payload fails the route's schema -> dead letter ``schema``
- encoded record over ``max_record_bytes`` -> dead letter ``oversize``
- its topic refused by Kafka, or the record refused by Kafka -> dead letter ``kafka_rejected``
- anything else going wrong for this one delivery -> dead letter ``internal`` with the error
- else                         -> the routed record

``prepare`` and ``plan`` never raise for anything a delivery holds (body, properties,
headers of any type or depth): one message can never stop a queue. A property test over
arbitrary deliveries holds them to that.

Dead letters carry the original body and headers plus ``conveyor.dlq.reason`` and
``conveyor.dlq.detail``; every produced event_id (routed or dead-lettered) is recorded in the
ledger in the same transaction, so a redelivered poison message is not dead-lettered twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sidecar.common.envelope import Envelope
from sidecar.common.errors import ConfigError
from sidecar.exactly_once.producer import OutRecord

from .identity import delivery_hash, event_id_for
from .payloads import PayloadSchema
from .routing import RouteError, Router, RoutingInput, lookup_path, partition_key
from .settings import BridgeSettings, Route

UNDECODABLE = "undecodable"
SCHEMA = "schema"
NO_ROUTE = "no_route"
OVERSIZE = "oversize"
KAFKA_REJECTED = "kafka_rejected"
INTERNAL = "internal"
DLQ_REASONS = (UNDECODABLE, SCHEMA, NO_ROUTE, OVERSIZE, KAFKA_REJECTED, INTERNAL)
# Dead-letter details are cut to this many characters (they travel as a header).
DETAIL_CHARS = 500

# Room kept for headers when a dead letter's body must be cut to fit.
DLQ_HEADER_ROOM = 16 * 1024
_UNDECODED = object()

# (topic, avro schema, value) -> Confluent wire-format bytes. Raises ValueError/TypeError when
# the value does not fit the schema (a poison message); anything else is an outage.
AvroEncode = Callable[[str, dict[str, Any], dict[str, Any]], bytes]


class EncodeError(ValueError):
    """The value does not fit its schema."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """One AMQP delivery, as plain values."""

    queue: str
    delivery_tag: int
    exchange: str
    routing_key: str
    body: bytes
    redelivered: bool = False
    # Publisher-set basic properties by pika name (message_id, type, app_id, timestamp, ...).
    properties: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Prepared:
    delivery: Delivery
    event_id: str
    payload: Any  # decoded JSON, or _UNDECODED
    problem: tuple[str, str] | None  # (reason, detail) known before routing


@dataclass(frozen=True, slots=True)
class Plan:
    """What one transaction produces, and the counts to report once it is committed."""

    records: list[OutRecord]
    # One per record, in order: the event_id behind records[i] (to name the input Kafka
    # refused), and what the ledger records in the same transaction.
    ledger_ids: list[str]
    duplicates: int
    routed: int
    dead_letters: dict[str, int]


class Core:
    def __init__(self, settings: BridgeSettings, schemas: Mapping[int, PayloadSchema],
                 encode_avro: AvroEncode | None = None) -> None:
        self._s = settings
        try:
            self._router = Router(settings.routes, settings.default_route, settings.stream)
        except (ValueError, re.error) as exc:
            raise ConfigError(f"routes: {exc}") from exc
        self._schemas = schemas
        self._encode_avro = encode_avro
        self._envelope_schemas = {rid: s.envelope_schema() for rid, s in schemas.items()
                                  if s.kind == "avro"}
        self._source = settings.source_name
        self._dlq_topic = settings.dead_letter_topic

    # -- step 1: decode and identify ------------------------------------------------------

    def prepare(self, d: Delivery) -> Prepared:
        """Decode and identify one delivery; never raises."""
        try:
            return self._prepare(d)
        except Exception as exc:  # whatever it is, it is this message's
            return Prepared(d, fallback_event_id(d), _UNDECODED, (INTERNAL, describe(exc)))

    def _prepare(self, d: Delivery) -> Prepared:
        problem: tuple[str, str] | None = None
        payload: Any = _UNDECODED
        if len(d.body) > self._s.max_message_bytes:
            problem = (OVERSIZE, f"body is {len(d.body)} bytes, limit "
                                 f"max_message_bytes={self._s.max_message_bytes}")
        elif nested_deeper_than(d.body, self._s.max_json_depth):
            problem = (UNDECODABLE, f"JSON nested deeper than "
                                    f"max_json_depth={self._s.max_json_depth}")
        else:
            try:
                # Strict: UTF-8 only (json.loads would also guess UTF-16/32 from bytes) and no
                # NaN/Infinity, so the body is valid JSON text as it is (see _encode).
                payload = _STRICT_JSON.decode(d.body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                problem = (UNDECODABLE, f"body is not UTF-8 JSON: {exc}"[:300])
        try:
            event_id = event_id_for(
                message_id=d.properties.get("message_id"),
                payload=None if payload is _UNDECODED else payload,
                payload_field=self._s.event_id.payload_field,
                exchange=d.exchange, routing_key=d.routing_key, body=d.body,
                properties=d.properties, headers=d.headers,
            )
        except Exception as exc:  # odd property or header types
            event_id = fallback_event_id(d)
            if problem is None:
                problem = (INTERNAL, f"cannot derive event_id: {describe(exc)}")
        if not event_id.isascii():
            # Keys and headers are UTF-8: a lone surrogate in a message_id would not encode.
            event_id = event_id.encode("utf-8", "replace").decode("utf-8")
        return Prepared(d, event_id, payload, problem)

    # -- step 2: decide and build ---------------------------------------------------------

    def plan(self, batch: Sequence[Prepared], seen: Iterable[str], accepted_at_ms: int,
             forced: Mapping[str, tuple[str, str]] | None = None) -> Plan:
        """Records for the fresh deliveries of ``batch``; ``seen`` are already committed.
        ``forced`` (event_id -> reason, detail) are dead-lettered whatever they hold: what
        Kafka refused in an earlier try of this batch. Never raises."""
        fresh, duplicates = split_duplicates(batch, seen)
        records: list[OutRecord] = []
        dead: dict[str, int] = {}
        routed = 0
        forced = forced or {}
        for p in fresh:
            reason: str | None
            problem = forced.get(p.event_id)
            if problem is not None:
                rec, reason = self.safe_dead_letter(p, *problem, accepted_at_ms), problem[0]
            else:
                try:
                    rec, reason = self.build(p, accepted_at_ms)
                except Exception as exc:  # this message's fault, not the batch's
                    rec, reason = (self.safe_dead_letter(p, INTERNAL, describe(exc),
                                                         accepted_at_ms), INTERNAL)
            records.append(rec)
            if reason is None:
                routed += 1
            else:
                dead[reason] = dead.get(reason, 0) + 1
        return Plan(records, [p.event_id for p in fresh], len(duplicates), routed, dead)

    def build(self, p: Prepared, accepted_at_ms: int) -> tuple[OutRecord, str | None]:
        """The routed record, or a dead letter and its reason."""
        if p.problem is not None:
            return self.dead_letter(p, *p.problem, accepted_at_ms), p.problem[0]
        d = p.delivery
        try:
            target = self._router.route(RoutingInput(
                queue=d.queue, exchange=d.exchange, routing_key=d.routing_key,
                type=d.properties.get("type"), app_id=d.properties.get("app_id"),
                headers=d.headers))
        except RouteError as exc:
            return self.dead_letter(p, NO_ROUTE, str(exc), accepted_at_ms), NO_ROUTE
        if target is None:
            detail = (f"no route matches exchange={d.exchange!r} "
                      f"routing_key={d.routing_key!r} type={d.properties.get('type')!r}")
            return self.dead_letter(p, NO_ROUTE, detail, accepted_at_ms), NO_ROUTE
        route = target.route
        schema = self._schemas.get(id(route))
        if schema is not None:
            problem = schema.validate(p.payload)
            if problem is not None:
                return self.dead_letter(p, SCHEMA, f"{schema.path.name}: {problem}",
                                        accepted_at_ms), SCHEMA
        envelope = Envelope(
            event_id=p.event_id, event_type=target.event_type, source=self._source,
            accepted_at_ms=accepted_at_ms, payload=p.payload,
            occurred_at_ms=occurred_at_ms(route.occurred_at, d, p.payload),
            attributes=routing_attributes(d),
        )
        try:
            value = self._encode(route, target.topic, envelope, d.body)
        except EncodeError as exc:
            return self.dead_letter(p, SCHEMA, str(exc)[:DETAIL_CHARS], accepted_at_ms), SCHEMA
        key = partition_key(route.key, event_id=p.event_id, routing_key=d.routing_key,
                            headers=d.headers, payload=p.payload)
        headers = [*conveyor_headers(p.event_id, target.event_type, self._source,
                                     accepted_at_ms), *amqp_headers(d)]
        size = len(value) + len(key or b"") + sum(len(k) + len(v) for k, v in headers)
        if size > self._s.max_record_bytes:
            detail = (f"record for {target.topic} is {size} bytes, limit "
                      f"max_record_bytes={self._s.max_record_bytes}")
            return self.dead_letter(p, OVERSIZE, detail, accepted_at_ms), OVERSIZE
        return OutRecord(target.topic, value, key, tuple(headers)), None

    def _encode(self, route: Route, topic: str, envelope: Envelope, body: bytes) -> bytes:
        if route.format == "json":
            # The body is strict UTF-8 JSON (checked in prepare): splice it in rather than
            # encode the parsed payload again, the most expensive step per message.
            return envelope.to_json(raw_payload=body)
        if self._encode_avro is None:
            raise RuntimeError("an Avro route needs an Avro encoder")
        try:
            return self._encode_avro(topic, self._envelope_schemas[id(route)],
                                     envelope.to_avro())
        except (ValueError, TypeError) as exc:
            raise EncodeError(f"avro encoding failed: {exc}") from exc

    def safe_dead_letter(self, p: Prepared, reason: str, detail: str,
                         accepted_at_ms: int) -> OutRecord:
        """A dead letter even when the delivery's headers cannot be rendered."""
        try:
            return self.dead_letter(p, reason, detail, accepted_at_ms)
        except Exception as exc:
            return self.dead_letter(p, reason, f"{detail}; headers dropped: {describe(exc)}",
                                    accepted_at_ms, keep_headers=False)

    def dead_letter(self, p: Prepared, reason: str, detail: str,
                    accepted_at_ms: int, keep_headers: bool = True) -> OutRecord:
        d = p.delivery
        body = d.body
        headers = [
            *conveyor_headers(p.event_id, None, self._source, accepted_at_ms),
            ("conveyor.dlq.reason", reason.encode()),
            ("conveyor.dlq.detail", detail[:DETAIL_CHARS].encode("utf-8", "replace")),
            *(amqp_headers(d) if keep_headers else ()),
        ]
        room = self._s.dead_letter.max_record_bytes - DLQ_HEADER_ROOM
        if len(body) > room:
            # Kafka would refuse the whole record; keep what fits and say so loudly.
            headers.append(("conveyor.dlq.truncated_from", str(len(body)).encode()))
            body = body[:max(room, 0)]
        return OutRecord(self._dlq_topic, body, p.event_id.encode(), tuple(headers))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for all messages: json.loads with any option builds a new one per call.
_STRICT_JSON = json.JSONDecoder(parse_constant=_reject_constant)
# A JSON string (escapes included) or one bracket: strings may hold brackets that count not.
_JSON_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def nested_deeper_than(body: bytes, limit: int) -> bool:
    """True when ``body``, read as JSON, opens more than ``limit`` arrays/objects at once.

    The common case costs two C-speed counts: a body with no more opening brackets than
    the limit cannot be nested deeper. Only then are strings skipped, token by token."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for m in _JSON_TOKEN.finditer(body):
        tok = m.group()
        if tok == b"[" or tok == b"{":
            depth += 1
            if depth > limit:
                return True
        elif tok == b"]" or tok == b"}":
            depth -= 1
    return False


def describe(exc: BaseException) -> str:
    """One line naming an unexpected error, for a dead letter's detail."""
    try:
        text = str(exc)
    except Exception:  # an exception whose str() fails
        text = ""
    return f"{type(exc).__name__}: {text}"[:DETAIL_CHARS]


def fallback_event_id(d: Delivery) -> str:
    """An event_id from the body and routing alone, for a delivery whose properties or
    headers cannot be hashed: the same redelivery still gets the same id."""
    return delivery_hash(exchange=d.exchange, routing_key=d.routing_key, body=d.body,
                         properties={}, headers={})


def split_duplicates(batch: Sequence[Prepared],
                     seen: Iterable[str]) -> tuple[list[Prepared], list[Prepared]]:
    """The dedup decision: a delivery is a duplicate when its event_id is already committed
    (``seen``) or appeared earlier in the same batch; the first occurrence wins."""
    known = set(seen)
    fresh: list[Prepared] = []
    dups: list[Prepared] = []
    for p in batch:
        if p.event_id in known:
            dups.append(p)
        else:
            known.add(p.event_id)
            fresh.append(p)
    return fresh, dups


def routing_attributes(d: Delivery) -> dict[str, str]:
    attrs = {"amqp.exchange": d.exchange, "amqp.routing_key": d.routing_key,
             "amqp.queue": d.queue}
    for prop in ("type", "app_id", "correlation_id", "message_id"):
        value = d.properties.get(prop)
        if value is not None:
            attrs[f"amqp.{prop}"] = str(value)
    return attrs


def conveyor_headers(event_id: str, event_type: str | None, source: str,
                     accepted_at_ms: int) -> list[tuple[str, bytes]]:
    out = [("conveyor.event_id", event_id.encode()), ("conveyor.source", source.encode()),
           ("conveyor.accepted_at", str(accepted_at_ms).encode())]
    if event_type is not None:
        out.append(("conveyor.event_type", event_type.encode()))
    return out


def amqp_headers(d: Delivery) -> list[tuple[str, bytes]]:
    """AMQP properties as ``amqp.<name>`` and headers as ``amqp.header.<name>``."""
    out = [("amqp.exchange", d.exchange.encode()), ("amqp.routing_key", d.routing_key.encode())]
    for name, value in d.properties.items():
        if value is not None and name != "headers":
            out.append((f"amqp.{name}", header_bytes(value)))
    for name, value in d.headers.items():
        out.append((f"amqp.header.{name}", header_bytes(value)))
    return out


def header_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if type(value) is int:  # delivery_mode, priority, timestamp: the common case, cheaply
        return str(value).encode()
    try:
        return json.dumps(value, default=str, separators=(",", ":")).encode(
            "utf-8", "surrogatepass")
    except (ValueError, TypeError, RecursionError):  # nested past recursion, odd keys
        return b"<unrenderable " + type(value).__name__.encode() + b">"


def occurred_at_ms(source: str, d: Delivery, payload: Any) -> int | None:
    """Event time from ``source``; None when absent or unparseable (the event still lands)."""
    if source == "none":
        return None
    if source == "property:timestamp":
        return _to_ms(d.properties.get("timestamp"), seconds=True)
    kind, _, arg = source.partition(":")
    value = d.headers.get(arg) if kind == "header" else lookup_path(payload, arg)
    return _to_ms(value)


def _to_ms(value: Any, seconds: bool = False) -> int | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        # AMQP timestamps are seconds; elsewhere guess by magnitude (ms after Mar 1973).
        return int(value * 1000) if seconds or abs(value) < 1e11 else int(value)
    if isinstance(value, str):
        try:
            return _to_ms(float(value), seconds)
        except ValueError:
            pass
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            return None
        if dt.tzinfo is None:
            return None  # a local time of unknown zone is worse than no time
        return int(dt.timestamp() * 1000)
    return None
