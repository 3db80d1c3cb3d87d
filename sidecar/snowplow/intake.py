"""What the collector does with a request, short of I/O: identity, then raw records.

Pure and cheap: the network user id (querystring ``nuid``, else the cookie, else a new id;
``SP-Anonymous`` respected), the client IP, and the raw records the request becomes. The
body is not parsed: it goes into the record as received. Only a POST larger than one record
is looked into, to split it along event boundaries (``raw.split_batch``); what cannot be
split is kept as a sample marked truncated, which enrich turns into a ``size`` bad row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from .identity import CookieConfig, Identity, client_ip, is_anonymous, resolve_identity
from .pipeline import Output
from .protocol import ProtocolError, parse_querystring
from .raw import RawPayload, new_request_id, split_batch


@dataclass(frozen=True, slots=True)
class IntakeConfig:
    raw_topic: str
    cookie: CookieConfig
    use_forwarded_for: bool = True
    split_bytes: int = 900_000        # a POST body over this is split
    sample_bytes: int = 262_144       # what is kept of a body that cannot be
    inflate_bytes: int = 16 * 1_048_576


@dataclass(frozen=True, slots=True)
class Intake:
    identity: Identity
    outputs: list[Output]


def intake(cfg: IntakeConfig, *, method: str, path: str, query_string: str,
           headers: Mapping[str, str], body: bytes | None, body_size: int,
           received_at_ms: int, remote: str | None, over_hard_limit: bool = False) -> Intake:
    """The identity to answer with and the raw records of one tracker request."""
    query: dict[str, str] = {}
    if "nuid=" in query_string:
        try:
            query = parse_querystring(query_string)
        except ProtocolError:
            query = {}   # enrich parses it again and writes the bad row
    identity = resolve_identity(query, headers, cfg.cookie, received_at_ms)
    anonymous = is_anonymous(headers)
    base = RawPayload(
        method=method, path=path, query_string=query_string, body=b"",
        received_at_ms=received_at_ms, network_userid=identity.network_userid,
        request_id=new_request_id(), content_type=headers.get("content-type"),
        content_encoding=headers.get("content-encoding"),
        useragent=headers.get("user-agent"), referer=headers.get("referer"),
        ip=client_ip(remote, headers, cfg.use_forwarded_for, anonymous),
        anonymous=anonymous, body_size=body_size if body is not None else None)
    payloads = _payloads(cfg, base, body, body_size, over_hard_limit)
    return Intake(identity, [_output(cfg.raw_topic, p) for p in payloads])


def _payloads(cfg: IntakeConfig, base: RawPayload, body: bytes | None, size: int,
              over_hard: bool) -> list[RawPayload]:
    if body is None:
        return [base]
    if not over_hard and size <= cfg.split_bytes:
        return [_with(base, body=body)]
    pieces = None if over_hard else split_batch(body, base.content_encoding, cfg.split_bytes,
                                                cfg.inflate_bytes)
    if pieces is None:
        return [_with(base, body=body[:cfg.sample_bytes], truncated=True, body_size=size)]
    n = len(pieces)
    out = []
    for i, piece in enumerate(pieces):
        if piece.too_large_index is not None:
            out.append(_with(base, body=piece.body[:cfg.sample_bytes], content_encoding=None,
                             truncated=True, body_size=piece.size,
                             event_index=piece.too_large_index, part=(i, n)))
        else:
            out.append(_with(base, body=piece.body, content_encoding=None,
                             body_size=len(piece.body), part=(i, n),
                             first_event_index=piece.first_index))
    return out


def _with(base: RawPayload, **changes: object) -> RawPayload:
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _output(topic: str, p: RawPayload) -> Output:
    return Output(topic=topic, key=b"", value=p.body, outcome="raw", dedup_id=None,
                  event_type="raw", headers=tuple(p.headers()))
