"""A bad row back into the raw record enrich reads (pure: no I/O, never raises).

What a bad row's ``original`` holds decides what is rebuilt (``badrows.py``):

- one event of a tp2 POST (``event_index`` set): the event's own JSON; it becomes a
  one-event ``payload_data`` POST with the original request's querystring and facts, so
  querystring parameters that applied to the whole batch apply to it again;
- a GET (pixel, click redirect): the querystring; it becomes the same GET;
- a whole POST (``event_index`` null: the body itself was the problem, e.g. a content
  type, bad JSON, or an ``unprocessable`` bug since fixed): the body as received, with
  its content type and encoding.

The collector timestamp, network user id, IP (absent when anonymous), user agent and
referer are the original request's, so a recovered event is the event it would have been.

Refused, each counted by kind: rows no replay can turn good (``size`` checks: a body or an
event over a limit stays over it; ``protocol/raw_format``: enrich could not even read the
raw record, so no request facts were kept; ``size/rejected_by_kafka`` keeps the refused
output, not what the tracker sent), originals cut at ``limits.bad_row_original_bytes``
(``truncated``: the rest was never stored), and rows that are not bad rows at all
(``unreadable``, with what was wrong).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import codec
from ..protocol import PIXEL_PATHS, REDIRECT_PATH, TP2_PATH
from ..raw import RawPayload

PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
BAD_ROW_PREFIX = "iglu:com.conveyor.snowplow/bad_row/jsonschema/1-"
# (check, reason) pairs, or whole checks (reason None), that no replay can turn good.
NOT_REPLAYABLE: tuple[tuple[str, str | None], ...] = (
    ("size", None),
    ("protocol", "raw_format"),
)
ANONYMOUS_NUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class Candidate:
    """A bad row that can be replayed: the raw record to run through enrich again."""

    bad_row_id: str
    check: str
    reason: str
    event_id: str | None
    raw: RawPayload


@dataclass(frozen=True, slots=True)
class Refused:
    """A bad row that is not replayed. ``kind``: ``unreadable``, ``truncated``,
    ``not_replayable`` or ``filtered`` (another check or reason than asked for)."""

    kind: str
    detail: str
    bad_row_id: str | None = None
    check: str | None = None
    reason: str | None = None


class _Unreadable(Exception):
    pass


def plan_row(value: bytes | None, *, check: str | None = None,
             reason: str | None = None) -> Candidate | Refused:
    """What to do with one record of the bad-row topic; never raises."""
    try:
        return _plan(value, check, reason)
    except _Unreadable as exc:
        return Refused("unreadable", str(exc)[:300])
    except Exception as exc:   # a shape nobody foresaw: counted and named, never a crash
        return Refused("unreadable", f"{type(exc).__name__}: {exc}"[:300])


def _plan(value: bytes | None, want_check: str | None,
          want_reason: str | None) -> Candidate | Refused:
    if not value:
        raise _Unreadable("empty record")
    try:
        doc = codec.loads(value)
    except Exception as exc:
        raise _Unreadable(f"not JSON: {type(exc).__name__}") from exc
    if not isinstance(doc, dict):
        raise _Unreadable("not a JSON object")
    schema = doc.get("schema")
    if not isinstance(schema, str) or not schema.startswith(BAD_ROW_PREFIX):
        raise _Unreadable(f"not a bad row (schema {str(schema)[:120]!r})")
    data = _obj(doc.get("data"), "data")
    row_id = _str(data.get("bad_row_id"), "data.bad_row_id")
    row_check = _str(data.get("check"), "data.check")
    row_reason = _str(data.get("reason"), "data.reason")

    def refused(kind: str, detail: str) -> Refused:
        return Refused(kind, detail, row_id, row_check, row_reason)

    if (want_check is not None and row_check != want_check) or \
            (want_reason is not None and row_reason != want_reason):
        return refused("filtered", f"{row_check}/{row_reason}")
    for c, r in NOT_REPLAYABLE:
        if row_check == c and (r is None or row_reason == r):
            return refused("not_replayable", f"{row_check}/{row_reason} cannot succeed by replay")
    original = _obj(data.get("original"), "data.original")
    if original.get("truncated") is True:
        return refused("truncated", f"original cut at {len(_str(original.get('data'), 'x'))} "
                                    f"of {original.get('size')} bytes: the rest was never stored")
    body = _original_bytes(original)
    request = _obj(data.get("request"), "data.request")
    method = _str(request.get("method"), "data.request.method")
    path = _str(request.get("path"), "data.request.path")
    event_index = data.get("event_index")
    if event_index is not None and (not isinstance(event_index, int)
                                    or isinstance(event_index, bool) or event_index < 0):
        raise _Unreadable(f"data.event_index is {event_index!r}")
    event_id = data.get("event_id")
    if event_id is not None and not isinstance(event_id, str):
        raise _Unreadable("data.event_id is not a string")
    query = _opt_str(request, "querystring") or ""
    content_type = _opt_str(request, "content_type")
    content_encoding = _opt_str(request, "content_encoding")
    if method == "GET" and (path in PIXEL_PATHS or path == REDIRECT_PATH):
        query, body, content_type, content_encoding = _text(body), b"", None, None
    elif method == "POST" and path == TP2_PATH and event_index is not None:
        try:
            event = codec.loads(body)
        except Exception as exc:
            raise _Unreadable(f"original event is not JSON: {type(exc).__name__}") from exc
        body = codec.dumps({"schema": PAYLOAD_DATA, "data": [event]})
        content_type, content_encoding = "application/json", None
    elif method == "POST" and path == TP2_PATH:
        pass   # the whole body as received, with its own content type and encoding
    else:
        return refused("not_replayable", f"request {method or '-'} {path or '-'} is not a "
                                         f"tracker request")
    anonymous = request.get("anonymous") is True
    raw = RawPayload(
        method=method, path=path, query_string=query, body=body,
        received_at_ms=_epoch_ms(_str(data.get("received_at"), "data.received_at")),
        network_userid=_opt_str(request, "network_userid")
        or (ANONYMOUS_NUID if anonymous else ""),
        request_id=f"recovery-{row_id}", content_type=content_type,
        content_encoding=content_encoding, useragent=_opt_str(request, "useragent"),
        referer=_opt_str(request, "referer"),
        ip=None if anonymous else _opt_str(request, "ip"), anonymous=anonymous,
        body_size=len(body))
    return Candidate(row_id, row_check, row_reason, event_id, raw)


def _original_bytes(original: dict[str, Any]) -> bytes:
    text = _str(original.get("data"), "data.original.data")
    encoding = original.get("encoding")
    if encoding == "utf-8":
        return text.encode("utf-8", "surrogateescape")
    if encoding == "base64":
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _Unreadable("data.original.data is not base64") from exc
    raise _Unreadable(f"data.original.encoding is {str(encoding)[:40]!r}")


def _text(body: bytes) -> str:
    return body.decode("utf-8", "surrogateescape")


def _epoch_ms(text: str) -> int:
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _Unreadable(f"data.received_at is {text[:40]!r}") from exc
    if at.tzinfo is None:
        raise _Unreadable(f"data.received_at has no zone: {text[:40]!r}")
    return int(at.timestamp() * 1000)


def _obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Unreadable(f"{where} is not an object")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _Unreadable(f"{where} is not a string")
    return value


def _opt_str(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Unreadable(f"data.request.{name} is not a string")
    return value
