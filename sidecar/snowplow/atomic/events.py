"""A good event as one row of Snowplow's ``atomic.events``, column for column.

The columns, their types and their NOT NULLs are those of Snowplow's open-source Postgres
loader (``snowplow-incubator/snowplow-postgres-loader``, ``storage/definitions.scala``,
``atomicColumns``); ``tests/contract/snowplow_postgres_loader.json`` holds the landed table
to them. Each column's Avro type tells Debezium's JDBC sink which PostgreSQL type to create
(``types.avro_type``), so the sink makes the loader's table, not one of its own.

Values come from the event as enrich left it (the payload, with the enrichments' fields)
and the tracker parameters that the payload keeps as sent (``params``), under Snowplow's
names (the tracker protocol's parameter table). A value that does not fit its column (a
page URL over 4096 characters, a session id that is no UUID) raises ``ValueError``: the
event becomes an ``enrichment_failures`` bad row, as Snowplow's enrich fails an event whose
atomic fields are too long, and it can be recovered once the cause is fixed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..iglu import SchemaKey
from .types import avro_field, fit

# (column, PostgreSQL type, NOT NULL), in the loader's order.
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("app_id", "VARCHAR(255)", False),
    ("platform", "VARCHAR(255)", False),
    ("etl_tstamp", "TIMESTAMP", False),
    ("collector_tstamp", "TIMESTAMP", True),
    ("dvce_created_tstamp", "TIMESTAMP", False),
    ("event", "VARCHAR(128)", False),
    ("event_id", "UUID", True),
    ("txn_id", "INTEGER", False),
    ("name_tracker", "VARCHAR(128)", False),
    ("v_tracker", "VARCHAR(100)", False),
    ("v_collector", "VARCHAR(100)", True),
    ("v_etl", "VARCHAR(100)", True),
    ("user_id", "VARCHAR(255)", False),
    ("user_ipaddress", "VARCHAR(45)", False),
    ("user_fingerprint", "VARCHAR(50)", False),
    ("domain_userid", "VARCHAR(36)", False),
    ("domain_sessionidx", "INTEGER", False),
    ("network_userid", "VARCHAR(38)", False),
    ("geo_country", "CHAR(2)", False),
    ("geo_region", "CHAR(3)", False),
    ("geo_city", "VARCHAR(75)", False),
    ("geo_zipcode", "VARCHAR(15)", False),
    ("geo_latitude", "DOUBLE PRECISION", False),
    ("geo_longitude", "DOUBLE PRECISION", False),
    ("geo_region_name", "VARCHAR(100)", False),
    ("ip_isp", "VARCHAR(100)", False),
    ("ip_organization", "VARCHAR(100)", False),
    ("ip_domain", "VARCHAR(100)", False),
    ("ip_netspeed", "VARCHAR(100)", False),
    ("page_url", "VARCHAR(4096)", False),
    ("page_title", "VARCHAR(2000)", False),
    ("page_referrer", "VARCHAR(4096)", False),
    ("page_urlscheme", "VARCHAR(16)", False),
    ("page_urlhost", "VARCHAR(255)", False),
    ("page_urlport", "INTEGER", False),
    ("page_urlpath", "VARCHAR(3000)", False),
    ("page_urlquery", "VARCHAR(6000)", False),
    ("page_urlfragment", "VARCHAR(3000)", False),
    ("refr_urlscheme", "VARCHAR(16)", False),
    ("refr_urlhost", "VARCHAR(255)", False),
    ("refr_urlport", "INTEGER", False),
    ("refr_urlpath", "VARCHAR(6000)", False),
    ("refr_urlquery", "VARCHAR(6000)", False),
    ("refr_urlfragment", "VARCHAR(3000)", False),
    ("refr_medium", "VARCHAR(25)", False),
    ("refr_source", "VARCHAR(50)", False),
    ("refr_term", "VARCHAR(255)", False),
    ("mkt_medium", "VARCHAR(255)", False),
    ("mkt_source", "VARCHAR(255)", False),
    ("mkt_term", "VARCHAR(255)", False),
    ("mkt_content", "VARCHAR(500)", False),
    ("mkt_campaign", "VARCHAR(255)", False),
    ("se_category", "VARCHAR(1000)", False),
    ("se_action", "VARCHAR(1000)", False),
    ("se_label", "VARCHAR(1000)", False),
    ("se_property", "VARCHAR(1000)", False),
    ("se_value", "DOUBLE PRECISION", False),
    ("tr_orderid", "VARCHAR(255)", False),
    ("tr_affiliation", "VARCHAR(255)", False),
    ("tr_total", "DOUBLE PRECISION", False),
    ("tr_tax", "DOUBLE PRECISION", False),
    ("tr_shipping", "DOUBLE PRECISION", False),
    ("tr_city", "VARCHAR(255)", False),
    ("tr_state", "VARCHAR(255)", False),
    ("tr_country", "VARCHAR(255)", False),
    ("ti_orderid", "VARCHAR(255)", False),
    ("ti_sku", "VARCHAR(255)", False),
    ("ti_name", "VARCHAR(255)", False),
    ("ti_category", "VARCHAR(255)", False),
    ("ti_price", "DOUBLE PRECISION", False),
    ("ti_quantity", "INTEGER", False),
    ("pp_xoffset_min", "INTEGER", False),
    ("pp_xoffset_max", "INTEGER", False),
    ("pp_yoffset_min", "INTEGER", False),
    ("pp_yoffset_max", "INTEGER", False),
    ("useragent", "VARCHAR(1000)", False),
    ("br_name", "VARCHAR(50)", False),
    ("br_family", "VARCHAR(50)", False),
    ("br_version", "VARCHAR(50)", False),
    ("br_type", "VARCHAR(50)", False),
    ("br_renderengine", "VARCHAR(50)", False),
    ("br_lang", "VARCHAR(255)", False),
    ("br_features_pdf", "BOOLEAN", False),
    ("br_features_flash", "BOOLEAN", False),
    ("br_features_java", "BOOLEAN", False),
    ("br_features_director", "BOOLEAN", False),
    ("br_features_quicktime", "BOOLEAN", False),
    ("br_features_realplayer", "BOOLEAN", False),
    ("br_features_windowsmedia", "BOOLEAN", False),
    ("br_features_gears", "BOOLEAN", False),
    ("br_features_silverlight", "BOOLEAN", False),
    ("br_cookies", "BOOLEAN", False),
    ("br_colordepth", "VARCHAR(12)", False),
    ("br_viewwidth", "INTEGER", False),
    ("br_viewheight", "INTEGER", False),
    ("os_name", "VARCHAR(50)", False),
    ("os_family", "VARCHAR(50)", False),
    ("os_manufacturer", "VARCHAR(50)", False),
    ("os_timezone", "VARCHAR(50)", False),
    ("dvce_type", "VARCHAR(50)", False),
    ("dvce_ismobile", "BOOLEAN", False),
    ("dvce_screenwidth", "INTEGER", False),
    ("dvce_screenheight", "INTEGER", False),
    ("doc_charset", "VARCHAR(128)", False),
    ("doc_width", "INTEGER", False),
    ("doc_height", "INTEGER", False),
    ("tr_currency", "CHAR(3)", False),
    ("tr_total_base", "DOUBLE PRECISION", False),
    ("tr_tax_base", "DOUBLE PRECISION", False),
    ("tr_shipping_base", "DOUBLE PRECISION", False),
    ("ti_currency", "CHAR(3)", False),
    ("ti_price_base", "DOUBLE PRECISION", False),
    ("base_currency", "CHAR(3)", False),
    ("geo_timezone", "VARCHAR(64)", False),
    ("mkt_clickid", "VARCHAR(128)", False),
    ("mkt_network", "VARCHAR(64)", False),
    ("etl_tags", "VARCHAR(500)", False),
    ("dvce_sent_tstamp", "TIMESTAMP", False),
    ("refr_domain_userid", "VARCHAR(36)", False),
    ("refr_dvce_tstamp", "TIMESTAMP", False),
    ("domain_sessionid", "UUID", False),
    ("derived_tstamp", "TIMESTAMP", False),
    ("event_vendor", "VARCHAR(1000)", False),
    ("event_name", "VARCHAR(1000)", False),
    ("event_format", "VARCHAR(128)", False),
    ("event_version", "VARCHAR(128)", False),
    ("event_fingerprint", "VARCHAR(128)", False),
    ("true_tstamp", "TIMESTAMP", False),
)

NAMESPACE = "io.conveyor.snowplow.atomic"
SCHEMA: dict[str, Any] = {
    "type": "record", "name": "events", "namespace": NAMESPACE,
    "doc": "Snowplow's atomic.events row (the Postgres loader's layout)",
    "fields": [avro_field(name, pg, not_null) for name, pg, not_null in COLUMNS],
}

# Our event kinds under the names Snowplow's "event" column uses.
EVENT_NAMES = {"self_describing": "unstruct", "transaction": "transaction",
               "transaction_item": "transaction_item"}
# Columns copied from the payload under the same name.
_SAME = ("app_id", "platform", "collector_tstamp", "dvce_created_tstamp", "name_tracker",
         "v_tracker", "user_id", "user_ipaddress", "domain_userid", "domain_sessionidx",
         "network_userid", "geo_country", "geo_region", "geo_city", "geo_zipcode",
         "geo_latitude", "geo_longitude", "geo_region_name", "page_url", "page_title",
         "page_referrer", "refr_medium", "refr_source", "refr_term", "mkt_medium",
         "mkt_source", "mkt_term", "mkt_content", "mkt_campaign", "se_category", "se_action",
         "se_label", "se_property", "se_value", "useragent", "br_name", "br_family",
         "br_version", "os_name", "os_family", "dvce_type", "dvce_ismobile", "geo_timezone",
         "mkt_clickid", "mkt_network", "dvce_sent_tstamp", "domain_sessionid",
         "derived_tstamp", "event_fingerprint", "true_tstamp")
# Columns from a tracker parameter as sent (text, number or integer per the column type).
_PARAMS = {"txn_id": "tid", "user_fingerprint": "fp", "tr_orderid": "tr_id",
           "tr_affiliation": "tr_af", "tr_total": "tr_tt", "tr_tax": "tr_tx",
           "tr_shipping": "tr_sh", "tr_city": "tr_ci", "tr_state": "tr_st",
           "tr_country": "tr_co", "ti_orderid": "ti_id", "ti_sku": "ti_sk", "ti_name": "ti_nm",
           "ti_category": "ti_ca", "ti_price": "ti_pr", "ti_quantity": "ti_qu",
           "pp_xoffset_min": "pp_mix", "pp_xoffset_max": "pp_max", "pp_yoffset_min": "pp_miy",
           "pp_yoffset_max": "pp_may", "br_lang": "lang", "br_colordepth": "cd",
           "os_timezone": "tz", "doc_charset": "cs", "tr_currency": "tr_cu",
           "ti_currency": "ti_cu"}
# Browser features: tracker flags "1" / "0".
_FLAGS = {"br_features_pdf": "f_pdf", "br_features_flash": "f_fla",
          "br_features_java": "f_java", "br_features_director": "f_dir",
          "br_features_quicktime": "f_qt", "br_features_realplayer": "f_realp",
          "br_features_windowsmedia": "f_wma", "br_features_gears": "f_gears",
          "br_features_silverlight": "f_ag", "br_cookies": "cookie"}
# "WIDTHxHEIGHT" parameters.
_SIZES = {"vp": ("br_viewwidth", "br_viewheight"), "res": ("dvce_screenwidth",
                                                         "dvce_screenheight"),
          "ds": ("doc_width", "doc_height")}
_TYPES = {name: pg for name, pg, _ in COLUMNS}
_DEFAULT_PORTS = {"http": 80, "https": 443}


def row(payload: Mapping[str, Any], *, event_id: str, etl_tstamp_ms: int, v_collector: str,
        v_etl: str) -> dict[str, Any]:
    """The atomic.events row of one good event; raises ValueError naming the column whose
    value does not fit."""
    params: Mapping[str, Any] = payload.get("params") or {}
    out: dict[str, Any] = dict.fromkeys(_TYPES)
    for name in _SAME:
        out[name] = payload.get(name)
    for name, param in _PARAMS.items():
        out[name] = params.get(param) or None
    for name, param in _FLAGS.items():
        flag = params.get(param)
        out[name] = True if flag == "1" else False if flag == "0" else None
    for param, (width, height) in _SIZES.items():
        out[width], out[height] = _size(params.get(param))
    kind = payload["event"]
    out["event"] = EVENT_NAMES.get(kind, kind)
    out["event_id"] = event_id
    out["etl_tstamp"] = etl_tstamp_ms
    out["v_collector"], out["v_etl"] = v_collector, v_etl
    out.update(_url("page", payload.get("page_url")))
    out.update(_url("refr", payload.get("page_referrer")))
    out["refr_domain_userid"], out["refr_dvce_tstamp"] = _linker(payload.get("page_url"))
    unstruct = payload.get("unstruct_event")
    if isinstance(unstruct, Mapping):     # {"schema": iglu key, "data": ...}, validated
        key = SchemaKey.parse(unstruct["schema"])
        out["event_vendor"], out["event_name"] = key.vendor, key.name
        out["event_format"], out["event_version"] = key.format, key.version
    return {name: fit(name, _TYPES[name], value) for name, value in out.items()}


def _size(value: Any) -> tuple[str | None, str | None]:
    if isinstance(value, str) and "x" in value:
        w, _, h = value.partition("x")
        return w, h
    return None, None


def _url(prefix: str, url: Any) -> dict[str, Any]:
    """scheme, host, port (the scheme's default when none is given, as Snowplow fills it),
    path, query and fragment of a page or referrer URL; all None when there is none."""
    names = [f"{prefix}_url{part}" for part in
             ("scheme", "host", "port", "path", "query", "fragment")]
    if not isinstance(url, str) or not url:
        return dict.fromkeys(names)
    try:
        u = urlsplit(url)
        port = u.port or _DEFAULT_PORTS.get(u.scheme.lower())
    except ValueError:           # not a URL (an invalid port, say): the parts stay empty
        return dict.fromkeys(names)
    parts = (u.scheme or None, u.hostname or None, port, u.path or None, u.query or None,
             u.fragment or None)
    return dict(zip(names, parts, strict=True))


def _linker(url: Any) -> tuple[str | None, int | None]:
    """The cross-domain linker ``_sp=<domain_userid>.<epoch millis>`` of a page URL."""
    if not isinstance(url, str) or "_sp=" not in url:
        return None, None
    try:
        sp = parse_qs(urlsplit(url).query).get("_sp", [""])[0]
    except ValueError:
        return None, None
    duid, _, ts = sp.partition(".")
    return (duid or None), (int(ts) if ts.isdigit() else None)
