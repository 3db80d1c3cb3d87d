"""User-agent parsing: Snowplow's ua_parser enrichment, with ua-parser's maintained rules.

Adds a ``com.snowplowanalytics.snowplow/ua_parser_context/jsonschema/1-0-0`` entity to
``derived_contexts`` (useragentFamily/Major/Minor/Patch/Version, osFamily/Major/Minor/
Patch/PatchMinor/Version, deviceFamily; "Other" where the rules know nothing, as
Snowplow's). With ``legacy_columns`` it also fills the atomic columns Snowplow's
deprecated user_agent_utils enrichment filled (br_family, br_name, br_version,
os_family, os_name, dvce_type, dvce_ismobile), from the same parse.

Parsing runs ua-parser's regexes (ua-parser-builtins) over the string, so results are
cached: user agents repeat all day. A user agent is parsed on at most its first
``MAX_UA_CHARS`` characters, which bounds the work per event.
"""

from __future__ import annotations

import functools
from typing import Any

import ua_parser

from . import ADD_DERIVED, Step
from .config import UaParserSettings

SCHEMA = "iglu:com.snowplowanalytics.snowplow/ua_parser_context/jsonschema/1-0-0"
MAX_UA_CHARS = 1024
_MOBILE_OS = frozenset({"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS",
                        "Firefox OS", "Symbian OS", "Tizen", "HarmonyOS"})
_TABLETS = ("iPad", "Tablet", "Kindle", "Nexus 7", "Nexus 9", "Nexus 10", "SM-T", "Galaxy Tab")
_PARSER = ua_parser.parse


def _version(*parts: str | None) -> str:
    out = []
    for part in parts:
        if part is None:
            break
        out.append(part)
    return ".".join(out)


def _joined(family: str, version: str) -> str:
    return f"{family} {version}" if version else family


def dvce_type(device_family: str, os_family: str) -> str:
    """user_agent_utils' device types from ua-parser's device and OS families."""
    if device_family == "Spider":
        return "Robot"
    if any(t in device_family for t in _TABLETS):
        return "Tablet"
    if os_family in _MOBILE_OS or device_family not in ("Other", "Mac"):
        return "Mobile"
    if os_family == "Other" and device_family == "Other":
        return "Unknown"
    return "Computer"


def parse(useragent: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ua_parser_context data, legacy atomic columns) for one user agent."""
    r = _PARSER(useragent[:MAX_UA_CHARS])
    ua, os_, device = r.user_agent, r.os, r.device
    ua_family = ua.family if ua else "Other"
    ua_major, ua_minor, ua_patch = (ua.major, ua.minor, ua.patch) if ua else (None, None, None)
    os_family = os_.family if os_ else "Other"
    os_parts = (os_.major, os_.minor, os_.patch, os_.patch_minor) if os_ else (None,) * 4
    device_family = device.family if device else "Other"
    ua_version = _version(ua_major, ua_minor, ua_patch)
    os_version = _version(*os_parts)
    context = {
        "useragentFamily": ua_family,
        "useragentMajor": ua_major,
        "useragentMinor": ua_minor,
        "useragentPatch": ua_patch,
        "useragentVersion": _joined(ua_family, ua_version),
        "osFamily": os_family,
        "osMajor": os_parts[0],
        "osMinor": os_parts[1],
        "osPatch": os_parts[2],
        "osPatchMinor": os_parts[3],
        "osVersion": _joined(os_family, os_version),
        "deviceFamily": device_family,
    }
    kind = dvce_type(device_family, os_family)
    legacy = {
        "br_family": ua_family,
        "br_name": _joined(ua_family, ua_major or ""),
        "br_version": ua_version or None,
        "os_family": os_family,
        "os_name": _joined(os_family, os_parts[0] or ""),
        "dvce_type": kind,
        "dvce_ismobile": kind in ("Mobile", "Tablet"),
    }
    return context, legacy


def build(settings: UaParserSettings) -> Step:
    cached = functools.lru_cache(maxsize=settings.cache_size)(parse) \
        if settings.cache_size else parse
    legacy_columns = settings.legacy_columns

    def step(payload: Any, _params: Any) -> dict[str, Any] | None:
        useragent = payload.get("useragent")
        if not useragent:
            return None
        context, legacy = cached(useragent)
        out: dict[str, Any] = {ADD_DERIVED: [{"schema": SCHEMA, "data": dict(context)}]}
        if legacy_columns:
            out.update(legacy)
        return out

    return step
