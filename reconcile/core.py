"""What two landings of one stream disagree on, bucket by event time (pure, no I/O).

Each side is summarised per bucket of event time (``Summary``: rows, distinct ids, an
order-independent checksum of ``(id, compared values)``, late rows). Buckets whose
summaries are equal hold the same rows once each, on both sides; only the others are read
row by row (``RowDigest``: id, digest of the compared values, count) and classified:

- ``missing_in_new`` / ``missing_in_old``: the id is on one side only;
- ``duplicated_new`` / ``duplicated_old``: the id is there more than once;
- ``mismatched``: the id is on both sides, with different compared values.

*Late* is counted from the summaries alone: a row whose landing time is more than the SLA
after its event time. A late row is there; it only broke the latency promise.

The verdict (``Report.clean``) is the go/no-go gate of a migration: nothing missing on
either side, nothing twice, nothing different (late rows count only when asked).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# How many example ids a bucket's report keeps per kind of difference.
EXAMPLES = 5


@dataclass(frozen=True, slots=True)
class Summary:
    """One side's bucket: what the comparison needs without reading a row."""

    rows: int
    ids: int
    checksum: int
    late: int = 0

    def same_rows(self, other: Summary) -> bool:
        # Equal counts, equal distinct ids (so no duplicate on either side, since rows ==
        # ids), equal checksums: the same (id, values) once each, barring a hash collision
        # of 60-bit digests summed, which a drill-down of a suspicious bucket would show.
        return (self.rows == other.rows and self.ids == other.ids
                and self.checksum == other.checksum and self.rows == self.ids)


EMPTY = Summary(0, 0, 0, 0)


@dataclass(frozen=True, slots=True)
class RowDigest:
    """One id of a bucket on one side: how often it is there and with which values."""

    event_id: str
    count: int
    digests: frozenset[str]


@dataclass
class BucketDiff:
    start: datetime
    old: Summary
    new: Summary
    missing_in_new: int = 0
    missing_in_old: int = 0
    duplicated_new: int = 0
    duplicated_old: int = 0
    mismatched: int = 0
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def differs(self) -> bool:
        return bool(self.missing_in_new or self.missing_in_old or self.duplicated_new
                    or self.duplicated_old or self.mismatched)

    def as_json(self) -> dict[str, object]:
        return {"bucket_start": self.start.isoformat(), "old_rows": self.old.rows,
                "new_rows": self.new.rows, "missing_in_new": self.missing_in_new,
                "missing_in_old": self.missing_in_old, "duplicated_new": self.duplicated_new,
                "duplicated_old": self.duplicated_old, "mismatched": self.mismatched,
                "late_old": self.old.late, "late_new": self.new.late,
                "examples": self.examples}


KINDS = ("missing_in_new", "missing_in_old", "duplicated_new", "duplicated_old", "mismatched")


@dataclass
class Report:
    since: datetime
    until: datetime
    bucket: timedelta
    buckets: list[BucketDiff]
    drilled: int = 0

    def total(self, kind: str) -> int:
        if kind in ("late_old", "late_new"):
            side = kind.removeprefix("late_")
            return sum(getattr(b, side).late for b in self.buckets)
        return sum(int(getattr(b, kind)) for b in self.buckets)

    def clean(self, *, count_late: bool = False) -> bool:
        if any(self.total(k) for k in KINDS):
            return False
        return not (count_late and self.total("late_new"))

    def as_json(self, *, count_late: bool = False) -> dict[str, object]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat(),
                "bucket_seconds": int(self.bucket.total_seconds()),
                "clean": self.clean(count_late=count_late),
                "totals": {k: self.total(k) for k in (*KINDS, "late_old", "late_new")},
                "old_rows": sum(b.old.rows for b in self.buckets),
                "new_rows": sum(b.new.rows for b in self.buckets),
                "buckets_compared": len(self.buckets), "buckets_drilled": self.drilled,
                "buckets": [b.as_json() for b in self.buckets
                            if b.differs or b.old.late or b.new.late]}


def bucket_start(index: int, bucket: timedelta) -> datetime:
    return datetime.fromtimestamp(index * bucket.total_seconds(), UTC)


def to_drill(old: Mapping[int, Summary], new: Mapping[int, Summary]) -> list[int]:
    """Bucket indexes whose summaries say the two sides may differ."""
    return sorted(b for b in set(old) | set(new)
                  if not old.get(b, EMPTY).same_rows(new.get(b, EMPTY)))


def classify(diff: BucketDiff, old: Iterable[RowDigest], new: Iterable[RowDigest]) -> None:
    """Fill ``diff``'s counts from the two sides' rows of its bucket."""
    o = {r.event_id: r for r in old}
    n = {r.event_id: r for r in new}
    found: dict[str, list[str]] = {k: [] for k in KINDS}
    for eid in o.keys() - n.keys():
        found["missing_in_new"].append(eid)
    for eid in n.keys() - o.keys():
        found["missing_in_old"].append(eid)
    for eid, r in o.items():
        if r.count > 1:
            found["duplicated_old"].append(eid)
    for eid, r in n.items():
        if r.count > 1:
            found["duplicated_new"].append(eid)
    for eid in o.keys() & n.keys():
        if o[eid].digests != n[eid].digests:
            found["mismatched"].append(eid)
    for kind, ids in found.items():
        setattr(diff, kind, len(ids))
        if ids:
            diff.examples[kind] = sorted(ids)[:EXAMPLES]


def compare(old: Mapping[int, Summary], new: Mapping[int, Summary], *, since: datetime,
            until: datetime, bucket: timedelta,
            rows: Callable[[int], tuple[Iterable[RowDigest], Iterable[RowDigest]]],
            progress: Callable[[int, int], None] | None = None) -> Report:
    """The report for a window: summaries of both sides, and ``rows(bucket)`` (old, new) for
    each bucket that needs a row-level look. ``progress(done, total)`` after each one."""
    drill = set(to_drill(old, new))
    report = Report(since, until, bucket, [], drilled=len(drill))
    done = 0
    for b in sorted(set(old) | set(new)):
        diff = BucketDiff(bucket_start(b, bucket), old.get(b, EMPTY), new.get(b, EMPTY))
        if b in drill:
            o, n = rows(b)
            classify(diff, o, n)
            done += 1
            if progress is not None:
                progress(done, len(drill))
        report.buckets.append(diff)
    return report
