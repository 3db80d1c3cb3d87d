"""The Snowplow tracker protocol on the wire: querystrings (GET /i) and tp2 bodies (POST).

Plain values in, plain values out; nothing here knows about HTTP servers or Kafka.

- ``GET /i`` (and ``/ice.png``) carries one event as querystring parameters.
- ``POST /com.snowplowanalytics.snowplow/tp2`` carries a self-describing JSON whose schema
  is ``iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-x`` and whose data
  is an array of events, each an object of string parameters. Querystring parameters of a
  POST are merged into every event (the body wins), as Snowplow's enrichment does.

Failures raise ``ProtocolError`` with a reason code that becomes the bad row's ``reason``.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import codec
from .iglu import IgluError, Resolver, SchemaKey, Violation

TP2_PATH = "/com.snowplowanalytics.snowplow/tp2"
PIXEL_PATHS = ("/i", "/ice.png")
# A click redirect: the event rides in the querystring like a pixel's, plus ``u``, the URL
# the collector redirects to (only to hosts on the allow-list: no open redirector).
REDIRECT_PATH = "/r/tp2"
PAYLOAD_DATA_VENDOR = "com.snowplowanalytics.snowplow"
PAYLOAD_DATA_NAME = "payload_data"

# e=... -> the name we give the event kind (routing, event_type of non-self-describing events)
EVENT_KINDS = {
    "pv": "page_view",
    "pp": "page_ping",
    "se": "struct",
    "ev": "struct",  # the legacy name of structured events
    "ue": "self_describing",
    "tr": "transaction",
    "ti": "transaction_item",
    "ad": "ad_impression",
}

# Media types a tp2 body may come with. text/plain is what browsers' sendBeacon uses.
JSON_MEDIA_TYPES = ("application/json",)
BEACON_MEDIA_TYPES = ("text/plain",)
# A querystring with more parameters than this is not a tracker's.
MAX_QUERY_FIELDS = 1000


class ProtocolError(Exception):
    """The request or event breaks the tracker protocol; ``reason`` names how."""

    def __init__(self, reason: str, message: str, violations: list[Violation] | None = None):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.violations = violations or []


@dataclass(frozen=True, slots=True)
class RawEvent:
    """One event as the tracker sent it, before typing.

    ``params`` is a plain dict; in a tp2 body its values may be non-strings (a protocol
    violation, found later). ``original`` is the event's own bytes for a bad row.
    ``violations`` are payload_data schema violations of this event alone.
    """

    index: int
    params: dict[str, Any]
    raw: Any  # bytes as received (GET), or the JSON item of a tp2 batch
    violations: tuple[Violation, ...] = ()

    @property
    def original(self) -> bytes:
        # Serialised only for bad rows: most events never need it.
        if isinstance(self.raw, bytes):
            return self.raw
        return codec.dumps(self.raw)


def parse_querystring(query: str) -> dict[str, str]:
    """Tracker parameters from a querystring (``+`` is a space; last duplicate wins)."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=MAX_QUERY_FIELDS)
    except UnicodeDecodeError as exc:
        raise ProtocolError("encoding", f"querystring is not UTF-8 after percent-decoding: {exc}"
                            ) from exc
    except ValueError as exc:
        raise ProtocolError("tracker_protocol", f"querystring rejected: {exc}") from exc
    return dict(pairs)


def redirect_target(query: str, allowed_domains: list[str] | tuple[str, ...]) -> str | None:
    """``u`` of a redirect request when it is an http(s) URL on an allowed host, else None.

    A host is allowed when it is one of ``allowed_domains`` or a subdomain of one (on a
    label boundary: evil-shop.example is not shop.example); ``*`` allows every host.
    """
    try:
        target = parse_querystring(query).get("u")
    except ProtocolError:
        return None
    if not target or len(target) > 8192 or any(c in target for c in "\r\n"):
        return None
    try:
        parts = urlsplit(target)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host:
        return None
    for domain in allowed_domains:
        d = domain.lower().lstrip(".")
        if d == "*" or host == d or host.endswith("." + d):
            return target
    return None


URI_REDIRECT = "iglu:com.snowplowanalytics.snowplow/uri_redirect/jsonschema/1-0-0"
UNSTRUCT_EVENT = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
CONTEXTS = "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1"


def redirect_event(params: dict[str, str]) -> dict[str, str]:
    """A click redirect's parameters as the event Snowplow's enrich makes of them (its
    redirect adapter): ``u`` becomes a ``uri_redirect`` entity. Without an event type the
    redirect is the event (``e=ue``, tracker version ``r-tp2`` unless the link carries
    one, platform ``web`` likewise); with one, the click is an entity of that event, added to
    its contexts. Contexts
    that do not parse are left as they are, for validation to turn into the bad row."""
    uri = params.get("u")
    if uri is None:
        return params
    out = {k: v for k, v in params.items() if k != "u"}
    out.setdefault("tv", "r-tp2")
    out.setdefault("p", "web")
    entity = {"schema": URI_REDIRECT, "data": {"uri": uri}}
    if "e" not in out:
        out["e"] = "ue"
        out["ue_pr"] = codec.dumps({"schema": UNSTRUCT_EVENT, "data": entity}).decode()
        out.pop("ue_px", None)
        return out
    try:
        if "cx" in out:
            contexts = codec.loads(decode_base64url(out["cx"]))
        elif "co" in out:
            contexts = codec.loads(out["co"])
        else:
            contexts = {"schema": CONTEXTS, "data": []}
        data = contexts["data"] if isinstance(contexts, dict) else None
        if not isinstance(data, list):
            return params
    except (ProtocolError, ValueError, KeyError):
        return params   # a broken co/cx is left as sent: validation makes it the bad row
    contexts = {**contexts, "data": [*data, entity]}
    out.pop("cx", None)
    out["co"] = codec.dumps(contexts).decode()
    return out


