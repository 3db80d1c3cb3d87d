"""A Kafka topic as one side of a reconciliation, without any I/O: each record's envelope
becomes the same ``(id, compared values)`` the SQL side computes, and a ``Landing``
accumulates them into the core's bucket summaries and, per bucket, row digests.

The digests must equal PostgreSQL's: the SQL side hashes ``id || '|' || values`` where
``values`` is each compared column as ``coalesce(col::text, '\\N')`` joined by ``'|'``, so a
value is rendered here as PostgreSQL renders it as text (``pg_text``): text, integers,
booleans, timestamps (in UTC) and decimals exactly; floats by their shortest form; nested
values as compact JSON, which is only equal to what a sink wrote if it wrote JSON alike.

``parse`` never raises, whatever the bytes: a record that cannot be read as an envelope, or
lacks an id or an event time, is a ``Skip`` with the reason, counted and reported.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from .core import RowDigest, Summary

# Bounds on what a JSON value may be before it is parsed (a reconciliation reads whatever
# is in the topic; a hostile record must be a Skip, never a crash).
MAX_VALUE_BYTES = 8 * 1024 * 1024
MAX_DEPTH = 64
# Where a plain field name is looked for when the envelope itself has none: the sinks
# flatten the payload's first level into columns (EnvelopeUnwrap).
PAYLOAD = "payload"


@dataclass(frozen=True, slots=True)
class Skip:
    """A record left out of the comparison, and why."""

    reason: str


@dataclass(frozen=True, slots=True)
class Record:
    """One event as the comparison sees it."""

    event_id: str
    time: datetime
    landed: datetime | None
    values: str        # the compared values, rendered and joined as the SQL side does


@dataclass(frozen=True)
class RecordSpec:
    """Which envelope fields mean what, and which records are left out (canaries)."""

    id: str = "event_id"
    time: str = "accepted_at"
    columns: tuple[str, ...] = ()
    exclude_id_prefix: str | None = None
    exclude: tuple[tuple[str, str], ...] = ()   # (field, value): left out when equal


def _depth_ok(text: bytes) -> bool:
    depth = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == 0x5C:
                esc = True
            elif ch == 0x22:
                in_str = False
        elif ch == 0x22:
            in_str = True
        elif ch in (0x5B, 0x7B):
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in (0x5D, 0x7D):
            depth -= 1
    return True


def decode_json(value: bytes) -> dict[str, Any] | Skip:
    if len(value) > MAX_VALUE_BYTES:
        return Skip("value larger than the reader's bound")
    if not _depth_ok(value):
        return Skip("JSON nested deeper than the reader's bound")
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError):
        return Skip("value is neither Avro (registry wire format) nor JSON")
    if not isinstance(doc, dict):
        return Skip("value is not a JSON object")
    return doc


def lookup(doc: Mapping[str, Any], path: str) -> Any:
    """``a.b`` walks nested records; a plain name missing from the envelope is looked up
    in its payload (the table's flattened column). ``None`` when absent."""
    parts = path.split(".")
    if len(parts) == 1 and parts[0] not in doc:
        payload = doc.get(PAYLOAD)
        return payload.get(path) if isinstance(payload, Mapping) else None
    cur: Any = doc
    for p in parts:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(p)
    return cur


def as_time(value: Any) -> datetime | None:
    """Event times as envelopes carry them: datetimes (Avro timestamp-millis), epoch
    millis, or ISO 8601 text (JSON envelopes)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            t = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    return None


def pg_text(value: Any) -> str | None:
    """``value::text`` as PostgreSQL writes it (the session in UTC)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal | str):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value).removesuffix(".0")
    if isinstance(value, datetime):
        t = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        text = t.strftime("%Y-%m-%d %H:%M:%S")
        if t.microsecond:
            text += f".{t.microsecond:06d}".rstrip("0")
        return text + "+00"
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    except (TypeError, ValueError, RecursionError):
        return str(value)


def joined(values: list[str | None]) -> str:
    """The SQL side's ``coalesce(v::text, '\\N') || '|' || ...``; ``''`` for no columns."""
    return "|".join("\\N" if v is None else v for v in values)


def checksum(event_id: str, values: str) -> int:
    """The SQL side's per-row term: md5(id | values), first 15 hex digits (60 bits)."""
    return int(hashlib.md5(f"{event_id}|{values}".encode()).hexdigest()[:15], 16)


def digest(values: str) -> str:
    return hashlib.md5(values.encode()).hexdigest()


