"""IP lookup: Snowplow's ip_lookups enrichment (the geo part) from a MaxMind database.

When ``ip_lookup.database`` names a GeoIP2/GeoLite2 City ``.mmdb`` file (none ships with
Conveyor: MaxMind's licence needs an account), ``user_ipaddress`` is looked up before it is
anonymised and fills ``geo_country`` (ISO 3166-1 alpha-2), ``geo_region`` (the first
subdivision's ISO code), ``geo_city``, ``geo_zipcode``, ``geo_latitude``,
``geo_longitude``, ``geo_region_name`` and ``geo_timezone`` (English names). An address the
database does not hold, or a value that is not an IP address, fills nothing; a database
that fails while reading makes the event an ``enrichment_failures`` bad row.

``--check`` says whether the database is configured and readable (``describe``).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import maxminddb

from sidecar.common.errors import ConfigError

from . import Step


def open_reader(path: Path) -> Any:
    try:
        # MODE_AUTO: libmaxminddb's C reader where the wheel has it (about ten times the
        # pure-Python reader's speed), else memory-mapped pure Python.
        return maxminddb.open_database(str(path), maxminddb.MODE_AUTO)
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ConfigError(f"ip_lookup.database {path}: {exc}") from exc


def describe(path: Path | None) -> tuple[bool, str]:
    """(ok, what --check prints)."""
    if path is None:
        return True, "ip_lookup: off (no MaxMind database configured; geo_* stay empty)"
    try:
        reader = open_reader(path)
    except ConfigError as exc:
        return False, f"ip_lookup: FAIL {exc}"
    meta = reader.metadata()
    reader.close()
    return True, (f"ip_lookup: ok, {path} ({meta.database_type}, "
                  f"{meta.node_count} nodes, built {meta.build_epoch})")


def _name(node: Any) -> str | None:
    if isinstance(node, dict):
        names = node.get("names")
        if isinstance(names, dict) and isinstance(names.get("en"), str):
            return names["en"]
    return None


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def geo(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        return {}
    country = record.get("country") or {}
    subs = record.get("subdivisions") or [{}]
    sub = subs[0] if isinstance(subs, list) and subs and isinstance(subs[0], dict) else {}
    location = record.get("location") or {}
    postal = record.get("postal") or {}
    return {
        "geo_country": country.get("iso_code") if isinstance(country, dict) else None,
        "geo_region": sub.get("iso_code"),
        "geo_city": _name(record.get("city")),
        "geo_zipcode": postal.get("code") if isinstance(postal, dict) else None,
        "geo_latitude": _float(location.get("latitude")) if isinstance(location, dict) else None,
        "geo_longitude": _float(location.get("longitude"))
        if isinstance(location, dict) else None,
        "geo_region_name": _name(sub),
        "geo_timezone": location.get("time_zone") if isinstance(location, dict) else None,
    }


def build(path: Path) -> Step:
    reader = open_reader(path)

    def step(payload: Any, _params: Any) -> dict[str, Any] | None:
        ip = payload.get("user_ipaddress")
        if not ip:
            return None
        try:
            # Parsed here first: maxminddb's C reader raises TypeError, not ValueError, on
            # a string with a NUL in it, and what is not an IP address is nothing to look up.
            address = ipaddress.ip_address(str(ip).strip())
            record = reader.get(str(address))
        except ValueError:
            return None
        return geo(record) or None

    return step
