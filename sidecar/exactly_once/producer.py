"""A transactional producer that commits whole batches, the way confluent-kafka documents it.

Callers hand over a batch of records and get back only when the batch is *committed*
(visible to read_committed consumers) or learn why not:

- ``TransactionAborted``: the transaction was aborted (abortable error, or the batch did
  not make it); nothing of it is visible, so the caller rewinds its inputs (nack/requeue,
  or answer 503) and may retry;
- ``FatalKafkaError``: fenced or fatal; the caller stops and lets a restart take over.

Retriable errors are retried here a bounded number of times before giving up as aborted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, Producer

from sidecar.common.errors import FatalKafkaError, TransactionAborted

log = logging.getLogger(__name__)

# librdkafka retries most things itself; these bound our own retries on top of that.
TXN_CALL_RETRIES = 5
TXN_CALL_TIMEOUT_S = 30.0
QUEUE_FULL_WAIT_S = 0.5


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One record to produce: the value is already serialised."""

    topic: str
    value: bytes | None
    key: bytes | None = None
    headers: Sequence[tuple[str, bytes]] = field(default_factory=tuple)


def _kafka_error(exc: KafkaException) -> KafkaError:
    err = exc.args[0] if exc.args else None
    if isinstance(err, KafkaError):
        return err
    return KafkaError(KafkaError._FAIL, str(exc))


class TransactionalProducer:
    """Owns one confluent-kafka Producer with a fixed ``transactional.id``.

    The id must be stable per bridge instance and input (queue, collector replica) so that a
    restarted instance fences its zombie predecessor: init_transactions() bumps the epoch
    and aborts whatever the old one left open.
    """

    def __init__(self, config: dict[str, object], transactional_id: str) -> None:
        conf = {
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "transaction.timeout.ms": 60_000,
            **config,
            "transactional.id": transactional_id,
        }
        self.transactional_id = transactional_id
        self._producer = Producer(conf)
        self._initialised = False

    def init(self) -> None:
        """init_transactions(), once: librdkafka refuses a second call on a ready producer,
        so callers may retry their own start-up (topics, ledger) around it freely."""
        if self._initialised:
            return
        self._call("init_transactions", self._producer.init_transactions, TXN_CALL_TIMEOUT_S)
        self._initialised = True

    def commit(self, records: Sequence[OutRecord],
               guard: Callable[[], bool] | None = None) -> None:
        """Produce ``records`` in one transaction and return once it is committed.

        ``guard`` is asked right before ``commit_transaction()``: when it answers False
        (e.g. the input connection was lost, so the inputs will be redelivered elsewhere)
        the transaction is aborted instead, narrowing the window for duplicates.
        """
        if not self._initialised:
            self.init()
        try:
            self._producer.begin_transaction()
            for rec in records:
                self._produce(rec)
            if guard is not None and not guard():
                raise TransactionAborted("aborted before commit: the input was lost")
            self._call("commit_transaction", self._producer.commit_transaction, TXN_CALL_TIMEOUT_S)
        except TransactionAborted:
            self._abort()
            raise
        except KafkaException as exc:
            err = _kafka_error(exc)
            if err.fatal():
                raise FatalKafkaError(f"{err.name()}: {err.str()}") from exc
            self._abort()
            raise TransactionAborted(f"{err.name()}: {err.str()}") from exc

    def _produce(self, rec: OutRecord) -> None:
        while True:
            try:
                self._producer.produce(
                    rec.topic, value=rec.value, key=rec.key, headers=list(rec.headers)
                )
                return
            except BufferError:
                # Local queue full: serve delivery reports until there is room again.
                self._producer.poll(QUEUE_FULL_WAIT_S)

    def _call(self, what: str, fn: Callable[[float], object], timeout: float) -> None:
        for attempt in range(1, TXN_CALL_RETRIES + 1):
            try:
                fn(timeout)
                return
            except KafkaException as exc:
                err = _kafka_error(exc)
                if err.fatal():
                    raise FatalKafkaError(f"{what}: {err.name()}: {err.str()}") from exc
                if err.txn_requires_abort():
                    raise TransactionAborted(f"{what}: {err.name()}: {err.str()}") from exc
                if err.retriable() and attempt < TXN_CALL_RETRIES:
                    log.warning("kafka.retry", extra={"call": what, "error": err.name(),
                                                      "attempt": attempt})
                    continue
                raise TransactionAborted(f"{what}: {err.name()}: {err.str()}") from exc

    def _abort(self) -> None:
        try:
            self._producer.abort_transaction(TXN_CALL_TIMEOUT_S)
        except KafkaException as exc:
            err = _kafka_error(exc)
            if err.fatal():
                raise FatalKafkaError(f"abort_transaction: {err.name()}: {err.str()}") from exc
            # No open transaction (abort before begin) or a retriable hiccup: the next
            # begin_transaction() tells us if the producer is really unusable.
            log.warning("kafka.abort_failed", extra={"error": err.name()})

    def poll(self, timeout: float = 0.0) -> int:
        return self._producer.poll(timeout)

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
