"""Group commit: the events of concurrent HTTP requests go to Kafka in one transaction.

Requests call ``submit(outputs)`` and wait. A single asyncio task takes the first waiting
request, then gathers more for at most ``commit.max_wait_ms`` or until ``commit.max_events``,
and hands the batch to the sink on one dedicated thread (librdkafka calls block). Requests
that arrive while a transaction commits form the next batch, so the batch size follows the
load: one transaction per request when idle, hundreds of events per transaction when busy.
Only when the commit returned does each request's future resolve, and only then does the
request answer 200. A record Kafka refuses for good (``RecordRejected``) fails only the
request it belongs to, and the rest of the batch is committed without it; a batch that
Kafka cannot take at all (down, aborted) fails its requests with 503, and trackers retry.

Up to ``commit.parallel_transactions`` batches are in flight at once, each on its own
producer ("slot") and thread. Outputs that carry a dedup id (none do in the collector,
whose raw records are deduplicated downstream by enrich) keep a retry that races its
original out of the other slot until the original's batch is decided.
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
from sidecar.exactly_once.ledger import LedgerUnavailable
from sidecar.exactly_once.producer import RecordRejected

from .metrics import Metrics
from .pipeline import Output
from .settings import CommitSettings
from .sink import BatchResult, SinkUnavailable

log = logging.getLogger(__name__)

# How long a failed commit keeps /sink-health red when no later batch succeeds.
UNHEALTHY_AFTER_FAILURE_S = 30.0


class Sink(Protocol):
    slots: int

    def commit(self, outputs: Sequence[Output], slot: int) -> BatchResult: ...
    def rebuild(self, slot: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Committed:
    good: int
    bad: int
    duplicates: int


@dataclass(slots=True)
class _Pending:
    outputs: list[Output]
    future: asyncio.Future[Committed]
    ids: frozenset[str]


class GroupCommitter:
    def __init__(self, sink: Sink, settings: CommitSettings, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.sink = sink
        self.settings = settings
        self.metrics = metrics
        slots = getattr(sink, "slots", 1)
        # One thread per producer: librdkafka's transactional calls block, and each
        # producer's transaction API must be driven from one place at a time.
        self._executors = [ThreadPoolExecutor(1, thread_name_prefix=f"kafka-txn-{i}")
                           for i in range(slots)]
        self._free: collections.deque[int] = collections.deque(range(slots))
        self._inflight_ids: set[str] = set()
        self._inflight: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
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
        ids = frozenset(o.dedup_id for o in outputs if o.dedup_id is not None)
        self._queue.append(_Pending(outputs, fut, ids))
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
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        for ex in self._executors:
            ex.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            if not self._free:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            batch = await self._gather()
            if not batch:
                # Everything waiting races a batch in flight: wait for one to finish.
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            slot = self._free.popleft()
            for p in batch:
                self._inflight_ids.update(p.ids)
            task = asyncio.get_running_loop().create_task(self._commit(batch, slot))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    def _take(self) -> _Pending | None:
        """The first queued request that shares no event id with a batch in flight."""
        for i, p in enumerate(self._queue):
            if not (p.ids and not p.ids.isdisjoint(self._inflight_ids)):
                del self._queue[i]
                return p
        return None

    async def _gather(self) -> list[_Pending]:
        batch: list[_Pending] = []
        n = 0
        deadline = self._clock() + self.settings.max_wait_ms / 1000
        while n < self.settings.max_events:
            while self._queue:
                nxt = self._take()
                if nxt is None:
                    break
                if batch and n + len(nxt.outputs) > self.settings.max_events:
                    self._queue.appendleft(nxt)   # would overflow: it opens the next batch
                    return batch
                batch.append(nxt)
                n += len(nxt.outputs)
            left = deadline - self._clock()
            if not batch or left <= 0 or self._closing or n >= self.settings.max_events:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return batch

    async def _commit(self, batch: list[_Pending], slot: int) -> None:
        try:
            await self._commit_on(batch, slot)
        finally:
            for p in batch:
                self._inflight_ids.difference_update(p.ids)
            self._free.append(slot)
            self._slot_freed.set()
            self._arrived.set()   # deferred retries may go now

    async def _commit_on(self, batch: list[_Pending], slot: int) -> None:
        outputs = [o for p in batch for o in p.outputs]
        self._queued_events -= len(outputs)
        self.metrics.queued_events.set(self._queued_events)
        live = [p for p in batch if not p.future.done()]
        loop = asyncio.get_running_loop()
        executor = self._executors[slot]
        started = self._clock()
        try:
            batch, outputs, result = await self._commit_isolating(batch, slot)
        except (TransactionAborted, SinkUnavailable, LedgerUnavailable) as exc:
            self._failed(live, "aborted", exc, len(outputs))
            return
        except FatalKafkaError as exc:
            self._failed(live, "fatal", exc, len(outputs))
            # Drop and rebuild: a new producer with the same transactional id fences the
            # broken one. If Kafka is down this fails too; the next batch tries again.
            try:
                await loop.run_in_executor(executor, self.sink.rebuild, slot)
            except Exception as rexc:  # logged, retried on the next batch
                log.warning("snowplow.producer_rebuild_failed", extra={"error": str(rexc)})
            return
        except Exception as exc:  # one bad batch must not kill the loop
            log.exception("snowplow.commit_crashed")
            self._failed(live, "error", exc, len(outputs))
            return
        elapsed = self._clock() - started
        self.last_success_at = self._clock()
        self.metrics.commit_seconds.observe(elapsed)
        for phase, seconds in result.phases:
            self.metrics.commit_phase_seconds.labels(phase).observe(seconds)
        self.metrics.batch_events.observe(len(outputs))
        self.metrics.batch_requests.observe(len(batch))
        self.metrics.sink_healthy.set(1)
        self._succeeded(batch, outputs, result)

    async def _commit_isolating(self, batch: list[_Pending], slot: int
                                ) -> tuple[list[_Pending], list[Output], BatchResult]:
        """Commit the batch; a record Kafka refuses for good fails only its own request.

        The rest of the batch is committed again without it (one failure domain per
        request: a poison request must not turn into 503s for everyone sharing its
        transaction). When Kafka does not say which record it refused, every request of
        the batch is committed on its own, so only the guilty one fails.
        """
        loop = asyncio.get_running_loop()
        executor = self._executors[slot]
        singles: list[_Pending] = []
        while True:
            outputs = [o for p in batch for o in p.outputs]
            try:
                if not outputs:
                    result = BatchResult(frozenset(), 0)
                else:
                    result = await loop.run_in_executor(executor, self.sink.commit,
                                                        outputs, slot)
            except RecordRejected as exc:
                guilty = _owner(batch, exc.index)
                if guilty is None and len(batch) > 1:
                    singles.extend(batch[1:])   # cannot tell: one request per transaction
                    batch = batch[:1]
                    continue
                culprit = guilty if guilty is not None else batch[0]
                # Not a sink failure: Kafka is fine, the request is not. /sink-health stays
                # green, or one poison client could take every collector out of rotation.
                self._failed([culprit], "rejected", exc, len(culprit.outputs), sink=False)
                batch = [p for p in batch if p is not culprit]
                if not batch and singles:
                    batch = [singles.pop(0)]
                continue
            if not singles:
                return batch, outputs, result
            # Isolating request by request: answer this one, then the next.
            self._succeeded(batch, outputs, result)
            batch = [singles.pop(0)]

    def _succeeded(self, batch: list[_Pending], outputs: list[Output],
                   result: BatchResult) -> None:
        self._count(outputs, result)
        i = 0
        for p in batch:
            good = bad = dups = 0
            for o in p.outputs:
                if i in result.duplicates:
                    dups += 1
                elif o.outcome == "bad":
                    bad += 1
                else:
                    good += 1
                i += 1
            if not p.future.done():
                p.future.set_result(Committed(good, bad, dups))

    def _count(self, outputs: list[Output], result: BatchResult) -> None:
        m = self.metrics
        for i, o in enumerate(outputs):
            if i in result.duplicates:
                m.events.labels("duplicate").inc()
            else:
                m.events.labels(o.outcome).inc()
                if o.outcome == "bad":
                    m.bad_rows.labels(o.check or "", o.reason or "").inc()

    def _failed(self, live: list[_Pending], reason: str, exc: BaseException, n: int,
                sink: bool = True) -> None:
        self.metrics.commit_failures.labels(reason).inc()
        self.metrics.rejected.labels(reason).inc(n)
        if sink:
            self.last_failure_at = self._clock()
            self.metrics.sink_healthy.set(0)
        log.warning("snowplow.commit_failed", extra={"reason": reason, "error": str(exc),
                                                     "events": n})
        for p in live:
            if not p.future.done():
                p.future.set_exception(SinkUnavailable(f"{reason}: {exc}"))


def _owner(batch: list[_Pending], index: int | None) -> _Pending | None:
    """The request whose outputs hold record ``index`` of the batch."""
    if index is None:
        return None
    for p in batch:
        if index < len(p.outputs):
            return p
        index -= len(p.outputs)
    return None


def _swallow(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # retrieved, so asyncio does not log it as never retrieved
