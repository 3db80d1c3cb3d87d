"""Which event ids were already committed: the collector's defence against tracker retries.

Trackers retry whatever did not get a 2xx: after a 503, a timeout, or a collector that died
between the Kafka commit and the response. ``RecentIds`` remembers the event ids committed
in the last ``window_s`` seconds (at most ``max_ids`` of them, oldest forgotten first); the
sink skips an event whose id is in it, and answers the retry with 200, since the event is
already durable. Ids enter only *after* their transaction committed, so an aborted batch
never hides a retry.

The set is filled from three places: this process's own commits, the dedup ledger read
back at start (so a restart keeps its memory), and the ledger tailed while running (so
replicas behind one load balancer see each other's commits).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")


class RecentIds:
    def __init__(self, max_ids: int = 1_000_000, window_s: float = 3600.0) -> None:
        self.max_ids = max_ids
        self.window_ms = int(window_s * 1000)
        self._ids: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def add_many(self, ids: Iterable[str], at_ms: int | None = None) -> None:
        at = at_ms if at_ms is not None else int(time.time() * 1000)
        with self._lock:
            for i in ids:
                self._ids[i] = at
                self._ids.move_to_end(i)
            self._evict(at)

    def add(self, event_id: str, at_ms: int | None = None) -> None:
        self.add_many((event_id,), at_ms)

    def _evict(self, now_ms: int) -> None:
        ids = self._ids
        while len(ids) > self.max_ids:
            ids.popitem(last=False)
        horizon = now_ms - self.window_ms
        while ids:
            oldest = next(iter(ids.values()))
            if oldest >= horizon:
                break
            ids.popitem(last=False)


def split_duplicates(items: Sequence[T], key_of, recent: RecentIds) -> tuple[list[T], list[T]]:  # type: ignore[no-untyped-def]
    """(fresh, duplicates): duplicates are already committed, or repeat an earlier item."""
    fresh: list[T] = []
    dups: list[T] = []
    seen: set[str] = set()
    for item in items:
        k = key_of(item)
        if k is None:
            fresh.append(item)
        elif k in recent or k in seen:
            dups.append(item)
        else:
            seen.add(k)
            fresh.append(item)
    return fresh, dups
