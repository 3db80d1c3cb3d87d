"""A transactional producer that follows librdkafka's transactional contract literally.

Callers hand over a batch of records and get back only when the batch is *committed*
(visible to read_committed consumers) or learn why not:

- ``RecordRejected`` (a ``TransactionAborted``): Kafka refused one record for good (too
  large, invalid); nothing of the batch is visible, ``index`` says which record, so the
  caller dead-letters that one input and commits the rest;
- ``TransactionAborted``: the transaction was aborted (abortable error, or the outcome
  could not be decided before the transaction timeout); nothing of it is visible, so the
  caller keeps its inputs and tries again;
- ``CommitUndecided`` (a ``TransactionAborted``): ``commit_transaction()`` was still
  retriable at the transaction timeout (Kafka restarting, say). Its outcome is unknown:
  the commit may have reached the coordinator. librdkafka keeps that call in progress and
  refuses an abort (``_CONFLICT``), so the producer replaces its client: the new one's
  ``init_transactions()`` fences the old and waits until the coordinator has finished or
  aborted the transaction. Only then is the outcome readable (a read_committed consumer or
  the ledger read to its end), and the caller must read it before retrying;
- a call that blocks far past the timeout it was given (librdkafka can, see ``watchdog``)
  ends the process: nothing else would, and its successor fences the stuck client;
- ``FatalKafkaError``: fenced by a newer owner of the ``transactional.id``, or a fatal
  librdkafka error. This producer is done: the caller builds a new one (whose
  ``init_transactions()`` fences this one and aborts what it left open) or stops.

The contract (confluent-kafka's docs for every transactional call): a ``retriable()``
error means *call the same method again*; ``txn_requires_abort()`` means abort, then begin
anew; anything else is fatal. ``abort_transaction()`` is itself retried while retriable.
The decision for each error is one pure function, ``decide``, that the unit tests drive
with fake ``KafkaError`` values.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from sidecar.common.errors import FatalKafkaError, TransactionAborted

from .watchdog import WATCHDOG, Watchdog

log = logging.getLogger(__name__)

# How long one call may block librdkafka before we look at the clock again.
TXN_CALL_TIMEOUT_S = 30.0
# A retriable error is retried until this much time has passed since the call started. For
# commit_transaction() the deadline is the transaction timeout: past it the coordinator has
# aborted the transaction itself, so the outcome is decided (aborted) and we say so.
INIT_DEADLINE_S = 60.0
RETRY_PAUSE_S = 0.1
QUEUE_FULL_WAIT_S = 0.5

# Errors that belong to one record, not to the connection or the transaction: the same
# record would be refused again however often the batch is retried.
RECORD_ERRORS = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_TIMESTAMP,
    KafkaError.TOPIC_EXCEPTION,        # invalid topic name
    KafkaError.POLICY_VIOLATION,
    KafkaError._INVALID_ARG,
    KafkaError._BAD_MSG,
    getattr(KafkaError, "_MSG_SIZE_TOO_LARGE", KafkaError.MSG_SIZE_TOO_LARGE),
})


class RecordRejected(TransactionAborted):
    """Kafka refused one record of the batch for good; the transaction was aborted."""

    def __init__(self, index: int | None, reason: str) -> None:
        where = "a record" if index is None else f"record {index}"
        super().__init__(f"Kafka refused {where}: {reason}")
        self.index = index
        self.reason = reason


class CommitUndecided(TransactionAborted):
    """The commit's outcome is unknown until the ledger (or the output) is read again; the
    producer has already replaced its client, which fenced the one that was committing."""


class Step(enum.Enum):
    RETRY = "retry"   # call the same method again
    ABORT = "abort"   # abort the transaction; the batch may be tried again
    FATAL = "fatal"   # this producer is done


def decide(err: KafkaError) -> Step:
    """librdkafka's contract, for an error raised by a transactional call."""
    if err.fatal():
        return Step.FATAL
    if err.retriable():
        return Step.RETRY
    if err.txn_requires_abort():
        return Step.ABORT
    return Step.FATAL


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce: the value is already serialised."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)


def kafka_error(exc: KafkaException) -> KafkaError:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return err
    return KafkaError(KafkaError._FAIL, str(exc))


def _describe(what: str, err: KafkaError) -> str:
    return f"{what}: {err.name()}: {err.str()}"


