"""Batching: one batch is one Kafka transaction, closed by count, bytes or age.

Pure and clock-injected: the shell passes ``now`` (monotonic seconds) so tests need no sleep.
The age limit starts at the batch's first delivery, so a quiet queue's lone message waits at
most ``max_wait`` before it is committed and acked.

Deliveries keep arriving while a batch commits (up to the prefetch). ``take()`` hands out at
most one batch's worth, by count and bytes; the rest stays, already due, for the next
transaction. So ``max_messages`` and ``max_bytes`` bound every transaction, however deep the
queue. ``clear()`` drops everything (the deliveries are being requeued).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Batcher(Generic[T]):
    max_items: int
    max_bytes: int
    max_wait_s: float
    items: list[T] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    nbytes: int = 0
    opened_at: float | None = None

    def add(self, item: T, size: int, now: float) -> None:
        if not self.items:
            self.opened_at = now
        self.items.append(item)
        self.sizes.append(size)
        self.nbytes += size

    def __len__(self) -> int:
        return len(self.items)

    def full(self) -> bool:
        return len(self.items) >= self.max_items or self.nbytes >= self.max_bytes

    def due(self, now: float) -> bool:
        """True when the batch should be committed now."""
        if not self.items:
            return False
        return self.full() or self.time_left(now) <= 0

    def time_left(self, now: float) -> float:
        """Seconds until the age limit closes the batch (``max_wait`` when empty)."""
        if self.opened_at is None or not self.items:
            return self.max_wait_s
        return max(0.0, self.opened_at + self.max_wait_s - now)

    def take(self) -> list[T]:
        """The oldest items, at most ``max_items`` and ``max_bytes`` (at least one item,
        however large: the size limit of a single message is the core's to enforce)."""
        n, nbytes = 0, 0
        for size in self.sizes:
            if n == self.max_items or (n and nbytes + size > self.max_bytes):
                break
            n, nbytes = n + 1, nbytes + size
        taken = self.items[:n]
        del self.items[:n], self.sizes[:n]
        self.nbytes -= nbytes
        if not self.items:
            self.opened_at = None
        # What is left has waited through a commit already: its age counts from the
        # batch's start, so it is due at once.
        return taken

    def clear(self) -> None:
        self.items, self.sizes, self.nbytes, self.opened_at = [], [], 0, None
