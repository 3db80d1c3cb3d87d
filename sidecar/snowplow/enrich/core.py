"""One raw record in, the Kafka records it becomes out; never raises.

The work is the collector's former core (``pipeline.CollectorCore``: tracker protocol,
Iglu validation, routing, envelope, bad rows), fed from the raw record instead of an HTTP
request. Every raw record yields at least one output, so everything the collector
committed is accounted for as good events or bad rows. Whatever fails that the core did
not foresee (a bug, an input no test thought of) is a ``protocol/unprocessable`` bad row
holding the original body, which can be replayed once the cause is fixed: no record can
crash enrich or hold up its partition.

Work per record is bounded by what came before it: the collector caps a record's size,
decompression stops at ``http.hard_max_body_bytes``, JSON deeper than ``codec.MAX_DEPTH``
is refused at parse time, and violations per event are capped.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ..badrows import BadRow, RequestInfo
from ..pipeline import CollectorCore, Output
from ..raw import RawFormatError, RawPayload

log = logging.getLogger(__name__)

# How much of an original a replacement bad row keeps after Kafka refused the first one.
REJECTED_ORIGINAL_BYTES = 16_384


@dataclass(frozen=True, slots=True)
class Enriched:
    outputs: list[Output]
    raw: RawPayload | None   # None: the record was not a readable raw record


class Enricher:
    def __init__(self, core: CollectorCore) -> None:
        self.core = core

    def enrich(self, headers: Sequence[tuple[str, bytes | None]] | None,
               value: bytes | None, timestamp_ms: int = 0) -> Enriched:
        """``timestamp_ms`` (the Kafka record's) dates a record too broken to say when."""
        try:
            raw = RawPayload.from_record(headers, value)
        except RawFormatError as exc:
            return Enriched([self._bad("raw_format", str(exc), value or b"", None,
                                       timestamp_ms)], None)
        except Exception as exc:  # headers of a shape we never wrote
            return Enriched([self._bad("raw_format", _describe(exc), value or b"", None,
                                       timestamp_ms)], None)
        try:
            outputs = self.core.process(raw.to_request()).outputs
        except Exception as exc:
            log.warning("enrich.unprocessable", extra={"error": _describe(exc),
                                                       "request_id": raw.request_id})
            return Enriched([self._bad("unprocessable", _describe(exc), raw.body, raw)], raw)
        if not outputs:   # the core promises one output at least; hold it to that
            outputs = [self._bad("unprocessable", "no output for the request", raw.body, raw)]
        return Enriched(outputs, raw)

    def rejected(self, output: Output, raw: RawPayload | None, reason: str) -> Output:
        """A bad row for an output Kafka refused for good (e.g. over max.message.bytes);
        the original it keeps is small, so the replacement fits."""
        limit = REJECTED_ORIGINAL_BYTES if output.outcome == "good" else 1024
        row = BadRow("size", "rejected_by_kafka",
                     f"Kafka refused the {output.outcome} record for {output.topic}: {reason}",
                     output.value[:limit], _info(raw), raw.received_at_ms if raw else 0,
                     self.core.collector, event_id=output.dedup_id,
                     original_size=len(output.value))
        return self.core._bad_output(row)

    def _bad(self, reason: str, message: str, original: bytes, raw: RawPayload | None,
             timestamp_ms: int = 0) -> Output:
        row = BadRow("protocol", reason, message, original, _info(raw),
                     raw.received_at_ms if raw else timestamp_ms, self.core.collector,
                     original_size=raw.body_size if raw else None)
        return self.core._bad_output(row)


def _info(raw: RawPayload | None) -> RequestInfo:
    if raw is None:
        return RequestInfo(method="", path="")
    return RequestInfo(method=raw.method, path=raw.path, querystring=raw.query_string or None,
                       content_type=raw.content_type, content_encoding=raw.content_encoding,
                       useragent=raw.useragent, referer=raw.referer, ip=raw.ip,
                       network_userid=raw.network_userid, anonymous=raw.anonymous,
                       body_size=raw.body_size)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]