class TransactionalProducer:
    """Owns one confluent-kafka Producer with a fixed ``transactional.id``.

    The id names what is owned (a queue, a collector replica), never the host, so whoever
    takes the input over fences the previous owner: ``init_transactions()`` bumps the epoch
    and aborts, or waits for, whatever the old one left open. ``producer`` may be given for
    tests (any object with confluent-kafka's Producer methods).
    """

    def __init__(self, config: dict[str, object], transactional_id: str, *,
                 producer: Any = None,
                 factory: Callable[[dict[str, object]], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 pause: Callable[[float], None] = time.sleep,
                 watchdog: Watchdog = WATCHDOG) -> None:
        conf = {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "transaction.timeout.ms": 60_000,
            **config,
            "transactional.id": transactional_id,
            # Only failures reach the callback: the happy path costs no Python call.
            "delivery.report.only.error": True,
            "on_delivery": self._on_delivery,
        }
        self.transactional_id = transactional_id
        self._txn_timeout_s = float(conf["transaction.timeout.ms"]) / 1000  # type: ignore[arg-type]
        self._conf = conf
        # Builds a client for ``conf``: a replacement after an undecided call needs one.
        self._factory: Callable[[dict[str, object]], Any] = factory or Producer
        self._producer = producer if producer is not None else self._factory(conf)
        self._clock, self._pause = clock, pause
        # Ends the process when a call blocks far past its timeout (librdkafka can: see
        # watchdog.py), since nothing else would ever end it.
        self._watchdog = watchdog
        self.replacements = 0
        self._initialised = False
        self._abort_pending = False
        self._failed: list[tuple[str, bytes | None, bytes | None, KafkaError]] = []

    # -- the API ----------------------------------------------------------------------

    def init(self) -> bool:
        """init_transactions(), once: librdkafka refuses a second call on a ready producer,
        so callers may retry their own start-up (topics, ledger) around it freely. True
        when it ran now: a previous owner (or this producer's replaced client) was fenced
        just now, so what it committed last is only now decided: read it before deciding.
        Raises TransactionAborted when Kafka does not answer in time (try again later)."""
        if self._initialised:
            return False
        self._call("init_transactions", self._producer.init_transactions, INIT_DEADLINE_S)
        self._initialised = True
        return True

    def commit(self, records: Sequence[OutRecord], *,
               guard: Callable[[], bool] | None = None,
               offsets: list[TopicPartition] | None = None,
               group_metadata: object | None = None) -> None:
        """Produce ``records`` (and commit ``offsets`` for ``group_metadata``, the
        consume-transform-produce case) in one transaction; return once it is committed.

        ``guard`` is asked right before ``commit_transaction()``: when it answers False
        (the input connection was lost, so the inputs will be redelivered elsewhere) the
        transaction is aborted instead, narrowing the window for duplicates.
        """
        self.init()
        self._failed.clear()
        if self._abort_pending:
            # The last abort never got its answer (Kafka away): finish it first.
            self._abort()
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            err = kafka_error(exc)
            if err.fatal():
                raise FatalKafkaError(_describe("begin_transaction", err)) from exc
            if err.code() == KafkaError._CONFLICT:
                # An earlier call is still in progress inside librdkafka: only fencing
                # this client ends it.
                self._replace("begin_transaction", err)
                raise CommitUndecided(_describe("begin_transaction", err)) from exc
            # Still in a failed transaction's state: it needs its abort before anything.
            self._abort_pending = True
            raise TransactionAborted(_describe("begin_transaction", err)) from exc
        clients = self.replacements
        try:
            for i, rec in enumerate(records):
                self._produce(i, rec)
            if offsets:
                self._call("send_offsets_to_transaction",
                           lambda t: self._producer.send_offsets_to_transaction(
                               offsets, group_metadata, t), self._txn_timeout_s)
            if guard is not None and not guard():
                raise TransactionAborted("aborted before commit: the input was lost")
            self._call("commit_transaction", self._producer.commit_transaction,
                       self._txn_timeout_s, undecided=True)
        except (FatalKafkaError, CommitUndecided):
            raise
        except TransactionAborted as exc:
            if self.replacements == clients:   # a replaced client has nothing to abort
                self._abort()
            rejected = self._rejected(records)
            if rejected is not None and not isinstance(exc, RecordRejected):
                raise rejected from exc
            raise

    def poll(self, timeout: float = 0.0) -> int:
        return int(self._producer.poll(timeout))

    def close(self, timeout: float = 10.0) -> None:
        with self._watchdog.watch("flush", timeout, self.transactional_id):
            self._producer.flush(timeout)

    # -- internals ----------------------------------------------------------------------

    def _produce(self, index: int, rec: OutRecord) -> None:
        while True:
            try:
                self._producer.produce(rec.topic, value=rec.value, key=rec.key,
                                       headers=list(rec.headers))
                return
            except BufferError:
                # Local queue full: serve delivery reports until there is room again.
                self._producer.poll(QUEUE_FULL_WAIT_S)
            except KafkaException as exc:
                err = kafka_error(exc)
                if err.code() in RECORD_ERRORS:
                    raise RecordRejected(index, _describe("produce", err)) from exc
                if err.fatal() or err.code() == KafkaError._STATE:
                    raise FatalKafkaError(_describe("produce", err)) from exc
                raise TransactionAborted(_describe("produce", err)) from exc
            except (TypeError, ValueError) as exc:  # a header or key librdkafka cannot take
                raise RecordRejected(index, f"produce: {exc}") from exc

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        # librdkafka's callback: never raise here; remember, decide after the commit call.
        if err is not None and err.code() in RECORD_ERRORS:
            try:
                self._failed.append((msg.topic(), msg.key(), msg.value(), err))
            except Exception:
                self._failed.append(("", None, None, err))

    def _rejected(self, records: Sequence[OutRecord]) -> RecordRejected | None:
        """The record the delivery reports blamed, found by content (reports carry no
        index). When they blame several (the broker refuses a whole record batch whose
        size is over the topic's limit, innocent records included), none is named: the
        caller splits the batch until the record at fault is alone."""
        if not self._failed:
            return None
        blamed: set[int] = set()
        for topic, key, value, _err in self._failed:
            for i, rec in enumerate(records):
                if rec.topic == topic and rec.key == key and rec.value == value:
                    blamed.add(i)
                    break
        err = self._failed[0][3]
        if len(blamed) == 1 and len(self._failed) == 1:
            return RecordRejected(blamed.pop(), _describe("delivery", err))
        return RecordRejected(None, _describe("delivery", err)
                              + f" ({len(self._failed)} records refused)")

    def _call(self, what: str, fn: Callable[[float], object], deadline_s: float, *,
              undecided: bool = False) -> None:
        """One transactional call under the contract: retry while retriable (until the
        deadline), abort on txn_requires_abort, fatal otherwise.

        Still retriable at the deadline, the call is still in progress inside librdkafka,
        and no other transactional call is accepted until it ends: the client is replaced
        (see ``_replace``). For ``commit_transaction`` (``undecided``) that leaves the
        outcome unknown to the caller: ``CommitUndecided``."""
        start = self._clock()
        attempt = 0
        while True:
            attempt += 1
            left = deadline_s - (self._clock() - start)
            timeout = max(1.0, min(TXN_CALL_TIMEOUT_S, left))
            try:
                with self._watchdog.watch(what, timeout, self.transactional_id):
                    fn(timeout)
                return
            except KafkaException as exc:
                err = kafka_error(exc)
                step = decide(err)
                if step is Step.FATAL:
                    raise FatalKafkaError(_describe(what, err)) from exc
                if step is Step.ABORT:
                    raise TransactionAborted(_describe(what, err)) from exc
                if self._clock() - start >= deadline_s:
                    why = f"{_describe(what, err)} (still retriable after {deadline_s:.0f}s)"
                    if what == "init_transactions":
                        raise TransactionAborted(why) from exc   # nothing in progress
                    self._replace(what, err)
                    if undecided:
                        raise CommitUndecided(why + ": outcome unknown, read it back") \
                            from exc
                    raise TransactionAborted(why) from exc
                if attempt in (1, 10) or attempt % 100 == 0:
                    log.warning("kafka.retry", extra={"call": what, "error": err.name(),
                                                      "attempt": attempt})
                self._pause(RETRY_PAUSE_S)

    def _abort(self) -> None:
        """abort_transaction(), retried while retriable; fatal otherwise. An abort with no
        transaction open (failure before the first produce) is a state error: harmless."""
        start = self._clock()
        self._abort_pending = True
        while True:
            try:
                with self._watchdog.watch("abort_transaction", TXN_CALL_TIMEOUT_S,
                                          self.transactional_id):
                    self._producer.abort_transaction(TXN_CALL_TIMEOUT_S)
                self._abort_pending = False
                return
            except KafkaException as exc:
                err = kafka_error(exc)
                if err.code() == KafkaError._STATE and not err.fatal():
                    self._abort_pending = False
                    return
                if err.code() == KafkaError._CONFLICT and not err.fatal():
                    # Another call (a commit) is still in progress: no abort is accepted
                    # until it ends, so fence it instead; that aborts or finishes it.
                    self._replace("abort_transaction", err)
                    return
                step = decide(err)
                if step is Step.RETRY and self._clock() - start < self._txn_timeout_s:
                    self._pause(RETRY_PAUSE_S)
                    continue
                if step is Step.RETRY:
                    # Kafka is away: the coordinator aborts the transaction itself at its
                    # timeout. The abort stays pending and is finished before the next
                    # begin_transaction(), so the producer (and its fencing) survives.
                    log.warning("kafka.abort_undecided", extra={"error": err.name()})
                    return
                raise FatalKafkaError(_describe("abort_transaction", err)) from exc

    def _replace(self, what: str, err: KafkaError) -> None:
        """A new client with the same transactional.id, initialised when Kafka answers: its
        init_transactions() fences the old one and returns only once the coordinator has
        finished (committed or aborted) whatever the old one had in progress. The old
        client's queued records are purged so that dropping it never blocks."""
        log.warning("kafka.producer_replaced", extra={"call": what, "error": err.name(),
                                                      "transactional_id":
                                                          self.transactional_id})
        old = self._producer
        with contextlib.suppress(Exception):
            old.purge()
        self._producer = self._factory(self._conf)
        self.replacements += 1
        self._initialised = False
        self._abort_pending = False
        self._failed.clear()
        with contextlib.suppress(TransactionAborted):
            self.init()   # else the next commit() inits first
