"""The raw record: one HTTP request as the collector received it, for enrich to process.

It carries the facts Snowplow's ``CollectorPayload`` carries, and nothing the collector had
to work out from the body: the value is the body exactly as received (still compressed
when it came compressed; empty for a GET), and the request facts ride in Kafka headers,
so the collector serialises nothing::

    sp-v        format version ("1")
    sp-id       request id (a UUID; the parts of a split request share it)
    sp-m        method            sp-p   path (the standard one an alias maps to)
    sp-q        raw querystring   sp-t   collector timestamp (epoch ms)
    sp-ct       Content-Type      sp-ce  Content-Encoding
    sp-ua       User-Agent        sp-ref Referer
    sp-ip       client IP (absent when SP-Anonymous)        sp-anon "1" when anonymous
    sp-nuid     network user id the collector answered with (its cookie)
    sp-size     size of the body (of the whole body when this record holds only a sample)
    sp-trunc    "1": the value is only the first bytes of a body too large to keep, and
                the request is a ``size`` bad row
    sp-ei       with sp-trunc: index of the one event, of a split batch, that is too large
    sp-part     "i/n" when a POST larger than one record was split along event boundaries
    sp-e0       with sp-part: index, in the original POST, of the first event of this part
                (what enrich adds to an event's index in the part, so that a bad row's
                ``event_index`` counts within the request the tracker sent)

Pure: no I/O. ``from_record`` raises ``RawFormatError`` for a record it cannot read (a
``raw_format`` bad row in enrich, never a crash).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import codec
from .pipeline import RawRequest
from .protocol import ProtocolError, decompress

VERSION = b"1"
HEADER_PREFIX = "sp-"


class RawFormatError(Exception):
    """A raw record that is not one this version of enrich can read."""


@dataclass(frozen=True, slots=True)
class RawPayload:
    method: str
    path: str
    query_string: str
    body: bytes
    received_at_ms: int
    network_userid: str
    request_id: str = ""
    content_type: str | None = None
    content_encoding: str | None = None
    useragent: str | None = None
    referer: str | None = None
    ip: str | None = None
    anonymous: bool = False
    body_size: int | None = None
    truncated: bool = False
    event_index: int | None = None
    part: tuple[int, int] | None = None
    first_event_index: int | None = None

    def headers(self) -> list[tuple[str, bytes]]:
        h: list[tuple[str, bytes]] = [
            ("sp-v", VERSION), ("sp-id", self.request_id.encode()),
            ("sp-m", self.method.encode()), ("sp-p", _b(self.path)),
            ("sp-q", _b(self.query_string)), ("sp-t", str(self.received_at_ms).encode()),
            ("sp-nuid", _b(self.network_userid)),
        ]
        for name, value in (("sp-ct", self.content_type), ("sp-ce", self.content_encoding),
                            ("sp-ua", self.useragent), ("sp-ref", self.referer),
                            ("sp-ip", self.ip)):
            if value is not None:
                h.append((name, _b(value)))
        if self.anonymous:
            h.append(("sp-anon", b"1"))
        if self.body_size is not None:
            h.append(("sp-size", str(self.body_size).encode()))
        if self.truncated:
            h.append(("sp-trunc", b"1"))
        if self.event_index is not None:
            h.append(("sp-ei", str(self.event_index).encode()))
        if self.part is not None:
            h.append(("sp-part", f"{self.part[0]}/{self.part[1]}".encode()))
        if self.first_event_index is not None:
            h.append(("sp-e0", str(self.first_event_index).encode()))
        return h

    @classmethod
    def from_record(cls, headers: Sequence[tuple[str, bytes | None]] | None,
                    value: bytes | None) -> RawPayload:
        h: dict[str, str] = {}
        for name, raw in headers or ():
            if name.startswith(HEADER_PREFIX) and raw is not None:
                h[name] = raw.decode("utf-8", "surrogateescape")
        if h.get("sp-v") != VERSION.decode():
            raise RawFormatError(f"not a raw record of format {VERSION.decode()} "
                                 f"(sp-v={h.get('sp-v')!r})")
        try:
            part = None
            if "sp-part" in h:
                i, _, n = h["sp-part"].partition("/")
                part = (int(i), int(n))
            return cls(
                method=h["sp-m"], path=h["sp-p"], query_string=h.get("sp-q", ""),
                body=value or b"", received_at_ms=int(h["sp-t"]),
                network_userid=h["sp-nuid"], request_id=h.get("sp-id", ""),
                content_type=h.get("sp-ct"), content_encoding=h.get("sp-ce"),
                useragent=h.get("sp-ua"), referer=h.get("sp-ref"), ip=h.get("sp-ip"),
                anonymous=h.get("sp-anon") == "1",
                body_size=int(h["sp-size"]) if "sp-size" in h else None,
                truncated=h.get("sp-trunc") == "1",
                event_index=int(h["sp-ei"]) if "sp-ei" in h else None, part=part,
                first_event_index=_index(h["sp-e0"]) if "sp-e0" in h else None)
        except (KeyError, ValueError) as exc:
            raise RawFormatError(f"raw record header missing or malformed: {exc}") from exc

    def to_request(self) -> RawRequest:
        """The request as the collector's pure core takes it (identity already resolved)."""
        headers: dict[str, str] = {}
        for name, value in (("content-type", self.content_type),
                            ("content-encoding", self.content_encoding),
                            ("user-agent", self.useragent), ("referer", self.referer)):
            if value is not None:
                headers[name] = value
        if self.anonymous:
            headers["sp-anonymous"] = "*"
        return RawRequest(
            method=self.method, path=self.path, query_string=self.query_string,
            headers=headers, body=self.body if self.method == "POST" else None,
            received_at_ms=self.received_at_ms, remote=self.ip,
            body_size=self.body_size, body_too_large=self.truncated,
            network_userid=self.network_userid, event_index=self.event_index,
            first_event_index=self.first_event_index or 0)


