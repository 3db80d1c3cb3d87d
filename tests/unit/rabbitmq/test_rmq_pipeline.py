"""The shell's ack discipline with fake RabbitMQ and Kafka sides (no broker, no process):
ack only after commit, hold and retry on abort (never nack), dead-letter what Kafka
refuses, drop the producer with the channel on fatal, and own before deciding."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from rmq_helpers import delivery, make_settings

from sidecar.common.errors import FatalKafkaError, TransactionAborted
from sidecar.exactly_once.ledger import RecentIds
from sidecar.exactly_once.producer import OutRecord, RecordRejected
from sidecar.rabbitmq.amqp import AmqpLost
from sidecar.rabbitmq.bridge import QueuePipeline
from sidecar.rabbitmq.metrics import Metrics
from sidecar.rabbitmq.settings import Secrets

ROBOT = json.dumps({"robot_id": "r", "ts": "2026-01-01T00:00:00Z", "battery_pct": 1})


class FakeAmqp:
    is_open = True
    consuming = True

    def __init__(self) -> None:
        self.acks: list[int] = []
        self.nacks: list[int] = []

    def ack_upto(self, tag: int) -> None:
        self.acks.append(tag)

    def nack_upto(self, tag: int) -> None:
        self.nacks.append(tag)

    def wake_from_thread(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeProducer:
    """``script`` holds what successive commits raise (None: commit)."""

    def __init__(self, script: Sequence[BaseException | None] = ()) -> None:
        self.script = list(script)
        self.committed: list[list[OutRecord]] = []
        self.inits = 0
        self.closed = False
        self.transactional_id = "tid"

    def init(self) -> bool:
        """Like the real one: True only for the call that initialised."""
        if self.inits:
            return False
        self.inits += 1
        return True

    def commit(self, records: Sequence[OutRecord], guard: Any = None) -> None:
        if self.script:
            exc = self.script.pop(0)
            if exc is not None:
                raise exc
        self.committed.append(list(records))

    def close(self, timeout: float = 0) -> None:
        self.closed = True


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


class Rig:
    def __init__(self, *producers: FakeProducer, fake_ledger: FakeLedger | None = None,
                 **settings: Any) -> None:
        self.amqp = FakeAmqp()
        self.ledger = fake_ledger or FakeLedger()
        self.producers = list(producers) or [FakeProducer()]
        self.made: list[FakeProducer] = []

        def factory() -> Any:
            self.made.append(self.producers.pop(0))
            return self.made[-1]

        self.p = QueuePipeline(make_settings(**settings), Secrets(), "q", Metrics(),
                               threading.Event(), amqp=self.amqp,  # type: ignore[arg-type]
                               ledger=self.ledger,  # type: ignore[arg-type]
                               producer_factory=factory)
        self.p.settlement.backoff.initial = self.p.settlement.backoff.cap = 0.0

    def deliver(self, *tags: int, redelivered: bool = False) -> None:
        for t in tags:
            self.p._on_delivery(delivery(ROBOT, tag=t, message_id=f"m{t}",
                                         redelivered=redelivered))

    def batch(self) -> None:
        """Close the pending deliveries into a batch, commit it and settle the outcome."""
        p = self.p
        if not p.settlement.chunks:
            p.settlement.hold(p._batch.take())
        chunk = p.settlement.ready(float("inf"))
        assert chunk is not None
        p._submit(chunk)
        assert p._inflight is not None
        p._inflight.future.exception(10)  # waits for the batch, whatever its outcome
        p._settle()


def routed(records: list[OutRecord]) -> list[OutRecord]:
    return [r for r in records if r.topic != "ledger"]


def test_ack_multiple_after_commit_only() -> None:
    rig = Rig()
    rig.deliver(1, 2, 3)
    rig.p.settlement.hold(rig.p._batch.take())
    rig.deliver(4)  # arrives while the first batch commits: not in it
    rig.batch()
    assert rig.amqp.acks == [3] and rig.amqp.nacks == []
    (first,) = rig.made[0].committed
    assert len(routed(first)) == 3
    assert [r.key for r in first if r.topic == "ledger"] == [b"m1", b"m2", b"m3"]
    rig.batch()
    assert rig.amqp.acks == [3, 4]


def test_abort_holds_the_batch_and_retries_it_without_any_nack() -> None:
    rig = Rig(FakeProducer([TransactionAborted("down"), TransactionAborted("down"), None]),
              ledger={"sync": "redelivered"})
    rig.deliver(1, 2)
    rig.batch()
    rig.deliver(3)
    rig.batch()
    assert rig.amqp.acks == [] and rig.amqp.nacks == []
    assert rig.p.settlement.consecutive_aborts == 2 and rig.p.progressing
    rig.batch()
    assert rig.amqp.acks == [2] and rig.amqp.nacks == []
    assert len(routed(rig.made[0].committed[0])) == 2
    # the first try read to the end as a new owner, each retry because it was a retry
    assert rig.ledger.synced == [True, True, True]
    rig.batch()
    assert rig.amqp.acks == [2, 3]
    assert rig.ledger.synced[-1] is False  # fresh, not redelivered, not a retry


def test_a_record_kafka_refuses_becomes_a_dead_letter_and_the_rest_lands() -> None:
    rig = Rig(FakeProducer([RecordRejected(1, "MSG_SIZE_TOO_LARGE"), None]))
    rig.deliver(1, 2, 3)
    rig.batch()
    assert rig.amqp.acks == []
    rig.batch()
    assert rig.amqp.acks == [3]
    records = routed(rig.made[0].committed[0])
    dlq = [r for r in records if r.topic.startswith("conveyor.dlq.")]
    assert len(records) == 3 and len(dlq) == 1
    assert dict(dlq[0].headers)["conveyor.dlq.reason"] == b"kafka_rejected"
    assert dict(dlq[0].headers)["conveyor.event_id"] == b"m2"


def test_fatal_drops_producer_and_channel_without_ack_or_nack() -> None:
    rig = Rig(FakeProducer([FatalKafkaError("fenced")]), FakeProducer())
    rig.deliver(1)
    with pytest.raises(AmqpLost):
        rig.batch()
    assert rig.amqp.acks == [] and rig.amqp.nacks == []
    rig.p._on_amqp_lost(AmqpLost("producer dropped"))
    assert rig.made[0].closed
    rig.deliver(1, redelivered=True)
    rig.batch()
    assert rig.amqp.acks == [1]
    assert [p.inits for p in rig.made] == [1, 1]  # a new producer fenced the old one


def test_redelivered_duplicates_are_acked_not_produced() -> None:
    rig = Rig(fake_ledger=FakeLedger(seen={"m1", "m2"}))
    rig.deliver(1, 2, redelivered=True)
    rig.batch()
    assert rig.amqp.acks == [2]
    assert rig.made[0].committed == []  # nothing new: no transaction at all
    assert rig.ledger.synced == [True]


def test_a_new_owner_reads_the_ledger_to_its_end_before_its_first_decision() -> None:
    rig = Rig(ledger={"sync": "redelivered"})
    rig.deliver(1)
    rig.batch()
    rig.deliver(2)
    rig.batch()
    rig.deliver(3, redelivered=True)
    rig.batch()
    assert rig.ledger.synced == [True, False, True]
    assert [p.inits for p in rig.made] == [1]


class _Open:
    is_open = True


def test_ready_only_once_consuming_not_when_the_channel_opens() -> None:
    """The channel opens before the topology is declared and the consumer registered;
    /health must not say "rabbitmq ok" in between (a publisher trusting it would have its
    first messages dropped as unroutable)."""
    from sidecar.rabbitmq.amqp import AmqpSession
    session = AmqpSession("amqp://unused", make_settings(), "q")
    assert not session.consuming
    session._conn, session._ch = _Open(), _Open()  # type: ignore[assignment]
    assert session.is_open and not session.consuming
    session._tag = "ctag-1"
    assert session.consuming
    session._cancelled = True
    assert not session.consuming
