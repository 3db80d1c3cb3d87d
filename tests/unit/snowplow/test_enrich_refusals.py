"""A refusal Kafka does not pin on one record must not stall enrich.

The broker refuses a whole record batch (records together over the topic's
max.message.bytes): the producer says ``RecordRejected(index=None)``. Enrich splits the
chunk until the raw record at fault is alone, then that record's outputs until the output
at fault is alone: only that one becomes a ``size/rejected_by_kafka`` bad row, every other
output is committed once, and every record's offset once, after its outputs.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.common.errors import TransactionAborted
from sidecar.exactly_once.producer import RecordRejected
from sidecar.snowplow.enrich.runner import EnrichRunner, build_enricher
from sidecar.snowplow.raw import RawPayload
from sidecar.snowplow.settings import settings_from_dict

from .test_enrich import TP2, FakeConsumer, Msg, _raw

PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


class RefusingProducer:
    """Refuses, naming no record, every transaction ``refuse`` finds fault with."""

    def __init__(self, refuse: Callable[[list[Any]], bool]) -> None:
        self.refuse = refuse
        self.committed: list[tuple[list[Any], list[tuple[int, int]]]] = []
        self.attempts = 0
        self.fail: list[Exception] = []

    def init(self) -> None: ...

    def close(self, timeout: float = 0) -> None: ...

    def commit(self, records: list[Any], *, offsets: Any = None,
               group_metadata: Any = None) -> None:
        self.attempts += 1
        if self.fail:
            raise self.fail.pop(0)
        if self.refuse(list(records)):
            raise RecordRejected(None, "delivery: MSG_SIZE_TOO_LARGE (2 records refused)")
        self.committed.append((list(records), [(tp.partition, tp.offset)
                                               for tp in offsets or []]))


def _settings(max_batch_events: int = 50) -> Any:
    return settings_from_dict({"topics": {"default": "events", "bad": "bad"},
                               "dedup": {"ledger_topic": ""},
                               "kafka": {"create_topics": False},
                               "enrich": {"instance_id": "t",
                                          "max_batch_events": max_batch_events,
                                          "stalled_after_s": 30}})


ENRICHER = build_enricher(_settings())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _runner(producer: RefusingProducer, max_batch_events: int = 50
            ) -> tuple[EnrichRunner, FakeConsumer, Clock]:
    consumer, clock = FakeConsumer(), Clock()
    runner = EnrichRunner(_settings(max_batch_events), consumer_factory=lambda conf: consumer,
                          producer_factory=lambda conf, tid: producer, ledger_factory=None,
                          clock=clock)
    runner.enricher = ENRICHER   # its schemas compiled once for all the examples
    runner._start()
    return runner, consumer, clock


def _post(events: list[dict[str, str]]) -> RawPayload:
    return _raw(json.dumps({"schema": PAYLOAD_DATA, "data": events}).encode(), path=TP2)


def _event(eid: str | None) -> dict[str, str]:
    if eid is None:   # no tv, no p, no eid: a bad row that has no event id to dedup by
        return {"e": "pv", "url": "https://shop.example/"}
    return {"e": "pv", "tv": "py", "p": "web", "eid": eid}


def _good_keys(records: list[Any]) -> list[bytes]:
    return [r.key for r in records if r.topic == "events"]


def _refuses_good(culprits: set[bytes]) -> Callable[[list[Any]], bool]:
    return lambda records: any(k in culprits for k in _good_keys(records))


def _committed_rows(producer: RefusingProducer) -> list[dict[str, Any]]:
    return [json.loads(r.value)["data"] for records, _ in producer.committed
            for r in records if r.topic == "bad"]


def test_the_output_at_fault_alone_becomes_a_bad_row_and_nothing_stalls() -> None:
    eids = [[str(uuid.uuid4()) for _ in range(4)] for _ in range(3)]
    culprit = eids[1][2].encode()
    producer = RefusingProducer(_refuses_good({culprit}))
    runner, consumer, _ = _runner(producer)
    msgs = [Msg(0, 10 + r, _post([_event(e) for e in eids[r]])) for r in range(3)]
    assert runner.process(msgs)
    good = Counter(k for records, _ in producer.committed for k in _good_keys(records))
    assert good == Counter(e.encode() for row in eids for e in row if e.encode() != culprit)
    rows = _committed_rows(producer)
    assert [(r["check"], r["reason"], r["event_id"]) for r in rows] == [
        ("size", "rejected_by_kafka", eids[1][2])]
    assert "MSG_SIZE_TOO_LARGE" in rows[0]["message"]
    offsets = [o for _, offs in producer.committed for o in offs]
    assert offsets[-1] == (0, 13) and sorted(offsets) == offsets
    assert consumer.seeks == [] and runner.readiness()["progressing"]
    assert producer.attempts <= 12   # halving, not one transaction per output
    assert runner.metrics.rejected.labels("good")._value.get() == 1


def test_records_refused_only_together_all_land_without_a_bad_row() -> None:
    # No record is at fault: three of them are over the limit together, never alone.
    producer = RefusingProducer(lambda records: len(_good_keys(records)) > 2)
    runner, _, _ = _runner(producer)
    eids = [str(uuid.uuid4()) for _ in range(6)]
    msgs = [Msg(0, i, _post([_event(e)])) for i, e in enumerate(eids)]
    assert runner.process(msgs)
    good = [k for records, _ in producer.committed for k in _good_keys(records)]
    assert sorted(good) == sorted(e.encode() for e in eids)
    assert _committed_rows(producer) == []
    assert producer.committed[-1][1] == [(0, 6)]


def test_a_bad_row_refused_too_stops_the_partition_and_health_turns_red() -> None:
    eids = [str(uuid.uuid4()) for _ in range(3)]
    producer = RefusingProducer(lambda records: any(
        r.key == eids[1].encode() for r in records))   # the good event and its bad row
    runner, consumer, clock = _runner(producer)
    msgs = [Msg(0, 5 + i, _post([_event(e)])) for i, e in enumerate(eids)]
    assert not runner.process(msgs)
    # What came before the record at fault is committed; it is read again, from itself.
    assert [k for records, _ in producer.committed for k in _good_keys(records)] == [
        eids[0].encode()]
    assert consumer.seeks == [(0, 6)]
    assert runner.readiness()["progressing"]
    clock.now += 31
    assert runner.readiness() == {"kafka": True, "progressing": False}


def test_an_abort_while_isolating_rewinds_to_the_record_and_the_retry_skips_what_landed(
        ) -> None:
    eids = [str(uuid.uuid4()) for _ in range(4)]
    culprit = eids[3].encode()
    producer = RefusingProducer(_refuses_good({culprit}))
    runner, consumer, _ = _runner(producer)
    msgs = [Msg(2, 40, _post([_event(e) for e in eids]))]
    # whole record refused, then its first half commits, then Kafka aborts the next part
    calls = {"n": 0}
    refuse = producer.refuse

    def flaky(records: list[Any]) -> bool:
        calls["n"] += 1
        if calls["n"] == 3:
            raise TransactionAborted("injected")
        return refuse(records)

    producer.refuse = flaky
    assert not runner.process(msgs)
    assert consumer.seeks == [(2, 40)]
    assert runner.process(msgs)   # read again
    good = Counter(k for records, _ in producer.committed for k in _good_keys(records))
    assert good == Counter(e.encode() for e in eids[:3])   # each once: the window skips
    assert [r["event_id"] for r in _committed_rows(producer)] == [eids[3]]
    assert [o for _, offs in producer.committed for o in offs] == [(2, 41)]


# -- any chunk, any culprits ----------------------------------------------------------------

@st.composite
def chunks(draw: st.DrawFn) -> tuple[list[Msg], set[bytes], list[list[str | None]]]:
    n_records = draw(st.integers(1, 7))
    offsets = {0: 100, 1: 200, 2: 300}
    msgs: list[Msg] = []
    events: list[list[str | None]] = []
    for _ in range(n_records):
        row: list[str | None] = [str(uuid.UUID(int=draw(st.integers(0, 2**64))))
                                 if draw(st.integers(0, 5)) else None
                                 for _ in range(draw(st.integers(1, 5)))]
        partition = draw(st.integers(0, 2))
        msgs.append(Msg(partition, offsets[partition], _post([_event(e) for e in row])))
        offsets[partition] += 1
        events.append(row)
    ids = sorted({e for row in events for e in row if e is not None})
    culprits = set(draw(st.lists(st.sampled_from(ids), max_size=3))) if ids else set()
    return msgs, {c.encode() for c in culprits}, events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=chunks(), max_batch_events=st.sampled_from([3, 8, 50]))
def test_any_chunk_and_any_culprits_commit_everything_else_once(
        case: tuple[list[Msg], set[bytes], list[list[str | None]]],
        max_batch_events: int) -> None:
    msgs, culprits, events = case
    producer = RefusingProducer(_refuses_good(culprits))
    runner, consumer, _ = _runner(producer, max_batch_events)
    assert runner.process(msgs), "no stall"
    assert consumer.seeks == []

    committed = [r for records, _ in producer.committed for r in records]
    wanted = Counter(e.encode() for row in events for e in dict.fromkeys(row)
                     if e is not None and e.encode() not in culprits)
    # An event id twice in the chunk is one event (dedup): once is what lands.
    assert Counter(_good_keys(committed)) == Counter(dict.fromkeys(wanted, 1))
    rows = _committed_rows(producer)
    refused = Counter(r["event_id"] for r in rows if r["reason"] == "rejected_by_kafka")
    assert refused == Counter({c.decode(): 1 for c in culprits})
    anonymous = sum(e is None for row in events for e in row)
    assert sum(r["event_id"] is None for r in rows) == anonymous   # each once, not lost

    # Offsets: each partition's committed offsets only grow, end after its last record,
    # and a record's offset is committed no earlier than its last output.
    last_txn: dict[bytes, int] = {}
    for t, (records, _) in enumerate(producer.committed):
        for r in records:
            last_txn[r.key] = t
    by_partition: dict[int, list[int]] = {}
    for t, (_, offs) in enumerate(producer.committed):
        for p, o in offs:
            by_partition.setdefault(p, []).append(o)
            for m, row in zip(msgs, events, strict=True):
                if m.partition() == p and m.offset() < o:
                    for e in row:
                        if e is not None:
                            assert last_txn[e.encode()] <= t
    for p, seen in by_partition.items():
        assert seen == sorted(set(seen)), seen
        assert seen[-1] == max(m.offset() for m in msgs if m.partition() == p) + 1
    assert set(by_partition) == {m.partition() for m in msgs}