def _index(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"negative event index {value}")
    return value


def _b(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def new_request_id() -> str:
    return str(uuid.uuid4())


# -- splitting ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Piece:
    """One record's worth of a split body: a payload_data batch, or one event too large."""

    body: bytes
    too_large_index: int | None = None   # set: ``body`` is that event alone, over the limit
    size: int | None = None              # full size of that event
    first_index: int = 0                 # index of the body's first event in the request


def split_batch(body: bytes, content_encoding: str | None, limit: int,
                inflate_limit: int) -> list[Piece] | None:
    """A tp2 body over ``limit`` as payload_data batches of at most ``limit`` bytes each.

    Along event boundaries, as Snowplow's collector splits (``SplitBatch``): each piece is
    a ``{"schema": <the body's schema>, "data": [...]}`` of whole events, uncompressed. An
    event too large on its own becomes a piece of its own marked ``too_large_index``. None
    when the body cannot be split (not a payload_data batch, not JSON, bad compression,
    too deep, inflating past ``inflate_limit``): the caller keeps a sample, a size bad row.

    The only place the collector looks inside a body, and only for bodies too large to
    write whole: bounded by ``inflate_limit`` and the codec's depth limit, and any failure
    means "cannot split", never an error.
    """
    try:
        plain = decompress(body, content_encoding, inflate_limit)
        doc = codec.loads(plain)
    except (ProtocolError, ValueError, RecursionError, MemoryError):
        return None
    except Exception:  # anything else the parsers raise: not splittable either
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("schema"), str):
        return None
    data = doc.get("data")
    if not isinstance(data, list) or not data:
        return None
    try:
        items = [codec.dumps(item) for item in data]
        head = codec.dumps({"schema": doc["schema"], "data": []})[:-2]   # ends in "["
    except Exception:
        return None
    return list(_pack(items, head, limit))


def _pack(items: Iterable[bytes], head: bytes, limit: int) -> Iterable[Piece]:
    # head is '{"schema":"...","data":[' ; each piece is head + items joined by ',' + ']}'
    overhead = len(head) + 2
    batch: list[bytes] = []
    first = 0   # index of batch[0] in the request
    size = overhead
    for index, item in enumerate(items):
        if overhead + len(item) > limit:
            if batch:
                yield Piece(head + b",".join(batch) + b"]}", first_index=first)
                batch, size = [], overhead
            yield Piece(item, too_large_index=index, size=len(item), first_index=index)
            continue
        extra = len(item) + (1 if batch else 0)
        if size + extra > limit:
            yield Piece(head + b",".join(batch) + b"]}", first_index=first)
            batch, size, extra = [], overhead, len(item)
        if not batch:
            first = index
        batch.append(item)
        size += extra
    if batch:
        yield Piece(head + b",".join(batch) + b"]}", first_index=first)
