"""Canaries, the pure part: when to publish, what a canary is called, and what each check of
the warehouse decides about the canaries still on their way. No I/O, and time comes in as an
argument, so unit tests and Hypothesis drive it with a clock of their own.

A canary is one synthetic event through one path (the RabbitMQ bridge, the Snowplow
collector), published every ``interval`` seconds. Each one ends in exactly one of two ways:

- **seen**: a check finds its row (by event id) in the path's table, landed within the
  deadline; its latency, the row's ``landed_at`` minus the moment it was published, goes
  into the path's histogram;
- **lost**: a successful check at or after ``published + deadline`` still does not find it,
  or finds it landed after the deadline. Which one does not depend on how often checks run.

A canary is decided once: seen or lost, never both, never again. A check that could not read
the table decides nothing, so a warehouse outage does not count canaries lost that may well
have landed; they are decided by the first check that works.
"""

from __future__ import annotations

import math
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .core import Histogram

# The marker analysts and the reconcile tooling filter on (sla/README.md, "The marker").
ID_PREFIX = "canary-"
APP_ID = "conveyor-canary"
# Snowplow event ids must be UUIDs: canary ids there are derived from the readable id.
_SNOWPLOW_NS = uuid.UUID("6f1d3c0e-2a59-5b8e-9d4e-0c2a7e8b3f51")

# Seconds: a canary crosses a path in a tenth of a second on an idle local stack and in tens
# of seconds where a sink buffers (Snowflake's 10 s flush); the promise is the last bound.
DEFAULT_CANARY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 15, 30, 60,
                                             120, 300, 600, 900)


def canary_id(path: str, run: str, seq: int) -> str:
    """``canary-<path>-<run>-<seq>``: which path, which exporter process, which canary."""
    return f"{ID_PREFIX}{path}-{run}-{seq}"


def snowplow_event_id(readable_id: str) -> str:
    """The tracker protocol's ``eid`` must be a UUID: a stable one per readable canary id."""
    return str(uuid.uuid5(_SNOWPLOW_NS, readable_id))


def next_due(previous_due: float, interval: float, now: float) -> float:
    """The next publishing time after ``previous_due``, on a fixed-rate schedule.

    Publishing takes time, so the next canary is due ``interval`` after the previous *slot*,
    not after the publish returned (no drift). A publisher that was stuck (a broker that took
    a minute to refuse) skips the slots it missed instead of firing them all at once: the
    result is always in ``(now, now + interval]`` once ``previous_due + interval`` is past.
    """
    if interval <= 0:
        raise ValueError("interval must be positive")
    due = previous_due + interval
    if due > now:
        return due
    missed = math.floor((now - due) / interval) + 1
    nxt = due + missed * interval
    while nxt <= now:   # float rounding can land exactly on now: one more slot
        nxt += interval
    return nxt


@dataclass(frozen=True)
class Decided:
    """What one check decided: ids newly seen (with their latency) and ids newly lost."""

    seen: dict[str, float] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)


@dataclass
class PathBook:
    """Every canary of one path the exporter has published and not yet decided, and the
    counts a scrape exports. Not thread-safe: its owner holds a lock around each call."""

    path: str
    deadline_s: float
    started_s: float                      # when canarying began: the age before a first one
    buckets: Sequence[float] = DEFAULT_CANARY_BUCKETS
    max_pending: int = 10_000
    pending: OrderedDict[str, float] = field(default_factory=OrderedDict)  # id -> published
    sent: int = 0
    seen: int = 0
    lost: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    newest_seen_published_s: float | None = None
    latency: Histogram = field(init=False)

    def __post_init__(self) -> None:
        self.latency = Histogram(tuple(self.buckets))

    def published(self, event_id: str, at_s: float) -> None:
        """A canary the path's entry point took (RabbitMQ confirmed it, the collector said
        200). Beyond ``max_pending`` undecided ones (checks failing for days), the oldest is
        counted lost: memory stays bounded, and it is long past any deadline by then."""
        if event_id in self.pending:
            return
        self.pending[event_id] = at_s
        self.sent += 1
        while len(self.pending) > self.max_pending:
            self.pending.popitem(last=False)
            self.lost += 1

    def failed(self, reason: str) -> None:
        """A publish the entry point refused or did not answer: nothing is on its way."""
        self.failures[reason] = self.failures.get(reason, 0) + 1

    def looking_for(self) -> list[str]:
        return list(self.pending)

    def observe(self, now_s: float, visible: Mapping[str, float]) -> Decided:
        """One successful check at ``now_s``: ``visible`` maps the event ids found in the
        table to their rows' ``landed_at`` (epoch s). Ids not pending are ignored (decided
        before, or another exporter's)."""
        decided = Decided()
        for event_id, landed_s in visible.items():
            published_s = self.pending.pop(event_id, None)
            if published_s is None:
                continue
            # The sink's clock against ours: a few ms of skew must not make it negative.
            latency = max(0.0, landed_s - published_s)
            if latency > self.deadline_s:
                # Landed after its deadline (no check ran in between): lost, whatever the
                # checks' cadence, as a check between deadline and landing would have said.
                decided.lost.append(event_id)
                self.lost += 1
                continue
            decided.seen[event_id] = latency
            self.latency.observe(latency)
            self.seen += 1
            if self.newest_seen_published_s is None or published_s > self.newest_seen_published_s:
                self.newest_seen_published_s = published_s
        for event_id, published_s in list(self.pending.items()):
            if now_s - published_s >= self.deadline_s:
                del self.pending[event_id]
                decided.lost.append(event_id)
                self.lost += 1
        return decided

    def age(self, now_s: float) -> float:
        """Seconds since the newest seen canary was published (since canarying began while
        none was seen): how stale this path's proof of life is, pipeline delay included."""
        since = self.newest_seen_published_s
        return max(0.0, now_s - (self.started_s if since is None else since))
