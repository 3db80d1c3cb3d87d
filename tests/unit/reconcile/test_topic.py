"""Reading a topic's window, against an in-memory stand-in for the consumer: which offsets
are read (from the stamps), where each partition stops, and a window retention has
deleted refused."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from reconcile.records import RecordSpec
from reconcile.topic import NotRetained, TopicReader, TopicSide

T0 = datetime(2026, 11, 30, 10, tzinfo=UTC)
MS = int(T0.timestamp() * 1000)


@dataclass
class Msg:
    p: int
    off: int
    val: bytes | None
    ts: int
    err: Any = None

    def error(self) -> Any:
        return self.err

    def partition(self) -> int:
        return self.p

    def offset(self) -> int:
        return self.off

    def value(self) -> bytes | None:
        return self.val

    def timestamp(self) -> tuple[int, int]:
        return (1, self.ts)


class Eof:
    def __init__(self, p: int) -> None:
        self.p = p

    def error(self) -> Any:
        return SimpleNamespace(code=lambda: KafkaError._PARTITION_EOF)

    def partition(self) -> int:
        return self.p


class FakeConsumer:
    """Partitions as lists of (stamp ms, value); ``low`` offsets deleted by retention."""

    def __init__(self, parts: dict[int, list[tuple[int, bytes | None]]],
                 low: dict[int, int] | None = None) -> None:
        self.parts, self.low = parts, low or {}
        self.queue: list[Any] = []
        self.assigned: list[TopicPartition] = []

    def list_topics(self, topic: str, timeout: float) -> Any:
        meta = SimpleNamespace(error=None, partitions={p: None for p in self.parts})
        return SimpleNamespace(topics={"t": meta})

    def offsets_for_times(self, asked: list[TopicPartition], timeout: float) -> list[Any]:
        out = []
        for tp in asked:
            recs = self.parts[tp.partition]
            lo = self.low.get(tp.partition, 0)
            hit = next((i for i in range(lo, len(recs)) if recs[i][0] >= tp.offset), -1)
            out.append(TopicPartition(tp.topic, tp.partition, hit))
        return out

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return self.low.get(tp.partition, 0), len(self.parts[tp.partition])

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = tps
        self.queue = []
        for tp in tps:
            recs = self.parts[tp.partition]
            self.queue += [Msg(tp.partition, i, recs[i][1], recs[i][0])
                           for i in range(tp.offset, len(recs))]
            self.queue.append(Eof(tp.partition))

    def poll(self, timeout: float) -> Any:
        return self.queue.pop(0) if self.queue else None

    def consume(self, n: int, timeout: float) -> list[Any]:
        out, self.queue = self.queue[:n], self.queue[n:]
        return out

    def unassign(self) -> None:
        self.queue = []

    def close(self) -> None: ...


def rec(eid: str, at: datetime, stamp_delay_s: float = 1) -> tuple[int, bytes]:
    doc = {"event_id": eid, "accepted_at": at.isoformat(), "payload": {}}
    return int((at.timestamp() + stamp_delay_s) * 1000), json.dumps(doc).encode()


def reader(consumer: FakeConsumer, **spec: Any) -> TopicReader:
    side = TopicSide("t", "unused:9092", None, RecordSpec(**spec), timedelta(minutes=30))
    return TopicReader(side, consumer=consumer)


def test_the_window_is_read_from_its_stamps_and_kept_by_event_time() -> None:
    h = timedelta(hours=1)
    consumer = FakeConsumer({
        0: [rec("before", T0 - h), rec("a", T0), rec("b", T0 + h),
            rec("late-but-allowed", T0 + 2 * h - timedelta(minutes=1), stamp_delay_s=1200),
            rec("past-lateness", T0 + h, stamp_delay_s=7200), rec("after", T0 + 5 * h)],
        1: [rec("c", T0 + timedelta(minutes=30)), (MS + 1000, b"not json")],
        2: [],
    })
    r = reader(consumer)
    sums = r.summaries(T0, T0 + 2 * h, h, timedelta(minutes=15))
    assert sorted(s.rows for s in sums.values()) == [2, 2]   # a, c | b, late-but-allowed
    assert sum(s.late for s in sums.values()) == 1
    ids = {d.event_id for lo in (T0, T0 + h) for d in r.rows(lo, lo + h)}
    assert ids == {"a", "b", "c", "late-but-allowed"}
    # Read: offsets 1..3 of partition 0 (4 is stamped past the lateness), all of 1.
    assert r.stats.records == 5 and r.stats.unreadable == 1 and r.stats.outside == 0
    assert r.stats.partitions[0] == {"partition": 0, "from": 1, "to": 4}


def test_a_window_retention_has_deleted_is_refused() -> None:
    consumer = FakeConsumer({0: [rec("a", T0), rec("b", T0 + timedelta(minutes=1))]},
                            low={0: 1})
    with pytest.raises(NotRetained):
        reader(consumer).summaries(T0 - timedelta(minutes=5), T0 + timedelta(hours=1),
                                   timedelta(hours=1), timedelta(minutes=15))


def test_canaries_are_excluded_and_counted() -> None:
    consumer = FakeConsumer({0: [rec("canary-1", T0), rec("e1", T0)]})
    r = reader(consumer, exclude_id_prefix="canary-")
    sums = r.summaries(T0, T0 + timedelta(hours=1), timedelta(hours=1), timedelta(minutes=15))
    assert [s.rows for s in sums.values()] == [1] and r.stats.excluded == 1
