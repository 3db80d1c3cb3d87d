"""Group commit: the events of concurrent HTTP requests go to Kafka in one transaction.

Requests call ``submit(outputs)`` and wait. A single asyncio task takes the first waiting
request, then gathers more for at most ``commit.max_wait_ms`` or until ``commit.max_events``,
and hands the batch to the sink on one dedicated thread (librdkafka calls block). Requests
that arrive while a transaction commits form the next batch, so the batch size follows the
load: one transaction per request when idle, hundreds of events per transaction when busy.
Only when the commit returned does each request's future resolve, and only then does the
request answer 200. A failed batch fails every request in it (503; trackers retry, and the
dedup makes a retry of an event that did land a no-op).

Batches run strictly one after another, so the dedup decision for batch N+1 always sees
batch N's outcome.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from sidecar.common.errors import FatalKafkaError, TransactionAborted
from sidecar.common.ledger import LedgerUnavailable

from .metrics import Metrics
from .pipeline import Output
from .settings import CommitSettings
from .sink import BatchResult, SinkUnavailable

log = logging.getLogger(__name__)

# How long a failed commit keeps /sink-health red when no later batch succeeds.
UNHEALTHY_AFTER_FAILURE_S = 30.0


class Sink(Protocol):
    def commit(self, outputs: Sequence[Output]) -> BatchResult: ...
    def rebuild(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Committed:
    good: int
    bad: int
    duplicates: int


@dataclass(slots=True)
class _Pending:
    outputs: list[Output]
    future: asyncio.Future[Committed]


class GroupCommitter:
    def __init__(self, sink: Sink, settings: CommitSettings, metrics: Metrics,
                 executor: ThreadPoolExecutor | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self.settings = settings
        self.metrics = metrics
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="kafka")
        self._queue: collections.deque[_Pending] = collections.deque()
        self._queued_events = 0
        self._arrived = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._clock = clock
        self.last_failure_at: float | None = None
        self.last_success_at: float | None = None

    # -- requests' side ---------------------------------------------------------------------

    async def submit(self, outputs: list[Output]) -> Committed:
        """Returns once ``outputs`` are committed; raises SinkUnavailable otherwise."""
        if self._closing:
            raise SinkUnavailable("shutting down")
        if self._queued_events + len(outputs) > self.settings.max_queued_events:
            self.metrics.rejected.labels("overload").inc(len(outputs))
            raise SinkUnavailable("too many events waiting for Kafka")
        fut: asyncio.Future[Committed] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(outputs, fut))
        self._queued_events += len(outputs)
        self.metrics.queued_events.set(self._queued_events)
        self._arrived.set()
        if self.settings.unsafe_ack_before_commit:
            fut.add_done_callback(_swallow)
            return Committed(sum(o.outcome == "good" for o in outputs),
                             sum(o.outcome == "bad" for o in outputs), 0)
        try:
            return await asyncio.wait_for(asyncio.shield(fut), self.settings.request_timeout_s)
        except TimeoutError:
            self.metrics.rejected.labels("timeout").inc(len(outputs))
            raise SinkUnavailable(
                f"not committed within {self.settings.request_timeout_s}s") from None

    @property
    def healthy(self) -> bool:
        if self.last_failure_at is None:
            return True
        if self.last_success_at is not None and self.last_success_at > self.last_failure_at:
            return True
        return self._clock() - self.last_failure_at > UNHEALTHY_AFTER_FAILURE_S

    # -- the loop -------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="group-commit")

    async def close(self) -> None:
        """Stop taking requests, commit what is queued, stop."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            batch = await self._gather()
            await self._commit(batch)

    async def _gather(self) -> list[_Pending]:
        batch = [self._queue.popleft()]
        n = len(batch[0].outputs)
        deadline = self._clock() + self.settings.max_wait_ms / 1000
        while n < self.settings.max_events:
            while self._queue and n + len(self._queue[0].outputs) <= self.settings.max_events:
                item = self._queue.popleft()
                batch.append(item)
                n += len(item.outputs)
            left = deadline - self._clock()
            if left <= 0 or self._closing or (self._queue and n > 0):
                break  # past the wait, or the next request would overflow the batch
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return batch

    async def _commit(self, batch: list[_Pending]) -> None:
        outputs = [o for p in batch for o in p.outputs]
        self._queued_events -= len(outputs)
        self.metrics.queued_events.set(self._queued_events)
        live = [p for p in batch if not p.future.done()]
        loop = asyncio.get_running_loop()
        started = self._clock()
        try:
            result = await loop.run_in_executor(self._executor, self.sink.commit, outputs)
        except (TransactionAborted, SinkUnavailable, LedgerUnavailable) as exc:
            self._failed(live, "aborted", exc, len(outputs))
            return
        except FatalKafkaError as exc:
            self._failed(live, "fatal", exc, len(outputs))
            # Drop and rebuild: a new producer with the same transactional id fences the
            # broken one. If Kafka is down this fails too; the next batch tries again.
            try:
                await loop.run_in_executor(self._executor, self.sink.rebuild)
            except Exception as rexc:
                log.warning("snowplow.producer_rebuild_failed", extra={"error": str(rexc)})
            return
        except Exception as exc:
            log.exception("snowplow.commit_crashed")
            self._failed(live, "error", exc, len(outputs))
            return
        elapsed = self._clock() - started
        self.last_success_at = self._clock()
        self.metrics.commit_seconds.observe(elapsed)
        self.metrics.batch_events.observe(len(outputs))
        self.metrics.batch_requests.observe(len(batch))
        self.metrics.sink_healthy.set(1)
        self._count(outputs, result)
        i = 0
        for p in batch:
            good = bad = dups = 0
            for o in p.outputs:
                if i in result.duplicates:
                    dups += 1
                elif o.outcome == "good":
                    good += 1
                else:
                    bad += 1
                i += 1
            if not p.future.done():
                p.future.set_result(Committed(good, bad, dups))

    def _count(self, outputs: list[Output], result: BatchResult) -> None:
        m = self.metrics
        for i, o in enumerate(outputs):
            if i in result.duplicates:
                m.events.labels("duplicate").inc()
            elif o.outcome == "good":
                m.events.labels("good").inc()
            else:
                m.events.labels("bad").inc()
                m.bad_rows.labels(o.check or "", o.reason or "").inc()

    def _failed(self, live: list[_Pending], reason: str, exc: BaseException, n: int) -> None:
        self.last_failure_at = self._clock()
        self.metrics.commit_failures.labels(reason).inc()
        self.metrics.rejected.labels(reason).inc(n)
        self.metrics.sink_healthy.set(0)
        log.warning("snowplow.commit_failed", extra={"reason": reason, "error": str(exc),
                                                     "events": n})
        for p in live:
            if not p.future.done():
                p.future.set_exception(SinkUnavailable(f"{reason}: {exc}"))


def _swallow(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved, so asyncio does not log it as never retrieved
