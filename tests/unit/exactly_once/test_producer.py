"""librdkafka's transactional contract, branch by branch, with a fake Producer.

Each transactional call may raise a KafkaError that is retriable (call it again), requires
an abort, or is fatal; the table says what ``TransactionalProducer`` must do for each."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from sidecar.common.errors import FatalKafkaError, TransactionAborted
from sidecar.exactly_once.producer import (
    CommitUndecided,
    OutRecord,
    RecordRejected,
    Step,
    TransactionalProducer,
    decide,
)


def kerr(code: int = KafkaError._FAIL, *, retriable: bool = False, abort: bool = False,
         fatal: bool = False) -> KafkaException:
    return KafkaException(KafkaError(code, "injected", fatal=fatal, retriable=retriable,
                                     txn_requires_abort=abort))


RETRIABLE = dict(retriable=True)
ABORTABLE = dict(abort=True)
FATAL = dict(fatal=True)


class FakeProducer:
    """Scripted: ``fail[method]`` is a list of exceptions raised by successive calls."""

    def __init__(self, fail: dict[str, list[BaseException]] | None = None,
                 dr_errors: dict[int, KafkaError] | None = None) -> None:
        self.fail = {k: list(v) for k, v in (fail or {}).items()}
        self.calls: list[str] = []
        self.produced: list[tuple[str, bytes | None, bytes | None]] = []
        self.dr_errors = dr_errors or {}
        self.on_delivery: Callable[[Any, Any], None] | None = None

    def _step(self, name: str) -> None:
        self.calls.append(name)
        script = self.fail.get(name)
        if script:
            raise script.pop(0)

    def init_transactions(self, timeout: float) -> None:
        self._step("init")

    def begin_transaction(self) -> None:
        self._step("begin")

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                headers: Any = None) -> None:
        self._step("produce")
        self.produced.append((topic, key, value))

    def send_offsets_to_transaction(self, offsets: Any, meta: Any, timeout: float) -> None:
        self._step("send_offsets")

    def commit_transaction(self, timeout: float) -> None:
        # Delivery reports are served inside commit, as librdkafka's flush does.
        for i, err in self.dr_errors.items():
            topic, key, value = self.produced[i]
            assert self.on_delivery is not None
            self.on_delivery(err, _Msg(topic, key, value))
        if self.dr_errors:
            self.calls.append("commit")
            raise kerr(KafkaError._FAIL, abort=True)
        self._step("commit")

    def abort_transaction(self, timeout: float) -> None:
        self._step("abort")

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def purge(self) -> None:
        self.calls.append("purge")


class _Msg:
    def __init__(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self._t, self._k, self._v = topic, key, value

    def topic(self) -> str:
        return self._t

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def make(fake: FakeProducer, clock: Clock | None = None, timeout_ms: int = 60_000,
         replacements: list[FakeProducer] | None = None) -> TransactionalProducer:
    """``replacements``: the clients the producer gets, in order, when it replaces one."""
    clock = clock or Clock()
    spare = list(replacements or [])

    def factory(conf: dict[str, object]) -> FakeProducer:
        assert conf["transactional.id"] == "tid"
        new = spare.pop(0)
        new.on_delivery = p._on_delivery
        return new

    p = TransactionalProducer({"transaction.timeout.ms": timeout_ms}, "tid", producer=fake,
                              factory=factory, clock=clock, pause=clock.sleep)
    fake.on_delivery = p._on_delivery
    return p


RECORDS = [OutRecord("t", b"a", b"k1"), OutRecord("t", b"b", b"k2"), OutRecord("t", b"c")]


@pytest.mark.parametrize(("flags", "step"), [
    (dict(fatal=True), Step.FATAL),
    (dict(fatal=True, retriable=True), Step.FATAL),
    (dict(retriable=True), Step.RETRY),
    (dict(abort=True), Step.ABORT),
    (dict(), Step.FATAL),            # "treat any other error as fatal"
])
def test_decide_follows_the_contract(flags: dict[str, bool], step: Step) -> None:
    assert decide(kerr(**flags).args[0]) is step


# (method that fails, how, what commit() must raise, calls made after the failure)
TABLE = [
    ("commit", RETRIABLE, None, ["commit", "commit"]),
    ("commit", ABORTABLE, TransactionAborted, ["commit", "abort"]),
    ("commit", FATAL, FatalKafkaError, ["commit"]),
    ("commit", {}, FatalKafkaError, ["commit"]),
    ("send_offsets", RETRIABLE, None, ["send_offsets", "send_offsets", "commit"]),
    ("send_offsets", ABORTABLE, TransactionAborted, ["send_offsets", "abort"]),
    ("send_offsets", FATAL, FatalKafkaError, ["send_offsets"]),
    ("begin", FATAL, FatalKafkaError, ["begin"]),
    ("begin", {}, TransactionAborted, ["begin"]),
    ("produce", ABORTABLE, TransactionAborted, ["produce", "abort"]),
    ("produce", FATAL, FatalKafkaError, ["produce"]),
]


@pytest.mark.parametrize(("method", "flags", "raised", "after"), TABLE)
def test_each_branch(method: str, flags: dict[str, bool], raised: type[Exception] | None,
                     after: list[str]) -> None:
    fake = FakeProducer({method: [kerr(**flags)]})
    p = make(fake)
    offsets = [TopicPartition("raw", 0, 5)]
    if raised is None:
        p.commit(RECORDS, offsets=offsets, group_metadata=object())
    else:
        with pytest.raises(raised):
            p.commit(RECORDS, offsets=offsets, group_metadata=object())
    first = fake.calls.index(method)
    tail = [c for c in fake.calls[first:] if c != "produce" or method == "produce"]
    if method == "produce":
        tail = [tail[0], *[c for c in tail[1:] if c != "produce"]]
    assert tail == after
    if raised is None or raised is FatalKafkaError:
        assert "abort" not in fake.calls


def test_commit_retried_until_it_returns() -> None:
    fake = FakeProducer({"commit": [kerr(**RETRIABLE) for _ in range(50)]})
    make(fake).commit(RECORDS)
    assert fake.calls.count("commit") == 51
    assert "abort" not in fake.calls


def conflict() -> KafkaException:
    return kerr(KafkaError._CONFLICT, retriable=True)


def test_commit_still_retriable_at_the_transaction_timeout_is_undecided() -> None:
    """Kafka restarting: commit_transaction() stays retriable past the transaction timeout.
    The commit may have reached the coordinator, and librdkafka keeps the call in progress,
    answering any abort or begin with _CONFLICT (what a real run showed, stuck for good).
    So the outcome is reported unknown, and the client is replaced: the new one's
    init_transactions() fences the old and decides its transaction."""
    clock = Clock()
    old = FakeProducer({"commit": [kerr(KafkaError._TIMED_OUT, retriable=True)
                                   for _ in range(10_000)],
                        "abort": [conflict()]})
    new = FakeProducer()
    p = make(old, clock, timeout_ms=5_000, replacements=[new])
    with pytest.raises(CommitUndecided, match="still retriable"):
        p.commit(RECORDS)
    assert clock.now >= 5.0
    assert old.calls[-1] == "purge" and "abort" not in old.calls
    assert new.calls == ["init"], "the new client fences the old one at once"
    assert p.init() is False
    p.commit(RECORDS)
    assert new.calls[-1] == "commit" and old.calls[-1] == "purge"


def test_a_replacement_kafka_does_not_answer_yet_is_initialised_by_the_next_call() -> None:
    clock = Clock()
    old = FakeProducer({"commit": [kerr(retriable=True) for _ in range(10_000)]})
    new = FakeProducer({"init": [kerr(retriable=True) for _ in range(10_000)]})
    p = make(old, clock, timeout_ms=1_000, replacements=[new])
    with pytest.raises(CommitUndecided):
        p.commit(RECORDS)
    new.fail["init"] = []
    assert p.init() is True, "the caller learns that a fence happened just now"
    p.commit(RECORDS)
    assert new.calls[-1] == "commit"


def test_a_conflicting_call_in_progress_is_fenced_not_retried_forever() -> None:
    old = FakeProducer({"begin": [kerr(KafkaError._CONFLICT)]})
    new = FakeProducer()
    p = make(old, replacements=[new])
    with pytest.raises(CommitUndecided):
        p.commit(RECORDS)
    p.commit(RECORDS)
    assert old.calls == ["init", "begin", "purge"] and new.calls[-1] == "commit"


def test_an_abort_refused_as_conflicting_replaces_the_client() -> None:
    old = FakeProducer({"commit": [kerr(**ABORTABLE)], "abort": [conflict()]})
    new = FakeProducer()
    p = make(old, replacements=[new])
    with pytest.raises(TransactionAborted):
        p.commit(RECORDS)
    p.commit(RECORDS)
    assert old.calls[-1] == "purge" and new.calls[0] == "init" and new.calls[-1] == "commit"


def test_abort_is_retried_while_retriable() -> None:
    fake = FakeProducer({"commit": [kerr(**ABORTABLE)],
                         "abort": [kerr(**RETRIABLE), kerr(**RETRIABLE)]})
    with pytest.raises(TransactionAborted):
        make(fake).commit(RECORDS)
    assert fake.calls.count("abort") == 3


def test_abort_that_fails_fatally_is_fatal() -> None:
    fake = FakeProducer({"commit": [kerr(**ABORTABLE)], "abort": [kerr(**FATAL)]})
    with pytest.raises(FatalKafkaError):
        make(fake).commit(RECORDS)


def test_abort_without_open_transaction_is_harmless() -> None:
    fake = FakeProducer({"commit": [kerr(**ABORTABLE)],
                         "abort": [kerr(KafkaError._STATE)]})
    with pytest.raises(TransactionAborted):
        make(fake).commit(RECORDS)


def test_guard_false_aborts_before_commit() -> None:
    fake = FakeProducer()
    with pytest.raises(TransactionAborted, match="input was lost"):
        make(fake).commit(RECORDS, guard=lambda: False)
    assert "commit" not in fake.calls and fake.calls[-1] == "abort"


def test_init_retried_then_reported_as_not_now() -> None:
    clock = Clock()
    fake = FakeProducer({"init": [kerr(KafkaError._TIMED_OUT, retriable=True)
                                  for _ in range(100_000)]})
    p = make(fake, clock)
    with pytest.raises(TransactionAborted):
        p.init()
    fake.fail.clear()
    p.init()
    p.init()  # once initialised, never again: librdkafka refuses a second call
    assert fake.calls.count("init") > 2 and fake.calls[-1] == "init"


def test_init_fenced_is_fatal() -> None:
    fake = FakeProducer({"init": [kerr(KafkaError._FENCED, fatal=True)]})
    with pytest.raises(FatalKafkaError):
        make(fake).init()


def test_delivery_report_names_the_record_kafka_refused() -> None:
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large")
    fake = FakeProducer(dr_errors={1: too_large})
    with pytest.raises(RecordRejected) as info:
        make(fake).commit(RECORDS)
    assert info.value.index == 1 and "MSG_SIZE_TOO_LARGE" in info.value.reason
    assert fake.calls[-1] == "abort"


def test_produce_refusing_a_record_names_it() -> None:
    fake = FakeProducer({"produce": [kerr(KafkaError.MSG_SIZE_TOO_LARGE)]})
    with pytest.raises(RecordRejected) as info:
        make(fake).commit(RECORDS)
    assert info.value.index == 0
    assert fake.calls[-1] == "abort"


def test_a_failed_delivery_that_is_not_the_records_fault_is_a_plain_abort() -> None:
    timed_out = KafkaError(KafkaError._MSG_TIMED_OUT, "timed out")
    fake = FakeProducer(dr_errors={0: timed_out})
    with pytest.raises(TransactionAborted) as info:
        make(fake).commit(RECORDS)
    assert not isinstance(info.value, RecordRejected)


def test_an_abort_kafka_never_answered_is_finished_before_the_next_transaction() -> None:
    """A Kafka outage: the commit fails, the abort gets no answer within the transaction
    timeout. The producer is kept (a new one would cost a redelivery); the next commit
    aborts first and then goes through."""
    clock = Clock()
    fake = FakeProducer({"commit": [kerr(**ABORTABLE)],
                         "abort": [kerr(KafkaError._TIMED_OUT, retriable=True)
                                   for _ in range(200)]})
    p = make(fake, clock, timeout_ms=5_000)
    with pytest.raises(TransactionAborted):
        p.commit(RECORDS)
    fake.fail["abort"] = []
    p.commit(RECORDS)
    tail = fake.calls[-6:]
    assert tail[0] == "abort" and tail[1] == "begin" and tail[-1] == "commit"


def test_begin_refused_in_a_failed_state_aborts_then_goes_on() -> None:
    fake = FakeProducer({"begin": [kerr(KafkaError._STATE)]})
    p = make(fake)
    with pytest.raises(TransactionAborted):
        p.commit(RECORDS)
    p.commit(RECORDS)
    assert fake.calls[:3] == ["init", "begin", "abort"] and fake.calls[-1] == "commit"


def test_several_records_refused_together_name_none() -> None:
    """The broker refuses a whole record batch over the topic's limit: the innocent records
    in it fail with the same error, so no single one can be blamed."""
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large")
    fake = FakeProducer(dr_errors={0: too_large, 2: too_large})
    with pytest.raises(RecordRejected) as info:
        make(fake).commit(RECORDS)
    assert info.value.index is None and "2 records" in info.value.reason