def to_record(doc: Mapping[str, Any], spec: RecordSpec, landed: datetime | None
              ) -> Record | Skip | None:
    """The envelope as a Record; ``None`` when the spec leaves it out (a canary)."""
    try:
        raw_id = lookup(doc, spec.id)
        if raw_id is None or isinstance(raw_id, Mapping | list):
            return Skip(f"no {spec.id}")
        event_id = str(raw_id)
        if spec.exclude_id_prefix and event_id.startswith(spec.exclude_id_prefix):
            return None
        for name, wanted in spec.exclude:
            if pg_text(lookup(doc, name)) == wanted:
                return None
        t = as_time(lookup(doc, spec.time))
        if t is None:
            return Skip(f"no {spec.time} (event time)")
        values = joined([pg_text(lookup(doc, c)) for c in spec.columns])
        return Record(event_id, t, landed, values)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        return Skip(f"unreadable envelope: {type(exc).__name__}")


def parse(value: bytes | None, spec: RecordSpec, landed: datetime | None,
          avro: Callable[[bytes], Any] | None = None) -> Record | Skip | None:
    """A record's value (Avro in the registry's wire format, or JSON) as a Record. Never
    raises: ``avro`` may raise anything, which becomes a Skip."""
    if value is None:
        return Skip("tombstone (no value)")
    if value[:1] == b"\x00":
        if avro is None:
            return Skip("Avro value, and no schema registry to read it with")
        try:
            doc = avro(value)
        except Exception as exc:  # a registry or decoder error: this record is unread
            return Skip(f"Avro value not decoded: {type(exc).__name__}")
        if not isinstance(doc, Mapping):
            return Skip("Avro value is not a record")
    else:
        decoded = decode_json(value)
        if isinstance(decoded, Skip):
            return decoded
        doc = decoded
    return to_record(doc, spec, landed)


@dataclass
class Landing:
    """Records accumulated per bucket: what ``TableReader`` answers for a table."""

    since: datetime
    until: datetime
    bucket: timedelta
    sla: timedelta
    outside: int = 0        # decoded, but its event time is outside the window
    # bucket -> (id, digest of the values, checksum term, late?, event time in epoch s)
    _recs: dict[int, list[tuple[str, str, int, bool, float]]] = field(
        default_factory=lambda: defaultdict(list))

    def index(self, t: datetime) -> int:
        return math.floor(t.timestamp() / self.bucket.total_seconds())

    def add(self, r: Record) -> None:
        if not self.since <= r.time < self.until:
            self.outside += 1
            return
        late = r.landed is not None and r.landed - r.time > self.sla
        self._recs[self.index(r.time)].append(
            (r.event_id, digest(r.values), checksum(r.event_id, r.values), late,
             r.time.timestamp()))

    def summaries(self, size: timedelta | None = None,
                  within: tuple[timedelta, list[int]] | None = None) -> dict[int, Summary]:
        """Per bucket of ``size`` (default: the landing's), only in the buckets of
        ``within`` (a size and its indexes) when given."""
        secs = (size or self.bucket).total_seconds()
        keep = set(within[1]) if within else None
        wsecs = within[0].total_seconds() if within else 1.0
        acc: dict[int, list[Any]] = {}
        for recs in self._recs.values():
            for eid, _d, h, late, epoch in recs:
                if keep is not None and math.floor(epoch / wsecs) not in keep:
                    continue
                s = acc.setdefault(math.floor(epoch / secs), [0, set(), 0, 0])
                s[0] += 1
                s[1].add(eid)
                s[2] += h
                s[3] += late
        return {b: Summary(n, len(ids), h, late) for b, (n, ids, h, late) in acc.items()}

    def ids(self, size: timedelta, indexes: list[int]) -> set[str]:
        secs, keep = size.total_seconds(), set(indexes)
        return {r[0] for recs in self._recs.values() for r in recs
                if math.floor(r[4] / secs) in keep}

    def rows_of(self, buckets: list[int], ids: set[str]) -> dict[int, list[RowDigest]]:
        out: dict[int, list[RowDigest]] = {}
        for b in buckets:
            by_id: dict[str, list[str]] = defaultdict(list)
            for eid, d, *_ in self._recs.get(b, []):
                if eid in ids:
                    by_id[eid].append(d)
            out[b] = [RowDigest(e, len(ds), frozenset(ds)) for e, ds in by_id.items()]
        return out

    def rows(self, lo: datetime, _hi: datetime) -> list[RowDigest]:
        """Every row of the bucket holding ``lo``."""
        b = self.index(lo)
        return self.rows_of([b], {r[0] for r in self._recs.get(b, [])})[b]
