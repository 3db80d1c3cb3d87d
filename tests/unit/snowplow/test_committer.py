"""Group commit: batching of concurrent requests, failures, dedup, back-pressure, drain."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sidecar.snowplow.committer import GroupCommitter
from sidecar.snowplow.metrics import Metrics
from sidecar.snowplow.pipeline import Output
from sidecar.snowplow.settings import CommitSettings
from sidecar.snowplow.sink import SinkUnavailable

from .fakes import FakeSink, FatalKafkaError, TransactionAborted


def out(i: str, outcome: str = "good") -> Output:
    return Output("t", i.encode(), b"{}", outcome, i, "x")


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_concurrent_requests_share_one_transaction() -> None:
    sink = FakeSink()

    async def main() -> None:
        c = GroupCommitter(sink, CommitSettings(max_wait_ms=50), Metrics())
        c.start()
        results = await asyncio.gather(*(c.submit([out(f"{r}-{j}") for j in range(10)])
                                         for r in range(8)))
        await c.close()
        assert all(r.good == 10 and r.duplicates == 0 for r in results)

    run(main())
    assert len(sink.batches) == 1 and len(sink.batches[0]) == 80


def test_requests_during_a_commit_form_the_next_batch() -> None:
    sink = FakeSink()
    sink.gate = threading.Event()

    async def main() -> None:
        c = GroupCommitter(sink, CommitSettings(max_wait_ms=0), Metrics())
        c.start()
        first = asyncio.ensure_future(c.submit([out("a")]))
        while not sink.batches and not sink.gate.is_set():
            await asyncio.sleep(0.001)
            if c._queued_events == 0:  # the first batch is in the sink
                break
        rest = [asyncio.ensure_future(c.submit([out(f"b{i}")])) for i in range(5)]
        await asyncio.sleep(0.01)
        sink.gate.set()
        await asyncio.gather(first, *rest)
        await c.close()

    run(main())
    assert [len(b) for b in sink.batches] == [1, 5]


def test_max_events_caps_a_batch() -> None:
    sink = FakeSink()

    async def main() -> None:
        c = GroupCommitter(sink, CommitSettings(max_wait_ms=20, max_events=25), Metrics())
        c.start()
        await asyncio.gather(*(c.submit([out(f"{r}-{j}") for j in range(10)])
                               for r in range(6)))
        await c.close()

    run(main())
    assert all(len(b) <= 25 for b in sink.batches) and sum(map(len, sink.batches)) == 60


@pytest.mark.parametrize("error", [TransactionAborted, FatalKafkaError])
def test_a_failed_batch_fails_every_request_in_it(error: type[Exception]) -> None:
    sink = FakeSink()
    sink.fail_next = [error]
    metrics = Metrics()

    async def main() -> None:
        c = GroupCommitter(sink, CommitSettings(max_wait_ms=30), metrics)
        c.start()
        results = await asyncio.gather(c.submit([out("a")]), c.submit([out("b")]),
                                       return_exceptions=True)
        assert all(isinstance(r, SinkUnavailable) for r in results)
        assert not c.healthy
        again = await c.submit([out("a")])          # the tracker's retry
        assert again.good == 1 and c.healthy
        await c.close()

    run(main())
    assert [o.dedup_id for o in sink.written] == ["a"]
    assert sink.rebuilt == (1 if error is FatalKafkaError else 0)


def test_retries_are_answered_as_duplicates() -> None:
    sink = FakeSink()

    async def main() -> None:
        c = GroupCommitter(sink, CommitSettings(max_wait_ms=0), Metrics())
        c.start()
        first = await c.submit([out("a"), out("b"), out("bad-1", "bad")])
        retry = await c.submit([out("a"), out("b"), out("c"), out("c")])
        await c.close()
        assert (first.good, first.bad, first.duplicates) == (2, 1, 0)
        assert (retry.good, retry.duplicates) == (1, 3)

    run(main())
    assert [o.dedup_id for o in sink.written] == ["a", "b", "bad-1", "c"]


def test_timeout_answers_503_without_cancelling_the_commit() -> None:
    sink = FakeSink()
    sink.gate = threading.Event()

    async def main() -> None:
        c = GroupCommitter(sink, CommitSettings(max_wait_ms=0, request_timeout_s=0.05),
                           Metrics())
        c.start()
        with pytest.raises(SinkUnavailable, match="not committed within"):
            await c.submit([out("a")])
        sink.gate.set()
        retry = await c.submit([out("a")])
        assert retry.duplicates == 1
        await c.close()

    run(main())
    assert len(sink.written) == 1


def test_back_pressure() -> None:
    sink = FakeSink()
    sink.gate = threading.Event()

    async def main() -> None:
        c = GroupCommitter(sink, CommitSettings(max_wait_ms=0, max_queued_events=10), Metrics())
        c.start()
        first = asyncio.ensure_future(c.submit([out(f"a{i}") for i in range(10)]))
        await asyncio.sleep(0.01)
        queued = asyncio.ensure_future(c.submit([out(f"b{i}") for i in range(10)]))
        await asyncio.sleep(0.01)
        with pytest.raises(SinkUnavailable, match="too many"):
            await c.submit([out("c")])
        sink.gate.set()
        await asyncio.gather(first, queued)
        await c.close()

    run(main())


def test_close_commits_what_is_queued_and_refuses_more() -> None:
    sink = FakeSink()

    async def main() -> None:
        c = GroupCommitter(sink, CommitSettings(max_wait_ms=1000), Metrics())
        c.start()
        pending = asyncio.ensure_future(c.submit([out("a")]))
        await asyncio.sleep(0.01)
        await c.close()
        assert (await pending).good == 1
        with pytest.raises(SinkUnavailable):
            await c.submit([out("b")])

    run(main())


def test_unsafe_mode_answers_before_the_commit() -> None:
    sink = FakeSink()
    sink.gate = threading.Event()

    async def main() -> None:
        c = GroupCommitter(sink, CommitSettings(unsafe_ack_before_commit=True), Metrics())
        c.start()
        r = await c.submit([out("a")])
        assert r.good == 1 and not sink.written
        sink.gate.set()
        await c.close()

    run(main())
    assert len(sink.written) == 1


def test_parallel_transactions_overlap() -> None:
    sink = FakeSink(slots=2)
    sink.gate = threading.Event()

    async def main() -> None:
        c = GroupCommitter(sink, CommitSettings(max_wait_ms=0), Metrics())
        c.start()
        first = asyncio.ensure_future(c.submit([out("a")]))
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(c.submit([out("b")]))
        await asyncio.sleep(0.02)
        # Both batches are in the sink at once, on different producers.
        assert sorted(c._free) == [] and len(c._inflight) == 2
        sink.gate.set()
        await asyncio.gather(first, second)
        await c.close()

    run(main())
    assert sorted(sink.slots_used) == [0, 1]


@pytest.mark.parametrize("first_fails", [False, True])
def test_a_retry_racing_its_original_waits_for_it(first_fails: bool) -> None:
    """Slot 0 holds the original of "a"; its retry must not go to slot 1 meanwhile."""
    sink = FakeSink(slots=2)
    sink.gate = threading.Event()
    if first_fails:
        sink.fail_batches_with = {"x"}

    async def main() -> None:
        c = GroupCommitter(sink, CommitSettings(max_wait_ms=0), Metrics())
        c.start()
        original = asyncio.ensure_future(c.submit([out("a"), out("x")]))
        await asyncio.sleep(0.02)
        retry = asyncio.ensure_future(c.submit([out("a")]))
        other = asyncio.ensure_future(c.submit([out("b")]))
        await asyncio.sleep(0.02)
        assert not retry.done() and len(c._inflight) == 2   # "b" went ahead on slot 1
        sink.gate.set()
        results = await asyncio.gather(original, retry, other, return_exceptions=True)
        await c.close()
        if first_fails:
            assert isinstance(results[0], SinkUnavailable)
            assert results[1].good == 1          # the retry is what lands
        else:
            assert results[1].duplicates == 1    # decided after the original committed

    run(main())
    assert sorted(o.dedup_id for o in sink.written) == (
        ["a", "b"] if first_fails else ["a", "b", "x"])


@pytest.mark.parametrize("named", [True, False], ids=["index-named", "index-unknown"])
def test_a_refused_record_fails_only_its_own_request(named: bool) -> None:
    """Kafka refusing one record (RecordRejected) fails that request alone; the others of
    the batch are committed without it, also when Kafka does not say which record."""
    from sidecar.exactly_once.producer import RecordRejected

    class Refusing(FakeSink):
        def commit(self, outputs, slot=0):  # type: ignore[no-untyped-def]
            for i, o in enumerate(outputs):
                if o.dedup_id == "poison-0":
                    self.batches.append(list(outputs))
                    raise RecordRejected(i if named else None, "MSG_SIZE_TOO_LARGE")
            return super().commit(outputs, slot)

    sink = Refusing()

    async def main() -> None:
        c = GroupCommitter(sink, CommitSettings(max_wait_ms=50), Metrics())
        c.start()
        results = await asyncio.gather(
            *(c.submit([out(f"{r}-{j}") for j in range(3)]) for r in range(4)),
            c.submit([out("poison-0")]),
            *(c.submit([out(f"late-{r}")]) for r in range(2)), return_exceptions=True)
        await c.close()
        assert [type(r).__name__ for r in results] == (["Committed"] * 4 + ["SinkUnavailable"]
                                                       + ["Committed"] * 2)
        assert c.healthy   # Kafka is fine; one request was not

    run(main())
    assert sorted(o.dedup_id for o in sink.written) == sorted(
        [f"{r}-{j}" for r in range(4) for j in range(3)] + ["late-0", "late-1"])
