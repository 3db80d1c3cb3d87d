"""Enrich's offsets and records under faults and rebalances: exactly once, by property.

Against fake clients with faults injected at any transaction and rebalances at any
``consume()``:

- each committed transaction carries exactly the offsets of the records it wrote (per
  partition, from the last committed offset up to the offset it commits, none missing,
  none extra), and transactions commit one at a time, in order;
- the batches after one whose commit failed are never written from that read: the records
  from the failed one on are read again, so every record lands exactly once;
- no ``consume()`` (where a rebalance runs) while a transaction is in flight, so a
  rebalance at any ``consume()`` (positions back to the committed offsets) loses nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.common.errors import FatalKafkaError, TransactionAborted
from sidecar.snowplow.enrich.runner import EnrichRunner, build_enricher
from sidecar.snowplow.raw import RawPayload
from sidecar.snowplow.settings import settings_from_dict

from .test_enrich import Msg, _raw

TOPIC = "conveyor.raw.snowplow"


def _settings(max_batch_records: int, max_batch_events: int) -> Any:
    return settings_from_dict({"topics": {"default": "events", "bad": "bad"},
                               "dedup": {"ledger_topic": ""},
                               "kafka": {"create_topics": False},
                               "enrich": {"instance_id": "t",
                                          "max_batch_records": max_batch_records,
                                          "max_batch_events": max_batch_events}})


ENRICHER = build_enricher(_settings(500, 5000))


def _eid(partition: int, offset: int) -> str:
    return f"8f7c6a1e-0b7d-4c59-{partition:04d}-{offset:012d}"


def _pixel(partition: int, offset: int) -> RawPayload:
    return _raw(method="GET", path="/i", body=b"",
                query=f"e=pv&tv=py&p=web&eid={_eid(partition, offset)}")


@dataclass
class Log:
    """The raw topic and the group's committed offsets, as the fakes share them."""

    records: dict[int, list[Msg]]
    committed: dict[int, int] = field(default_factory=dict)
    in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    transactions: list[tuple[set[str], dict[int, int]]] = field(default_factory=list)


class PartitionedConsumer:
    """Hands out records per partition from its position; ``rebalances`` says at which
    ``consume()`` calls a rebalance happens (positions back to the committed offsets)."""

    def __init__(self, log: Log, rebalances: set[int]) -> None:
        self.log = log
        self.rebalances = rebalances
        self.calls = 0
        self.position = {p: 0 for p in log.records}

    def subscribe(self, topics: list[str]) -> None: ...

    def consumer_group_metadata(self) -> str:
        return "generation-1"

    def consume(self, n: int, timeout: float) -> list[Msg]:
        assert self.log.in_flight == 0, "consume() (a rebalance) with a transaction open"
        self.calls += 1
        if self.calls in self.rebalances:
            self.reset()
        out: list[Msg] = []
        progressed = True
        while len(out) < n and progressed:   # interleave the partitions, each in order
            progressed = False
            for p, recs in self.log.records.items():
                if self.position[p] < len(recs) and len(out) < n:
                    out.append(recs[self.position[p]])
                    self.position[p] += 1
                    progressed = True
        return out

    def reset(self) -> None:
        self.position = {p: self.log.committed.get(p, 0) for p in self.log.records}

    def seek(self, tp: Any) -> None:
        self.position[tp.partition] = tp.offset

    def close(self) -> None: ...


class CheckingProducer:
    """Commits into ``log``, failing the transactions listed in ``faults`` by number."""

    def __init__(self, log: Log, faults: dict[int, type[Exception]]) -> None:
        self.log = log
        self.faults = dict(faults)
        self.attempts = 0

    def init(self) -> None: ...

    def close(self, timeout: float = 0) -> None: ...

    def commit(self, records: list[Any], *, offsets: Any = None,
               group_metadata: Any = None) -> None:
        with self.log.lock:
            assert self.log.in_flight == 0, "two transactions at once"
            self.log.in_flight += 1
        try:
            self.attempts += 1
            fault = self.faults.pop(self.attempts, None)
            if fault is not None:
                raise fault("injected")
            ids = {r.key.decode() for r in records if r.topic == "events"}
            new = {tp.partition: tp.offset for tp in offsets or []}
            self.log.transactions.append((ids, new))
            for p, o in new.items():
                self.log.committed[p] = o
        finally:
            with self.log.lock:
                self.log.in_flight -= 1


def _runner(log: Log, producer: CheckingProducer, consumer: PartitionedConsumer,
            limits: tuple[int, int]) -> EnrichRunner:
    runner = EnrichRunner(_settings(*limits), consumer_factory=lambda conf: consumer,
                          producer_factory=lambda conf, tid: producer, ledger_factory=None)
    runner.enricher = ENRICHER
    runner._start()
    return runner


def _drain(runner: EnrichRunner, consumer: PartitionedConsumer, limit: int) -> None:
    """The loop, as ``_loop`` runs it; a fatal error rebuilds the member, which reads on
    from the committed offsets."""
    for _ in range(limit):
        msgs = consumer.consume(runner.settings.enrich.max_batch_records, 0)
        if not msgs:
            return
        try:
            runner.process(msgs)
        except FatalKafkaError:
            consumer.reset()
    raise AssertionError("not drained")


def _check(log: Log) -> None:
    """Each transaction wrote exactly the records its offsets move past, and every record
    was written exactly once."""
    position = {p: 0 for p in log.records}
    written: list[str] = []
    for ids, offsets in log.transactions:
        expected = {_eid(p, o) for p, end in offsets.items() for o in range(position[p], end)}
        assert ids == expected, "a transaction's offsets do not match its records"
        assert all(end > position[p] for p, end in offsets.items())
        position.update(offsets)
        written.extend(ids)
    assert position == {p: len(r) for p, r in log.records.items()}
    everything = {_eid(p, o) for p, r in log.records.items() for o in range(len(r))}
    assert sorted(written) == sorted(everything), "a record lost or written twice"


def _log(sizes: list[int]) -> Log:
    return Log({p: [Msg(p, o, _pixel(p, o)) for o in range(n)] for p, n in enumerate(sizes)})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(0, 30), min_size=1, max_size=3),
       limits=st.tuples(st.integers(1, 20), st.integers(1, 9)),
       faults=st.dictionaries(st.integers(1, 40),
                              st.sampled_from([TransactionAborted, FatalKafkaError]),
                              max_size=8),
       rebalances=st.sets(st.integers(1, 40), max_size=5))
def test_any_faults_and_rebalances_commit_each_record_once_with_its_offsets(
        sizes: list[int], limits: tuple[int, int],
        faults: dict[int, type[Exception]], rebalances: set[int]) -> None:
    log = _log(sizes)
    consumer = PartitionedConsumer(log, rebalances)
    producer = CheckingProducer(log, faults)
    runner = _runner(log, producer, consumer, limits)
    try:
        _drain(runner, consumer, 500)
    finally:
        runner.close()
    _check(log)


def test_the_batches_after_a_failed_commit_are_read_again() -> None:
    log = _log([12])
    consumer = PartitionedConsumer(log, set())
    producer = CheckingProducer(log, {2: TransactionAborted})
    runner = _runner(log, producer, consumer, (12, 4))
    try:
        assert not runner.process(consumer.consume(12, 0))
        # the first batch committed; the second failed; the third was not written: the
        # consumer reads on from the second batch's first record
        assert [sorted(t[1].items()) for t in log.transactions] == [[(0, 4)]]
        assert consumer.position == {0: 4}
        assert runner.process(consumer.consume(12, 0))
    finally:
        runner.close()
    _check(log)
