"""The shell's ack discipline with fake RabbitMQ and Kafka sides (no broker, no process):
ack only after commit, nack everything un-acked on abort, nothing at all on fatal."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from rmq_helpers import delivery, make_settings

from sidecar.common.errors import FatalKafkaError, TransactionAborted
from sidecar.exactly_once.ledger import RecentIds
from sidecar.exactly_once.producer import OutRecord
from sidecar.rabbitmq.bridge import QueuePipeline
from sidecar.rabbitmq.metrics import Metrics
from sidecar.rabbitmq.settings import Secrets

ROBOT = json.dumps({"robot_id": "r", "ts": "2026-01-01T00:00:00Z", "battery_pct": 1})


class FakeAmqp:
    is_open = True

    def __init__(self) -> None:
        self.acks: list[int] = []
        self.nacks: list[int] = []

    def ack_upto(self, tag: int) -> None:
        self.acks.append(tag)

    def nack_upto(self, tag: int) -> None:
        self.nacks.append(tag)

    def wake_from_thread(self) -> None:
        pass


class FakeProducer:
    def __init__(self, fail: type[Exception] | None = None) -> None:
        self.fail = fail
        self.committed: list[list[OutRecord]] = []

    def commit(self, records: Sequence[OutRecord], guard: Any = None) -> None:
        if self.fail is not None:
            raise self.fail("boom")
        self.committed.append(list(records))


class FakeLedger:
    def __init__(self, seen: set[str] | None = None) -> None:
        self.window = RecentIds(1000)
        self._seen = seen or set()
        self.synced: list[bool] = []

    def seen(self, ids: Sequence[str], *, sync: bool, timeout: float) -> set[str]:
        self.synced.append(sync)
        return {i for i in ids if i in self._seen or i in self.window}

    def record(self, ids: Sequence[str]) -> list[OutRecord]:
        return [OutRecord("ledger", b"1", i.encode()) for i in ids]

    def remember(self, ids: Sequence[str]) -> None:
        for i in ids:
            self.window.add(i, 0)


def pipeline(producer: FakeProducer, fake_ledger: FakeLedger | None = None,
             **settings: Any) -> tuple[QueuePipeline, FakeAmqp]:
    s = make_settings(**settings)
    p = QueuePipeline(s, Secrets(), "q", Metrics(), threading.Event())
    amqp = FakeAmqp()
    p._amqp = amqp  # type: ignore[assignment]
    p._producer = producer  # type: ignore[assignment]
    p._ledger = fake_ledger or FakeLedger()  # type: ignore[assignment]
    return p, amqp


def run_batch(p: QueuePipeline) -> None:
    p._submit()
    assert p._inflight is not None
    p._inflight.future.exception(10)  # waits for the batch, whatever its outcome
    p._settle()


def test_ack_multiple_after_commit_only() -> None:
    producer = FakeProducer()
    p, amqp = pipeline(producer)
    for tag in (1, 2, 3):
        p._on_delivery(delivery(ROBOT, tag=tag, message_id=f"m{tag}"))
    p._submit()
    p._on_delivery(delivery(ROBOT, tag=4, message_id="m4"))  # arrives while committing
    assert p._inflight is not None
    p._inflight.future.result(10)
    p._settle()
    assert amqp.acks == [3] and amqp.nacks == []  # not 4: it is in the next batch
    routed = [r for r in producer.committed[0] if r.topic != "ledger"]
    assert len(routed) == 3
    assert [r.key for r in producer.committed[0] if r.topic == "ledger"] == [b"m1", b"m2", b"m3"]
    run_batch(p)
    assert amqp.acks == [3, 4]


def test_abort_nacks_everything_unacked_in_order_and_drops_the_next_batch() -> None:
    p, amqp = pipeline(FakeProducer(fail=TransactionAborted))
    p._abort_backoff.initial = p._abort_backoff.current = 0.0
    for tag in (1, 2):
        p._on_delivery(delivery(ROBOT, tag=tag, message_id=f"m{tag}"))
    p._submit()
    p._on_delivery(delivery(ROBOT, tag=3, message_id="m3"))
    assert p._inflight is not None
    p._inflight.future.exception(10)
    p._settle()
    assert amqp.acks == [] and amqp.nacks == [3]
    assert len(p._batch) == 0


def test_fatal_raises_without_any_ack_or_nack() -> None:
    p, amqp = pipeline(FakeProducer(fail=FatalKafkaError))
    p._on_delivery(delivery(ROBOT, tag=1))
    p._submit()
    assert p._inflight is not None
    p._inflight.future.exception(10)
    with pytest.raises(FatalKafkaError):
        p._settle()
    assert amqp.acks == [] and amqp.nacks == []


def test_redelivered_duplicates_are_acked_not_produced() -> None:
    producer = FakeProducer()
    ledger = FakeLedger(seen={"m1", "m2"})
    p, amqp = pipeline(producer, ledger, ledger={"sync": "redelivered"})
    p._on_delivery(delivery(ROBOT, tag=1, message_id="m1", redelivered=True))
    p._on_delivery(delivery(ROBOT, tag=2, message_id="m2", redelivered=True))
    run_batch(p)
    assert amqp.acks == [2]
    assert producer.committed == []  # nothing new: no transaction at all
    assert ledger.synced == [True]


def test_sync_mode_redelivered_skips_the_read_to_end_for_fresh_batches() -> None:
    ledger = FakeLedger()
    p, _ = pipeline(FakeProducer(), ledger, ledger={"sync": "redelivered"})
    p._on_delivery(delivery(ROBOT, tag=1, message_id="a"))
    run_batch(p)
    p._on_delivery(delivery(ROBOT, tag=2, message_id="b", redelivered=True))
    run_batch(p)
    assert ledger.synced == [False, True]
