"""The collector's pure core: one HTTP request in, the Kafka records it becomes out.

``CollectorCore.process`` never raises for anything a client sends: every event of the
request becomes exactly one output, a good event (envelope, routed to its topic) or a bad
row (to the bad-rows topic); a request that cannot be split into events at all becomes one
bad row. So good + bad = received, per request, and nothing is dropped silently.
Deduplication and the Kafka transaction happen later, in the sink.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sidecar.common.envelope import Envelope

from . import codec
from .atomic.layout import AtomicLayout, Extra
from .avro_schema import avro_value
from .badrows import BadRow, RequestInfo
from .enrichments import Enrichments
from .events import EventRejected, RequestContext, TrackerEvent, build_event
from .identity import CookieConfig, Identity, client_ip, is_anonymous, resolve_identity
from .iglu import IgluError, Resolver, Violation
from .protocol import (
    PIXEL_PATHS,
    REDIRECT_PATH,
    TP2_PATH,
    BodyTooLarge,
    ProtocolError,
    RawEvent,
    check_media_type,
    decompress,
    merge_query,
    parse_querystring,
    parse_tp2,
    redirect_event,
)
from .routing import Router

SOURCE = "snowplow"
_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True, slots=True)
class Limits:
    max_body_bytes: int = 1_048_576
    # A compressed body may inflate to this much (a gzip bomb stops here, a size bad row).
    max_inflated_bytes: int = 16 * 1_048_576
    # Kafka's default max message is ~1 MB; an envelope above this becomes a size bad row.
    max_event_bytes: int = 900_000
    # How much of the original a bad row keeps; the rest is counted, not stored.
    max_original_bytes: int = 262_144


@dataclass(frozen=True, slots=True)
class RawRequest:
    """An HTTP request as the shell read it; header names are lower-case."""

    method: str
    path: str
    query_string: str
    headers: Mapping[str, str]
    body: bytes | None
    received_at_ms: int
    remote: str | None = None
    body_size: int | None = None  # full size when ``body`` is only a sample
    body_too_large: bool = False
    # Set when the collector already resolved identity and IP (enrich reads them from the
    # raw record): no cookie is read or set again, and ``remote`` is the client's IP.
    network_userid: str | None = None
    # With ``body_too_large``: the body is this one event of a split batch, too large alone.
    event_index: int | None = None
    # The body is a part of a split batch whose first event was this one of the request:
    # event indexes (bad rows, violation paths) count within the request as sent.
    first_event_index: int = 0


@dataclass(frozen=True, slots=True)
class Output:
    """One Kafka record to write, with what the sink needs to dedup and count it."""

    topic: str
    key: bytes
    value: bytes
    outcome: str  # "good" | "bad"
    dedup_id: str | None
    event_type: str
    headers: tuple[tuple[str, bytes], ...] = ()
    check: str | None = None
    reason: str | None = None
    # For routes with format avro: the envelope as Avro-ready values; the sink encodes it
    # through the schema registry (I/O) just before producing.
    avro: dict[str, Any] | None = None
    # Snowplow's layout (atomic.layout): more Avro records of the same event, written with
    # it in its transaction, or not at all.
    extra: tuple[Extra, ...] = ()


@dataclass(frozen=True, slots=True)
class Processed:
    outputs: list[Output]
    identity: Identity
    pixel: bool
    events: list[TrackerEvent] = field(default_factory=list)

    @property
    def good(self) -> int:
        return sum(1 for o in self.outputs if o.outcome == "good")

    @property
    def bad(self) -> int:
        return sum(1 for o in self.outputs if o.outcome == "bad")


class CollectorCore:
    def __init__(self, resolver: Resolver, router: Router, bad_topic: str,
                 cookie: CookieConfig | None = None, limits: Limits | None = None,
                 use_forwarded_for: bool = True, collector: str = "conveyor-snowplow",
                 enrichments: Enrichments | None = None,
                 atomic: AtomicLayout | None = None) -> None:
        self.resolver = resolver
        self.router = router
        self.bad_topic = bad_topic
        self.cookie = cookie or CookieConfig()
        self.limits = limits or Limits()
        self.use_forwarded_for = use_forwarded_for
        self.collector = collector
        # Enrich's configured enrichments (sidecar/snowplow/enrichments), run on every
        # event that passed validation; None or empty: the event as the tracker sent it.
        self.enrichments = enrichments if enrichments and enrichments.steps else None
        # Enrich's second layout, Snowplow's own (sidecar/snowplow/atomic); None: off.
        self.atomic = atomic

    def process(self, req: RawRequest) -> Processed:
        headers = req.headers
        pixel = req.path in PIXEL_PATHS or req.path == REDIRECT_PATH
        try:
            query = parse_querystring(req.query_string)
            query_error: ProtocolError | None = None
        except ProtocolError as exc:
            query, query_error = {}, exc
        if req.network_userid is not None:
            identity = Identity(req.network_userid, "collector")
        else:
            identity = resolve_identity(query, headers, self.cookie, req.received_at_ms)
        anonymous = is_anonymous(headers)
        ctx = RequestContext(
            collector_tstamp_ms=req.received_at_ms,
            network_userid=identity.network_userid,
            ip=client_ip(req.remote, headers, self.use_forwarded_for, anonymous),
            useragent=headers.get("user-agent"),
            referer=headers.get("referer"),
            anonymous=anonymous,
            collector=self.collector,
            method=req.method,
            path=req.path,
        )
        info = RequestInfo(
            method=req.method, path=req.path, querystring=req.query_string or None,
            content_type=headers.get("content-type"),
            content_encoding=headers.get("content-encoding"),
            useragent=ctx.useragent, referer=ctx.referer, ip=ctx.ip,
            network_userid=identity.network_userid, anonymous=anonymous,
            body_size=req.body_size if req.body_size is not None else
            (len(req.body) if req.body is not None else None),
        )

        def whole(check: str, reason: str, message: str, original: bytes,
                  violations: list[Violation] | None = None, size: int | None = None
                  ) -> Processed:
            row = BadRow(check, reason, message, original, info, req.received_at_ms,
                         self.collector, violations or [], original_size=size)
            return Processed([self._bad_output(row)], identity, pixel)

        if pixel:
            original = req.query_string.encode("utf-8", errors="surrogateescape")
            if query_error is not None:
                return whole("protocol", query_error.reason, query_error.message, original)
            if not query:
                return whole("protocol", "empty", "pixel request without tracker parameters",
                             original)
            if req.path == REDIRECT_PATH:
                query = redirect_event(query)
            raw_events = [RawEvent(-1, query, original)]
        elif req.path == TP2_PATH:
            body = req.body or b""
            if req.body_too_large and req.event_index is not None:
                row = BadRow("size", "event_too_large",
                             f"event {req.event_index} of a split batch is {info.body_size} "
                             f"bytes, over the {self.limits.max_body_bytes}-byte limit alone",
                             body, info, req.received_at_ms, self.collector,
                             event_index=req.event_index, original_size=info.body_size)
                return Processed([self._bad_output(row)], identity, pixel)
            if req.body_too_large:
                return whole("size", "request_too_large",
                             f"body of {info.body_size} bytes is over the "
                             f"{self.limits.max_body_bytes}-byte limit", body,
                             size=info.body_size)
            try:
                if query_error is not None:
                    raise query_error
                check_media_type(headers.get("content-type"))
                plain = decompress(body, headers.get("content-encoding"),
                                   self.limits.max_inflated_bytes)
                raw_events = merge_query(parse_tp2(plain, self.resolver,
                                                   first_index=req.first_event_index), query)
            except BodyTooLarge as exc:
                return whole("size", "request_too_large", str(exc), body)
            except ProtocolError as exc:
                return whole("protocol", exc.reason, exc.message, body, exc.violations)
        else:
            return whole("protocol", "payload_format", f"no tracker endpoint at {req.path}",
                         req.body or b"")

        outputs: list[Output] = []
        events: list[TrackerEvent] = []
        for raw in raw_events:
            out, event = self._one(raw, ctx, info, req.received_at_ms)
            outputs.append(out)
            if event is not None:
                events.append(event)
        return Processed(outputs, identity, pixel, events)

    def _one(self, raw: RawEvent, ctx: RequestContext, info: RequestInfo,
             now_ms: int) -> tuple[Output, TrackerEvent | None]:
        index = raw.index if raw.index >= 0 else None
        try:
            event = build_event(raw.params, ctx, self.resolver, raw.violations)
        except EventRejected as exc:
            eid = raw.params.get("eid")
            usable_eid = eid.lower() if isinstance(eid, str) and _UUID_RE.match(eid) else None
            row = BadRow(exc.check, exc.reason, exc.message, raw.original, info, now_ms,
                         self.collector, exc.violations, event_id=usable_eid, event_index=index)
            return self._bad_output(row), None
        dest = self.router.route(event.kind, event.schema, event.params.get("aid"))
        payload = event.payload()
        if self.enrichments is not None:
            failure = self.enrichments.apply(payload, event.params)
            if failure is not None:
                row = BadRow("enrichment_failures", failure.enrichment,
                             f"enrichment {failure.enrichment} failed: {failure.message}",
                             raw.original, info, now_ms, self.collector,
                             event_id=event.event_id, event_index=index)
                return self._bad_output(row), None
        envelope = Envelope(
            event_id=event.event_id,
            event_type=event.event_type,
            source=SOURCE,
            accepted_at_ms=ctx.collector_tstamp_ms,
            payload=payload,
            occurred_at_ms=event.occurred_at_ms,
            attributes=event.attributes(),
        )
        try:
            value = codec.envelope_json(envelope)
        except ValueError as exc:
            row = BadRow("protocol", "encoding", str(exc), raw.original, info, now_ms,
                         self.collector, event_id=event.event_id, event_index=index)
            return self._bad_output(row), None
        if len(value) > self.limits.max_event_bytes:
            row = BadRow("size", "event_too_large",
                         f"event envelope of {len(value)} bytes is over the "
                         f"{self.limits.max_event_bytes}-byte limit",
                         raw.original, info, now_ms, self.collector,
                         event_id=event.event_id, event_index=index)
            return self._bad_output(row), None
        extra: tuple[Extra, ...] = ()
        if self.atomic is not None:
            try:
                extra = self.atomic.records(payload, event.event_id)
            except (ValueError, IgluError) as exc:
                # As Snowplow's enrich fails an event whose atomic fields do not fit.
                row = BadRow("enrichment_failures", "atomic_fields",
                             f"not in Snowplow's layout: {exc}", raw.original, info, now_ms,
                             self.collector, event_id=event.event_id, event_index=index)
                return self._bad_output(row), None
        avro = avro_value(envelope) if dest.format == "avro" else None
        out = Output(
            topic=dest.topic, key=event.event_id.encode(), value=value, outcome="good",
            dedup_id=event.event_id, event_type=envelope.event_type,
            headers=_good_headers(envelope.event_type, avro is not None), avro=avro,
            extra=extra,
        )
        return out, event

    def _bad_output(self, row: BadRow) -> Output:
        return Output(
            topic=self.bad_topic, key=row.key.encode(),
            value=row.to_json(self.limits.max_original_bytes), outcome="bad",
            dedup_id=row.event_id, event_type="bad_row",
            headers=(("event_type", b"bad_row"), ("source", SOURCE.encode()),
                     ("bad_row_check", row.check.encode()),
                     ("content-type", b"application/json")),
            check=row.check, reason=row.reason,
        )


@functools.lru_cache(maxsize=1024)
def _good_headers(event_type: str, avro: bool) -> tuple[tuple[str, bytes], ...]:
    # The same few event types all day: one tuple each, not three encodes per event.
    return (("event_type", event_type.encode()), ("source", SOURCE.encode()),
            ("content-type", b"application/vnd.confluent.avro" if avro
             else b"application/json"))
