"""Tracker-protocol parameters into a typed, validated event.

``build_event`` takes one event's parameters plus what the collector knows about the
request (``RequestContext``) and returns a ``TrackerEvent`` or raises ``EventRejected`` with
the failed check (``protocol`` or ``schema``), a reason code and the violations. Checks run
in order: protocol first (fields, ids, timestamps, base64, embedded JSON), then Iglu
schemas (the self-describing event and every context entity). An event is only good when
all of them pass; a half-valid event is not written.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import codec
from .iglu import IgluError, Resolver, SchemaKey, Violation
from .protocol import EVENT_KINDS, ProtocolError, decode_base64url

UNSTRUCT_VENDOR = ("com.snowplowanalytics.snowplow", "unstruct_event")
CONTEXTS_VENDOR = ("com.snowplowanalytics.snowplow", "contexts")
ANONYMOUS_NUID = "00000000-0000-0000-0000-000000000000"
_UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Namespace for event ids derived from content when a tracker sent none (see derive_event_id).
_DERIVED_NS = uuid.UUID("6f1c3a0e-5d8b-4b7e-9a51-2c1f0d7e4b3a")
# Parameters whose JSON the payload holds decoded, not as sent.
_DECODED = frozenset({"ue_px", "ue_pr", "cx", "co"})
# Parameters that change between a tracker's retries of the same event.
_VOLATILE = frozenset({"stm"})
# Epoch millis outside this range are not timestamps a tracker could mean (1990..2100).
_MIN_TS, _MAX_TS = 631_152_000_000, 4_102_444_800_000


class EventRejected(Exception):
    def __init__(self, check: str, reason: str, message: str,
                 violations: list[Violation] | None = None) -> None:
        super().__init__(message)
        self.check = check
        self.reason = reason
        self.message = message
        self.violations = violations or []


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What the collector adds to every event of one request."""

    collector_tstamp_ms: int
    network_userid: str | None
    ip: str | None
    useragent: str | None
    referer: str | None
    anonymous: bool = False
    collector: str = "conveyor-snowplow"
    method: str = "GET"
    path: str = "/i"


