"""The ack policy: what happens to received deliveries after each transaction outcome.

Pure (no pika, no Kafka, clock passed in), so the heart of exactly-once is tested by calling
it. The AMQP thread holds deliveries in *chunks*, each one Kafka transaction, in delivery
order; only the front chunk is ever in a transaction. Outcomes:

- **committed**: ack (``multiple``) up to the chunk's last tag; the next chunk goes at once.
- **aborted** (Kafka, the ledger or the registry unavailable): the chunk stays and is tried
  again after a backoff. Nothing is nacked: a requeue would count as a delivery attempt,
  and RabbitMQ 4's quorum queues drop (or dead-letter) a message after 20 of them, so
  cycling nack/requeue through a Kafka outage of a few minutes lost messages. While a
  chunk is held, RabbitMQ sends no more than the prefetch: taking new deliveries stops by
  itself. A retried chunk reads the ledger to its end first (the failed try may have
  committed after all).
- **rejected** (Kafka refused one record for good): that delivery is forced to a dead
  letter and the chunk tried again at once; when Kafka's answer does not say which record,
  the chunk is split in halves until the one at fault is alone.
- **lost** (the AMQP channel is gone): every held delivery is forgotten; RabbitMQ
  redelivers them (the ledger turns the ones that did commit into no-ops).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from .core import KAFKA_REJECTED


class Tagged(Protocol):
    @property
    def delivery_tag(self) -> int: ...


T = TypeVar("T", bound=Tagged)

BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 10.0


@dataclass
class Backoff:
    """Doubling delay, capped; reset after a success."""

    initial: float = BACKOFF_INITIAL_S
    cap: float = BACKOFF_MAX_S
    current: float = -1.0

    def next(self) -> float:
        if self.current < 0:
            self.current = self.initial
        delay, self.current = self.current, min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.current = self.initial


@dataclass
class Settlement(Generic[T]):
    backoff: Backoff = field(default_factory=Backoff)
    chunks: deque[list[T]] = field(default_factory=deque)
    # event_id -> (reason, detail): deliveries to dead-letter whatever they hold.
    forced: dict[str, tuple[str, str]] = field(default_factory=dict)
    consecutive_aborts: int = 0
    retry_at: float = 0.0
    retrying: bool = False  # the front chunk failed before: read the ledger to its end
    last_commit_at: float | None = None

    # -- what the loop asks -----------------------------------------------------------

    def hold(self, items: Sequence[T]) -> None:
        if items:
            self.chunks.append(list(items))

    def ready(self, now: float) -> list[T] | None:
        """The chunk to put into the next transaction, if it is time."""
        if self.chunks and now >= self.retry_at:
            return self.chunks[0]
        return None

    @property
    def held(self) -> int:
        return sum(len(c) for c in self.chunks)

    # -- outcomes ---------------------------------------------------------------------

    def committed(self, now: float, event_ids: Iterable[str] = ()) -> int:
        """The front chunk committed: the delivery tag to ack up to (``multiple``)."""
        chunk = self.chunks.popleft()
        for e in event_ids:
            self.forced.pop(e, None)
        self.consecutive_aborts = 0
        self.backoff.reset()
        self.retry_at = 0.0
        self.retrying = False
        self.last_commit_at = now
        return chunk[-1].delivery_tag

    def aborted(self, now: float) -> float:
        """The front chunk's transaction was aborted: keep it; seconds until the retry."""
        self.consecutive_aborts += 1
        delay = self.backoff.next()
        self.retry_at = now + delay
        self.retrying = True
        return delay

    def rejected(self, now: float, event_id: str | None, reason: str) -> None:
        """Kafka refused a record of the front chunk for good (``event_id`` names its
        delivery when known)."""
        self.retrying = True
        self.retry_at = now
        front = self.chunks[0]
        if event_id is not None:
            self.forced[event_id] = (KAFKA_REJECTED, reason)
        elif len(front) > 1:
            half = len(front) // 2
            self.chunks[0] = front[half:]
            self.chunks.appendleft(front[:half])
        else:
            # Alone and still unnamed: the caller resolves it to its event id.
            raise LookupError("a chunk of one delivery was refused without a name")

    def lost(self) -> None:
        """The channel is gone: RabbitMQ requeues everything not acked."""
        self.chunks.clear()
        self.retry_at = 0.0
        self.retrying = False
        self.backoff.reset()

    # -- health -----------------------------------------------------------------------

    def stalled(self, now: float, max_aborts: int, max_age_s: float) -> bool:
        """True when work is held and no commit has gone through for a while."""
        if not self.chunks:
            return False
        if self.consecutive_aborts >= max_aborts:
            return True
        return self.last_commit_at is not None and now - self.last_commit_at > max_age_s
