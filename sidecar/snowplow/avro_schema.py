"""The Avro form of a good Snowplow event, for routes with ``format: avro``.

The envelope is the shared one (``sidecar.common.envelope.envelope_avro_schema``); its
payload is a fixed record of the named fields the collector knows. The self-describing event
and the context entities stay JSON text (``unstruct_event``, ``contexts``): their shape is
per schema, and that is what ``SnowplowEventToRow`` in transforms/ expects to turn into
loader-style columns. Every raw tracker parameter is kept in ``params`` (a string map), so
nothing the tracker sent is lost in the typed form. Registered under the topic's
``<topic>-value`` subject (TopicNameStrategy), as Kafka Connect's AvroConverter expects.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.common.envelope import Envelope, envelope_avro_schema

NAMESPACE = "io.conveyor.snowplow"
_TS = {"type": "long", "logicalType": "timestamp-millis"}
_STRINGS = ("app_id", "platform", "name_tracker", "v_tracker", "user_id", "domain_userid",
            "domain_sessionid", "network_userid", "user_ipaddress", "useragent", "page_url",
            "page_title", "page_referrer", "request_referer", "se_category", "se_action",
            "se_label", "se_property")
_TIMESTAMPS = ("dvce_created_tstamp", "dvce_sent_tstamp", "true_tstamp", "derived_tstamp")
# Filled by enrich's enrichments (sidecar/snowplow/enrichments), null when one is off.
ENRICHED_STRINGS = ("br_family", "br_name", "br_version", "os_family", "os_name", "dvce_type",
                    "mkt_medium", "mkt_source", "mkt_term", "mkt_content", "mkt_campaign",
                    "mkt_clickid", "mkt_network", "refr_medium", "refr_source", "refr_term",
                    "event_fingerprint", "geo_country", "geo_region", "geo_city", "geo_zipcode",
                    "geo_region_name", "geo_timezone")
ENRICHED_DOUBLES = ("geo_latitude", "geo_longitude")
_NAMED = (*_STRINGS, *_TIMESTAMPS, *ENRICHED_STRINGS)


def _nullable(t: Any, doc: str | None = None) -> dict[str, Any]:
    field: dict[str, Any] = {"type": ["null", t], "default": None}
    if doc:
        field["doc"] = doc
    return field


PAYLOAD_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "SnowplowEvent",
    "namespace": NAMESPACE,
    "doc": "A Snowplow tracker event as the Conveyor collector accepted it.",
    "fields": [
        {"name": "event", "type": "string", "doc": "page_view, struct, self_describing, ..."},
        {"name": "collector_tstamp", "type": _TS},
        *({"name": n, **_nullable(_TS)} for n in _TIMESTAMPS),
        *({"name": n, **_nullable("string")} for n in _STRINGS),
        {"name": "domain_sessionidx", **_nullable("int")},
        {"name": "se_value", **_nullable("double")},
        {"name": "unstruct_event",
         **_nullable("string", 'The self-describing event as JSON: {"schema", "data"}')},
        {"name": "contexts",
         **_nullable("string", 'The context entities as a JSON array of {"schema", "data"}')},
        {"name": "anonymous", "type": "boolean", "default": False},
        {"name": "params", "type": {"type": "map", "values": "string"}, "default": {},
         "doc": "Every tracker parameter as sent, except ue_px/ue_pr/cx/co (decoded above)"},
        *({"name": n, **_nullable("string")} for n in ENRICHED_STRINGS),
        *({"name": n, **_nullable("double")} for n in ENRICHED_DOUBLES),
        {"name": "dvce_ismobile", **_nullable("boolean")},
        {"name": "derived_contexts",
         **_nullable("string", "Entities enrichments derived (ua_parser_context), as a JSON "
                               'array of {"schema", "data"}')},
    ],
}

ENVELOPE_SCHEMA = envelope_avro_schema("SnowplowEnvelope", NAMESPACE, PAYLOAD_SCHEMA)


def avro_value(envelope: Envelope) -> dict[str, Any]:
    """The envelope as plain values that fit ``ENVELOPE_SCHEMA``."""
    p = envelope.payload
    get = p.get
    payload: dict[str, Any] = {name: get(name) for name in _NAMED}
    unstruct, contexts = get("unstruct_event"), get("contexts")
    payload["event"] = p["event"]
    payload["collector_tstamp"] = p["collector_tstamp"]
    payload["domain_sessionidx"] = _int32(get("domain_sessionidx"))
    payload["se_value"] = get("se_value")
    payload["unstruct_event"] = orjson.dumps(unstruct).decode() if unstruct is not None else None
    payload["contexts"] = orjson.dumps(contexts).decode() if contexts else None
    payload["anonymous"] = bool(get("anonymous"))
    for name in ENRICHED_DOUBLES:
        v = get(name)
        payload[name] = float(v) if isinstance(v, int | float) else None
    mobile = get("dvce_ismobile")
    payload["dvce_ismobile"] = mobile if isinstance(mobile, bool) else None
    derived = get("derived_contexts")
    payload["derived_contexts"] = orjson.dumps(derived).decode() if derived else None
    payload["params"] = {k: v for k, v in get("params", {}).items() if isinstance(v, str)}
    value = envelope.to_avro()
    value["payload"] = payload
    return value


def _int32(v: Any) -> int | None:
    return v if isinstance(v, int) and -(2**31) <= v < 2**31 else None