@dataclass(frozen=True, slots=True)
class TrackerEvent:
    event_id: str
    event_id_derived: bool
    kind: str
    ctx: RequestContext
    params: Mapping[str, str]
    unstruct: dict[str, Any] | None = None
    contexts: list[dict[str, Any]] = field(default_factory=list)
    dvce_created_ms: int | None = None
    dvce_sent_ms: int | None = None
    true_tstamp_ms: int | None = None

    @property
    def schema(self) -> str | None:
        return self.unstruct["schema"] if self.unstruct else None

    @property
    def event_type(self) -> str:
        """``vendor/name`` of a self-describing event, else the kind (``page_view``...)."""
        if self.unstruct:
            key = SchemaKey.parse(self.unstruct["schema"])
            return f"{key.vendor}/{key.name}"
        return self.kind

    @property
    def occurred_at_ms(self) -> int | None:
        """Best estimate of when it happened on the device.

        The tracker's true timestamp if set; else Snowplow's derived timestamp
        (collector time minus the device's own created→sent delay, which cancels
        device clock skew); else the device's created time.
        """
        if self.true_tstamp_ms is not None:
            return self.true_tstamp_ms
        if self.dvce_created_ms is not None and self.dvce_sent_ms is not None:
            delay = max(0, self.dvce_sent_ms - self.dvce_created_ms)
            return self.ctx.collector_tstamp_ms - delay
        return self.dvce_created_ms

    @property
    def network_userid(self) -> str | None:
        # A tracker may set the network user id itself (tnuid); that wins over the cookie.
        return self.params.get("tnuid") or self.ctx.network_userid

    @property
    def user_ipaddress(self) -> str | None:
        # An ip the tracker sets explicitly wins; SP-Anonymous only drops the request's.
        return self.params.get("ip") or self.ctx.ip

    def attributes(self) -> dict[str, str]:
        """Routing attributes of the envelope (strings only)."""
        attrs = {"kind": self.kind, "collector": self.ctx.collector}
        for name, param in (("app_id", "aid"), ("platform", "p"), ("tracker", "tv"),
                            ("namespace", "tna")):
            if self.params.get(param):
                attrs[name] = self.params[param]
        if self.unstruct:
            attrs["schema"] = self.unstruct["schema"]
        if self.event_id_derived:
            attrs["event_id_source"] = "derived"
        return attrs

    def payload(self) -> dict[str, Any]:
        """The event as it lands: named fields, decoded JSON, and every raw parameter."""
        p = self.params

        def num(name: str) -> float | None:
            # Not a finite number (e.g. se_va=1e999999, which float() makes Infinity): no
            # value; the parameter as sent stays in ``params``.
            try:
                value = float(p[name]) if p.get(name) else None
            except ValueError:
                return None
            return value if value is not None and math.isfinite(value) else None

        raw = {k: v for k, v in p.items() if k not in _DECODED}
        return {
            "event": self.kind,
            "app_id": p.get("aid"),
            "platform": p.get("p"),
            "name_tracker": p.get("tna"),
            "v_tracker": p.get("tv"),
            "collector_tstamp": self.ctx.collector_tstamp_ms,
            "dvce_created_tstamp": self.dvce_created_ms,
            "dvce_sent_tstamp": self.dvce_sent_ms,
            "true_tstamp": self.true_tstamp_ms,
            "derived_tstamp": self.occurred_at_ms,
            "user_id": p.get("uid"),
            "domain_userid": p.get("duid"),
            "domain_sessionid": p.get("sid"),
            "domain_sessionidx": int(p["vid"]) if p.get("vid", "").isdigit() else None,
            "network_userid": self.network_userid,
            "user_ipaddress": self.user_ipaddress,
            "useragent": p.get("ua") or self.ctx.useragent,
            "page_url": p.get("url"),
            "page_title": p.get("page"),
            "page_referrer": p.get("refr"),
            "request_referer": self.ctx.referer,
            "se_category": p.get("se_ca"),
            "se_action": p.get("se_ac"),
            "se_label": p.get("se_la"),
            "se_property": p.get("se_pr"),
            "se_value": num("se_va"),
            "unstruct_event": self.unstruct,
            "contexts": self.contexts,
            "anonymous": self.ctx.anonymous,
            "params": raw,
        }


