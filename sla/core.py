"""The pure part of the exporter: plain values in, plain values out, no I/O.

Everything a scrape decides (how far behind a partition is, what retention took from a
group, which landing-delay bucket a row falls in) is here, so unit tests and a Hypothesis
property can exercise it without Kafka or PostgreSQL.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Seconds, from "well inside the promise" to "broke it": 15 min = 900 s sits between buckets.
DEFAULT_BUCKETS: tuple[float, ...] = (1, 2, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600)


@dataclass(frozen=True)
class PartitionState:
    """One partition as one scrape sees it, for one group."""

    committed: int | None   # the group's committed offset; None: never committed here
    log_start: int          # the first offset the log still holds
    end: int                # last stable offset: what a read_committed reader can reach

    @property
    def position(self) -> int:
        """Where the group reads next. A group with no commit, or one whose commit fell off
        the log, starts from the log start (Connect sinks reset to earliest)."""
        if self.committed is None or self.committed < self.log_start:
            return self.log_start
        return self.committed

    @property
    def caught_up(self) -> bool:
        return self.position >= self.end

    @property
    def records_behind(self) -> int:
        return max(0, self.end - self.position)


def lag_seconds(state: PartitionState, next_record_ms: int | None, now_ms: int) -> float:
    """Seconds between now and the timestamp of the next record the group will read.

    0 when caught up, and when no committed record is left before ``end`` (only transaction
    markers or aborted records, which a read_committed sink skips). A record stamped in the
    future (a producer's clock ahead of ours) counts as 0, never negative.
    """
    if state.caught_up or next_record_ms is None:
        return 0.0
    return max(0, now_ms - next_record_ms) / 1000.0


PartitionKey = tuple[str, str, int]   # (group, topic, partition)


@dataclass
class RetentionTracker:
    """Records a group had not read when they left the log, counted once each.

    Between two scrapes the log start moves from ``L_prev`` to ``L``: the offsets in
    ``[L_prev, L)`` left the log in that time, and those at or after the group's committed
    offset had not been read. Those intervals never overlap from one scrape to the next, so
    nothing is counted twice, however often the same lagging group is scraped. On a
    partition's first scrape the exporter does not know when the records went: it counts
    ``[committed, L)``, what is missing now. A log start that moves back means the topic was
    recreated: the partition starts over.
    """

    _last_start: dict[PartitionKey, int] = field(default_factory=dict)
    totals: dict[PartitionKey, int] = field(default_factory=dict)

    def observe(self, key: PartitionKey, committed: int | None, log_start: int) -> int:
        """Take one scrape's view; return how many records are newly counted lost."""
        previous = self._last_start.get(key)
        if previous is not None and log_start < previous:
            previous = None
        self._last_start[key] = max(log_start, previous or 0)
        self.totals.setdefault(key, 0)
        if committed is None or log_start <= 0:
            return 0
        floor = committed if previous is None else max(committed, previous)
        lost = max(0, log_start - max(floor, 0))
        self.totals[key] += lost
        return lost

    def forget(self, keep: Iterable[PartitionKey]) -> None:
        """Drop partitions no longer measured (a deleted connector), keeping memory flat.
        Their totals go too: Prometheus sees the series end, not a counter reset."""
        kept = set(keep)
        for key in [k for k in self._last_start if k not in kept]:
            del self._last_start[key]
            self.totals.pop(key, None)


@dataclass
class Histogram:
    """A cumulative Prometheus histogram fed with per-bucket counts a query computed."""

    buckets: tuple[float, ...] = DEFAULT_BUCKETS
    counts: list[int] = field(default_factory=list)   # cumulative, one per bucket, then +Inf
    total: float = 0.0

    def __post_init__(self) -> None:
        if list(self.buckets) != sorted(set(self.buckets)):
            raise ValueError("histogram buckets must be distinct and increasing")
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def add(self, cumulative: Sequence[int], count: int, total: float) -> None:
        """``cumulative[i]``: rows at or under ``buckets[i]``; ``count``: every row."""
        if len(cumulative) != len(self.buckets):
            raise ValueError("one count per bucket")
        for i, c in enumerate(cumulative):
            self.counts[i] += max(0, int(c))
        self.counts[-1] += max(0, int(count))
        self.total += float(total or 0.0)

    def observe(self, value: float) -> None:
        self.add([1 if value <= b else 0 for b in self.buckets], 1, value)


def threshold(name: str, default: float, overrides: Mapping[str, float]) -> float:
    """The first override whose glob matches ``name`` (in the file's order), else the default."""
    for pattern, value in overrides.items():
        if fnmatch.fnmatchcase(name, pattern):
            return value
    return default


def included(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)