def decode_base64url(value: str) -> bytes:
    """Base64 as trackers send it: URL-safe or standard alphabet, padded or not."""
    s = value.strip().replace("-", "+").replace("_", "/")
    if len(s) % 4 == 1:
        raise ProtocolError("base64", "base64 length is impossible (a character is missing)")
    s += "=" * (-len(s) % 4)
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("base64", f"not valid base64: {exc}") from exc


def check_media_type(content_type: str | None) -> None:
    """A tp2 body must be JSON in UTF-8 (or a beacon's text/plain)."""
    if not content_type:
        raise ProtocolError("content_type",
                            "POST without a Content-Type; expected application/json")
    media, _, rest = content_type.partition(";")
    media = media.strip().lower()
    params = {}
    for part in rest.split(";"):
        k, _, v = part.partition("=")
        if k.strip():
            params[k.strip().lower()] = v.strip().strip('"').lower()
    charset = params.get("charset", "utf-8")
    if media in JSON_MEDIA_TYPES or (media in BEACON_MEDIA_TYPES and "charset" in params):
        if charset in ("utf-8", "utf8"):
            return
        raise ProtocolError("content_type", f"charset {charset!r} is not supported; send UTF-8")
    raise ProtocolError("content_type",
                        f"Content-Type {content_type[:100]!r} is not application/json")


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (gzip/deflate), refusing to inflate past ``limit`` bytes."""
    enc = (content_encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif enc == "deflate":
        inflater = zlib.decompressobj()
    else:
        raise ProtocolError("encoding", f"Content-Encoding {enc!r} is not supported")
    try:
        out = inflater.decompress(body, limit + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise ProtocolError("encoding", f"body is not valid {enc}: {exc}") from exc
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyTooLarge(limit)
    if not inflater.eof:
        raise ProtocolError("encoding", f"{enc} body is truncated")
    return out


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body is larger than {limit} bytes once decompressed")
        self.limit = limit


def parse_tp2(body: bytes, resolver: Resolver, first_index: int = 0) -> list[RawEvent]:
    """The events of a tp2 POST body (already decompressed, media type checked).

    Whole-body problems raise ``ProtocolError``; a single bad event does not: its
    payload_data violations ride on its ``RawEvent`` so the other events still land.
    ``first_index``: the body is a part of a split POST starting at that event; indexes
    and violation paths count within the POST.
    """
    if not body.strip():
        raise ProtocolError("empty", "POST body is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("encoding", f"body is not UTF-8: {exc}") from exc
    try:
        doc = codec.loads(text)
    except codec.JSONDecodeError as exc:
        raise ProtocolError("json", f"body is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or "schema" not in doc or "data" not in doc:
        raise ProtocolError("payload_format",
                            'body is not a self-describing JSON {"schema": ..., "data": [...]}')
    try:
        key = SchemaKey.parse(doc["schema"])
    except IgluError as exc:
        raise ProtocolError("payload_format", exc.message) from exc
    if (key.vendor, key.name) != (PAYLOAD_DATA_VENDOR, PAYLOAD_DATA_NAME):
        raise ProtocolError("payload_format",
                            f"body schema is {key.uri}, expected {PAYLOAD_DATA_VENDOR}/"
                            f"{PAYLOAD_DATA_NAME}")
    data = doc["data"]
    if not isinstance(data, list) or not data:
        raise ProtocolError("payload_format", "payload_data.data must be a non-empty array")
    try:
        validator = resolver.validator(key)
        valid = resolver.is_valid(key, data)
    except IgluError as exc:
        raise ProtocolError("payload_format", exc.message) from exc

    per_item: dict[int, list[Violation]] = {}
    for err in () if valid else validator.iter_errors(data):
        path = list(err.absolute_path)
        if not path or not isinstance(path[0], int):
            raise ProtocolError("payload_format", f"payload_data: {err.message[:300]}",
                                [Violation("$.data", err.message[:500], key.uri)])
        bucket = per_item.setdefault(path[0], [])
        if len(bucket) < 10:
            sub = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[1:])
            bucket.append(Violation(f"$.data[{first_index + path[0]}]{sub}",
                                    err.message[:500], key.uri))

    events = []
    for i, item in enumerate(data):
        params = dict(item) if isinstance(item, dict) else {"_": item}
        events.append(RawEvent(first_index + i, params, item, tuple(per_item.get(i, ()))))
    return events


def merge_query(events: list[RawEvent], query: dict[str, str]) -> list[RawEvent]:
    """Querystring parameters of a POST apply to every event; the body's values win."""
    if not query:
        return events
    return [RawEvent(e.index, {**query, **e.params}, e.raw, e.violations) for e in events]