def derive_event_id(params: Mapping[str, Any]) -> str:
    """A stable id for an event sent without ``eid``: the same parameters, the same id.

    Tracker retries of such an event then dedup like any other; ``stm`` (the send time)
    is left out because it changes on every retry.
    """
    canon = json.dumps({k: v for k, v in params.items() if k not in _VOLATILE},
                       sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return str(uuid.uuid5(_DERIVED_NS, canon))


def build_event(params: Mapping[str, Any], ctx: RequestContext, resolver: Resolver,
                violations: tuple[Violation, ...] = ()) -> TrackerEvent:
    if violations:
        raise EventRejected("protocol", "tracker_protocol",
                            "event does not match the payload_data schema", list(violations))
    if not params:
        raise EventRejected("protocol", "empty", "no tracker parameters")
    for v in params.values():
        if type(v) is not str:
            bad = sorted(k for k, v in params.items() if not isinstance(v, str))
            if bad:
                raise EventRejected("protocol", "tracker_protocol",
                                    f"parameters must be strings: {', '.join(bad[:10])}")
    p: dict[str, str] = dict(params)
    if not (p.get("e") and p.get("tv") and p.get("p")):
        missing = [k for k in ("e", "tv", "p") if not p.get(k)]
        raise EventRejected("protocol", "tracker_protocol",
                            f"required parameters missing: {', '.join(missing)}")
    kind = EVENT_KINDS.get(p["e"])
    if kind is None:
        raise EventRejected("protocol", "tracker_protocol", f"unknown event type e={p['e'][:20]!r}")

    eid = p.get("eid")
    if eid:
        if not _UUID_RE.match(eid):
            raise EventRejected("protocol", "tracker_protocol",
                                f"eid is not a UUID: {eid[:60]!r}")
        event_id, derived = eid.lower(), False
    else:
        event_id, derived = derive_event_id(p), True

    created = _timestamp(p, "dtm")
    sent = _timestamp(p, "stm")
    true_ts = _timestamp(p, "ttm")

    try:
        unstruct = _embedded(p, "ue_px", "ue_pr")
        contexts_doc = _embedded(p, "cx", "co")
    except ProtocolError as exc:
        raise EventRejected("protocol", exc.reason, exc.message) from exc
    if kind == "self_describing" and unstruct is None:
        raise EventRejected("protocol", "tracker_protocol",
                            "self-describing event (e=ue) without ue_pr or ue_px")

    schema_violations: list[Violation] = []
    reason = "schema_violation"
    contexts: list[dict[str, Any]] = []
    try:
        if unstruct is not None:
            schema_violations += _check_wrapper(resolver, unstruct, UNSTRUCT_VENDOR, "$.ue")
            if not schema_violations:
                unstruct = unstruct["data"]
                schema_violations += resolver.validate_self_describing(unstruct, "$.ue.data")
        if contexts_doc is not None:
            schema_violations += _check_wrapper(resolver, contexts_doc, CONTEXTS_VENDOR, "$.co")
            if not schema_violations:
                contexts = contexts_doc["data"]
                for i, entity in enumerate(contexts):
                    schema_violations += resolver.validate_self_describing(
                        entity, f"$.co.data[{i}]")
    except IgluError as exc:
        raise EventRejected("schema", exc.reason, exc.message) from exc
    if schema_violations:
        raise EventRejected("schema", reason,
                            f"{len(schema_violations)} schema violation(s)", schema_violations)

    return TrackerEvent(
        event_id=event_id, event_id_derived=derived, kind=kind, ctx=ctx, params=p,
        unstruct=unstruct if kind == "self_describing" else None,
        contexts=contexts, dvce_created_ms=created, dvce_sent_ms=sent, true_tstamp_ms=true_ts,
    )


def _timestamp(p: Mapping[str, str], name: str) -> int | None:
    raw = p.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise EventRejected("protocol", "tracker_protocol",
                            f"{name} is not epoch milliseconds: {raw[:40]!r}") from None
    if not _MIN_TS <= value <= _MAX_TS:
        raise EventRejected("protocol", "tracker_protocol",
                            f"{name}={value} is not a plausible epoch-millis timestamp")
    return value


def _embedded(p: Mapping[str, str], b64_name: str, json_name: str) -> Any:
    """The JSON in ``ue_px``/``cx`` (base64url) or ``ue_pr``/``co`` (plain); None if absent."""
    if p.get(b64_name):
        raw = decode_base64url(p[b64_name])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("embedded_json", f"{b64_name} does not decode to UTF-8") from exc
        where = b64_name
    elif p.get(json_name):
        text, where = p[json_name], json_name
    else:
        return None
    try:
        return codec.loads(text)
    except codec.JSONDecodeError as exc:
        raise ProtocolError("embedded_json", f"{where} is not JSON: {exc}") from exc


def _check_wrapper(resolver: Resolver, doc: Any, expected: tuple[str, str],
                   at: str) -> list[Violation]:
    """The envelope of ue/co must be Snowplow's own unstruct_event/contexts schema."""
    if not isinstance(doc, dict) or "schema" not in doc or "data" not in doc:
        raise EventRejected("protocol", "tracker_protocol",
                            f"{at} is not a self-describing JSON")
    key = SchemaKey.parse(doc["schema"])
    if (key.vendor, key.name) != expected:
        raise EventRejected("protocol", "tracker_protocol",
                            f"{at} wrapper schema is {key.uri}, "
                            f"expected {expected[0]}/{expected[1]}")
    return resolver.validate(key, doc["data"], at + ".data")
