"""The I/O shell: RabbitMQ in, one Kafka transaction per batch out, ack after commit.

One ``QueuePipeline`` per queue, each with its own AMQP connection, transactional producer
and ledger reader. Two threads per pipeline, so neither side starves the other:

- the AMQP thread owns every pika call: it collects deliveries into batches, hands one
  batch at a time to the Kafka thread, keeps heartbeats going while it commits, then acks
  ``multiple`` up to the batch's last delivery tag;
- the Kafka thread (a one-worker executor) reads the ledger, plans the records and commits.

What happens after each outcome is ``settle.Settlement``'s (pure, tested alone): commit ->
ack; abort -> keep the batch and retry it (never nack: see settle.py); a record Kafka
refuses -> its delivery becomes a dead letter; AMQP lost -> forget, RabbitMQ redelivers.

**Ownership.** ``transactional.id`` = ``conveyor-rabbitmq-<stream>-<queue>``: it names what
is owned, never the host. The producer is created and initialised (which fences any
previous owner and waits out or aborts its open transaction) when this instance gets its
first batch on a new channel, and the ledger is read to its end right after, before that
batch is decided. With a single-active-consumer queue a standby instance holds no
producer, so it fences nobody until RabbitMQ makes it the active consumer. A fenced or
fatally failed producer is dropped with the channel: RabbitMQ redelivers what was not
acked and the next batch gets a new producer.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException

from sidecar.common.avro import AvroEncoder, RegistryUnavailable
from sidecar.common.envelope import now_ms
from sidecar.common.errors import BridgeError, FatalKafkaError, TransactionAborted
from sidecar.exactly_once.ledger import DedupLedger, LedgerUnavailable
from sidecar.exactly_once.producer import RecordRejected, TransactionalProducer
from sidecar.exactly_once.topics import TopicCreator

from .amqp import AmqpLost, AmqpSession
from .batching import Batcher
from .core import KAFKA_REJECTED, Core, Delivery, Plan
from .metrics import Metrics
from .payloads import load_route_schemas
from .settings import BridgeSettings, Secrets
from .settle import Backoff, Settlement

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
KAFKA_PROBE_INTERVAL_S = 5.0
FAILPOINT_EXIT = 86


class BatchRejected(BridgeError):
    """Kafka refused a record of the batch for good; ``event_id`` names its delivery."""

    def __init__(self, event_id: str | None, reason: str) -> None:
        super().__init__(reason)
        self.event_id, self.reason = event_id, reason


@dataclass
class _InFlight:
    future: Future[Plan]
    count: int
    closed_at: float


class QueuePipeline:
    def __init__(self, settings: BridgeSettings, secrets: Secrets, queue: str,
                 metrics: Metrics, stop: threading.Event, *, amqp: AmqpSession | None = None,
                 ledger: DedupLedger | None = None,
                 producer_factory: Callable[[], TransactionalProducer] | None = None) -> None:
        """``amqp``, ``ledger`` and ``producer_factory`` replace the real clients (tests)."""
        self.s = settings
        self.queue = queue
        self.m = metrics
        self._stop = stop
        self._kafka_conf = secrets.kafka_client_config(settings)
        self._amqp = amqp or AmqpSession(secrets.amqp_url(settings), settings, queue)
        registry_auth = secrets.schema_registry_user_info
        schemas = load_route_schemas(settings.all_routes(), settings.base_dir)
        encoder = None
        if any(r.format == "avro" for r in settings.all_routes()):
            encoder = AvroEncoder(settings.schema_registry.url,
                                  user_info=registry_auth.get_secret_value()
                                  if registry_auth else None)
        self._core = Core(settings, schemas, encoder.encode if encoder else None)
        self._batch: Batcher[Delivery] = Batcher(settings.batch.max_messages,
                                                 settings.batch.max_bytes,
                                                 settings.batch.max_wait_ms / 1000)
        self.settlement: Settlement[Delivery] = Settlement(Backoff(0.2, 10.0))
        self._inflight: _InFlight | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-{queue}")
        self.kafka_ok = False
        self._producer: TransactionalProducer | None = None
        self._new_producer = producer_factory or (lambda: TransactionalProducer(
            self._producer_conf(), self.s.transactional_id(self.queue)))
        self._ledger: DedupLedger | None = ledger
        self._topics: TopicCreator | None = None
        self.stopped_cleanly = False
        self._next_probe = 0.0
        self._eager = False
        self._commits = 0
        armed = os.environ.get("CONVEYOR_RMQ_FAILPOINT_CRASH_AFTER_COMMITS")
        self._crash_after = int(armed) if armed else None
        # Per-delivery metrics, resolved once (labels() costs a lock and a dict lookup).
        self._consumed = metrics.consumed.labels(queue)
        self._unacked = metrics.unacked.labels(queue)
        metrics.consecutive_aborts.labels(queue).set_function(
            lambda: self.settlement.consecutive_aborts)
        metrics.held.labels(queue).set_function(lambda: self.settlement.held)
        metrics.last_commit_age.labels(queue).set_function(self.last_commit_age_s)

    # -- readiness -----------------------------------------------------------------------

    @property
    def amqp_ok(self) -> bool:
        return self._amqp.consuming

    def last_commit_age_s(self) -> float:
        at = self.settlement.last_commit_at
        return -1.0 if at is None else round(time.monotonic() - at, 3)

    @property
    def progressing(self) -> bool:
        """False while held work does not commit (repeated aborts, or no commit for
        ``ops.stalled_after_s``): sockets may be open and still nothing moves."""
        return not self.settlement.stalled(time.monotonic(), self.s.ops.unhealthy_after_aborts,
                                           self.s.ops.stalled_after_s)

    def _set_kafka(self, ok: bool) -> None:
        self.kafka_ok = ok
        self.m.connected.labels(self.queue, "kafka").set(int(ok))

    def _on_kafka_error(self, err: KafkaError) -> None:
        # librdkafka's error callback: never raise here. It reconnects by itself; we only
        # reflect the state in /health and the logs.
        # Only "all brokers down" counts: a single dropped connection (an idle one reaped
        # by the broker, say) is routine and librdkafka reconnects on its own.
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            if self.kafka_ok:
                log.warning("kafka.disconnected", extra={"queue": self.queue,
                                                         "error": err.str()})
            self._set_kafka(False)
        elif err.fatal():
            log.error("kafka.fatal", extra={"queue": self.queue, "error": err.str()})

    # -- lifecycle -----------------------------------------------------------------------

    def run(self) -> None:
        """Until the stop event."""
        try:
            self._start_kafka()
            backoff = Backoff(BACKOFF_INITIAL_S, BACKOFF_MAX_S)
            while not self._stop.is_set():
                try:
                    self._amqp.connect()
                    self._amqp.consume(self._on_delivery)
                    self.m.connected.labels(self.queue, "rabbitmq").set(1)
                    log.info("rabbitmq.connected", extra={"queue": self.queue})
                    backoff.reset()
                    self._consume_loop()
                except AmqpLost as exc:
                    self._on_amqp_lost(exc)
                    self._stop.wait(delay := backoff.next())
                    log.info("rabbitmq.reconnecting", extra={"queue": self.queue,
                                                             "after_s": delay})
            self.stopped_cleanly = True
        finally:
            self._shutdown()

    def _producer_conf(self) -> dict[str, object]:
        # Our own size checks (max_record_bytes, dead_letter.max_record_bytes) decide what is
        # too large, as dead letters; librdkafka's lower default limit must never fire first.
        limit = max(self.s.max_record_bytes, self.s.dead_letter.max_record_bytes) + 64 * 1024
        return {**self._kafka_conf, "error_cb": self._on_kafka_error,
                "transaction.timeout.ms": self.s.kafka.transaction_timeout_ms,
                "message.max.bytes": limit, **self.s.kafka.producer}

    def _start_kafka(self) -> None:
        """Ledger and topics (no producer: that is made when this instance owns a batch);
        retried with backoff while Kafka is unreachable."""
        conf = {**self._kafka_conf, "error_cb": self._on_kafka_error}
        backoff = Backoff(BACKOFF_INITIAL_S, BACKOFF_MAX_S)
        while not self._stop.is_set():
            try:
                if self._ledger is None:
                    self._ledger = DedupLedger(
                        conf, self.s.ledger_topic, source=self.s.source_name,
                        group_id=f"conveyor-ledger-{self.s.stream}-{self.s.instance}",
                        window_events=self.s.ledger.window_events,
                        max_age_s=self.s.ledger.max_age_s)
                if self.s.ledger.create_topic:
                    self._ledger.ensure_topic(self.s.ledger.partitions,
                                              self.s.ledger.replication_factor)
                # Loads the window without waiting for the end: an open transaction of a
                # dead owner of this queue is only fenced once we own the queue, and the
                # first batch reads to the end after that anyway.
                self._ledger.start(self.s.ledger.sync_timeout_s, to_end=False)
                if self.s.kafka.create_topics and self._topics is None:
                    self._topics = TopicCreator(self._kafka_conf, self.s.kafka.topic_partitions,
                                                self.s.kafka.topic_replication_factor)
                self._set_kafka(True)
                log.info("kafka.ready", extra={"queue": self.queue,
                                               "transactional_id":
                                                   self.s.transactional_id(self.queue),
                                               "ledger_ids": len(self._ledger.window)})
                return
            except (TransactionAborted, LedgerUnavailable, KafkaException) as exc:
                delay = backoff.next()
                self.m.errors.labels(self.queue, "kafka_unavailable").inc()
                log.warning("kafka.unavailable", extra={"queue": self.queue, "error": str(exc),
                                                        "retry_in_s": delay})
                self._stop.wait(delay)

    def _consume_loop(self) -> None:
        while True:
            now = time.monotonic()
            if self._inflight is not None and self._inflight.future.done():
                self._settle()
                continue
            if self._stop.is_set():
                self._drain_and_stop()
                return
            if self._inflight is None:
                chunk = self.settlement.ready(now)
                if chunk is not None:
                    self._submit(chunk)
                    continue
                # Deliveries that piled up while the previous batch committed have waited
                # long enough: send them at once. Under load this sizes batches by commit
                # time. Nothing new while a held batch waits for its retry.
                if not self.settlement.chunks and (
                        self._batch.due(now) or (self._eager and len(self._batch))):
                    self._eager = False
                    self.settlement.hold(self._batch.take())
                    continue
            if self._inflight is None and not self.kafka_ok and not len(self._batch) \
                    and not self.settlement.chunks and now >= self._next_probe:
                # Idle while Kafka was reported down: nothing else would notice its return.
                self._next_probe = now + KAFKA_PROBE_INTERVAL_S
                self._executor.submit(self._probe_kafka)
            if self._inflight is not None:
                wait = 0.5
            elif self.settlement.chunks:
                wait = max(0.0, self.settlement.retry_at - now)
            else:
                wait = self._batch.time_left(now)
            self._amqp.pump(min(wait, 0.5))

    def _probe_kafka(self) -> None:
        """On the Kafka thread: one round trip to the ledger's partitions."""
        try:
            assert self._ledger is not None
            self._ledger.poll()
            self._ledger.sync(timeout=KAFKA_PROBE_INTERVAL_S)
        except Exception as exc:  # still down: the next probe tries again
            log.debug("kafka.probe_failed", extra={"queue": self.queue, "error": str(exc)})
            return
        log.info("kafka.reconnected", extra={"queue": self.queue})
        self._set_kafka(True)

    def _on_delivery(self, d: Delivery) -> None:
        self._batch.add(d, len(d.body), time.monotonic())
        self._consumed.inc()
        self._unacked.inc()

    def _submit(self, items: list[Delivery]) -> None:
        retry = self.settlement.retrying
        forced = dict(self.settlement.forced)
        fut = self._executor.submit(self._commit_batch, items, retry, forced)
        fut.add_done_callback(lambda _f: self._amqp.wake_from_thread())
        self._inflight = _InFlight(fut, len(items), time.monotonic())

    def _settle(self) -> None:
        """On the AMQP thread: carry out what the outcome of the batch calls for."""
        inflight, self._inflight = self._inflight, None
        assert inflight is not None
        now = time.monotonic()
        try:
            plan = inflight.future.result()
        except FatalKafkaError as exc:
            # Fenced by a new owner of this queue, or a producer that cannot go on: drop
            # it with the channel; RabbitMQ redelivers, the next batch makes a new one.
            self.m.errors.labels(self.queue, "kafka_fatal").inc()
            self.m.transactions.labels(self.queue, "failed").inc()
            log.warning("kafka.producer_dropped", extra={"queue": self.queue,
                                                         "error": str(exc)})
            raise AmqpLost(f"producer dropped: {exc}") from exc
        except BatchRejected as exc:
            self.m.errors.labels(self.queue, "kafka_rejected").inc()
            self.m.transactions.labels(self.queue, "aborted").inc()
            log.warning("batch.record_rejected", extra={"queue": self.queue,
                                                        "error": exc.reason,
                                                        "event_id": exc.event_id})
            try:
                self.settlement.rejected(now, exc.event_id, exc.reason)
            except LookupError:
                self.settlement.aborted(now)
            return
        except (TransactionAborted, LedgerUnavailable, RegistryUnavailable) as exc:
            kind = ("ledger" if isinstance(exc, LedgerUnavailable) else
                    "schema_registry" if isinstance(exc, RegistryUnavailable) else
                    "kafka_aborted")
            self.m.errors.labels(self.queue, kind).inc()
            self.m.transactions.labels(self.queue, "aborted").inc()
            delay = self.settlement.aborted(now)
            log.warning("batch.aborted", extra={
                "queue": self.queue, "error": str(exc), "messages": inflight.count,
                "retry_in_s": round(delay, 2),
                "consecutive_aborts": self.settlement.consecutive_aborts})
            return
        self._eager = True
        self.m.transactions.labels(self.queue, "committed").inc()
        self.m.transaction_seconds.labels(self.queue).observe(now - inflight.closed_at)
        self.m.batch_size.labels(self.queue).observe(inflight.count)
        self.m.dedup_hits.labels(self.queue).inc(plan.duplicates)
        if plan.duplicates:
            log.info("batch.duplicates_skipped", extra={"queue": self.queue,
                                                        "duplicates": plan.duplicates,
                                                        "messages": inflight.count})
        self.m.produced.labels(self.queue, "routed").inc(plan.routed)
        self.m.produced.labels(self.queue, "ledger").inc(len(plan.ledger_ids))
        for reason, n in plan.dead_letters.items():
            self.m.produced.labels(self.queue, "dead_letter").inc(n)
            self.m.dead_lettered.labels(self.queue, reason).inc(n)
        last_tag = self.settlement.committed(now, plan.ledger_ids)
        self._failpoint_after_commit()
        # Only now, with the transaction committed, may RabbitMQ forget these deliveries.
        self._amqp.ack_upto(last_tag)
        self._unacked.dec(inflight.count)

    def _failpoint_after_commit(self) -> None:
        """Fault injection for tests: die between commit and ack, the window the ledger
        exists for. Armed only by CONVEYOR_RMQ_FAILPOINT_CRASH_AFTER_COMMITS=N."""
        if self._crash_after is None:
            return
        self._commits += 1
        if self._commits >= self._crash_after:
            log.error("failpoint.crash_after_commit", extra={"queue": self.queue,
                                                             "commits": self._commits})
            logging.shutdown()
            os._exit(FAILPOINT_EXIT)

    def _own(self) -> bool:
        """On the Kafka thread: a producer that owns this queue's transactional.id.
        True when it was initialised just now (a previous owner was fenced)."""
        if self._producer is not None:
            return False
        producer = self._new_producer()
        try:
            producer.init()
        except BaseException:
            producer.close(0)
            raise
        self._producer = producer
        self.m.ownerships.labels(self.queue).inc()
        log.info("kafka.owner", extra={"queue": self.queue,
                                       "transactional_id": producer.transactional_id})
        return True

    def _drop_producer(self) -> None:
        """On the Kafka thread: forget the producer (the next owner fences it)."""
        producer, self._producer = self._producer, None
        if producer is not None:
            producer.close(1.0)

    def _commit_batch(self, items: list[Delivery], retry: bool,
                      forced: dict[str, tuple[str, str]]) -> Plan:
        """On the Kafka thread: own, dedup, plan, commit. Raises to abort."""
        assert self._ledger is not None
        try:
            fresh_owner = self._own()
            assert self._producer is not None
            # A producer that replaced its client after an undecided commit initialises
            # it here, before the ledger is read: only then is that commit decided.
            fresh_owner = self._producer.init() or fresh_owner
        except FatalKafkaError:
            self._drop_producer()
            raise
        prepared = [self._core.prepare(d) for d in items]
        # Read the ledger to its end when the answer may differ from what we have: a new
        # owner (the old one's last commits), a retry (the failed try may have committed),
        # a redelivery, or always when configured.
        sync = (fresh_owner or retry or self.s.ledger.sync == "always"
                or any(d.redelivered for d in items))
        seen = self._ledger.seen([p.event_id for p in prepared], sync=sync,
                                 timeout=self.s.ledger.sync_timeout_s)
        plan = self._core.plan(prepared, seen, now_ms(), forced)
        if plan.records and self._topics is not None:
            refused = self._topics.ensure({r.topic for r in plan.records})
            if refused:
                # A topic Kafka will never create: its records become dead letters.
                more = {eid: (KAFKA_REJECTED, f"topic {r.topic}: {refused[r.topic]}")
                        for eid, r in zip(plan.ledger_ids, plan.records, strict=True)
                        if r.topic in refused}
                plan = self._core.plan(prepared, seen, now_ms(), {**forced, **more})
                self._topics.ensure({r.topic for r in plan.records})
        records = [*plan.records, *self._ledger.record(plan.ledger_ids)]
        if records:
            try:
                self._producer.commit(records, guard=lambda: self._amqp.is_open)
            except RecordRejected as exc:
                ids = plan.ledger_ids
                eid = ids[exc.index] if exc.index is not None and exc.index < len(ids) \
                    else (ids[0] if len(ids) == 1 else None)
                raise BatchRejected(eid, exc.reason) from exc
            except FatalKafkaError:
                self._drop_producer()
                raise
            self._ledger.remember(plan.ledger_ids)
        self._set_kafka(True)
        self.m.ledger_ids.labels(self.queue).set(len(self._ledger.window))
        return plan

    def _on_amqp_lost(self, exc: AmqpLost) -> None:
        self.m.connected.labels(self.queue, "rabbitmq").set(0)
        self.m.errors.labels(self.queue, "amqp_connection").inc()
        log.warning("rabbitmq.lost", extra={"queue": self.queue, "error": str(exc)})
        self._amqp.close()
        if self._inflight is not None:
            # Its deliveries are requeued by the broker; let the commit finish (or abort via
            # the guard) so the producer is idle before it is dropped.
            outcome = self._inflight.future.exception()
            if outcome is not None:
                log.info("batch.ended_with_channel", extra={"queue": self.queue,
                                                            "outcome": str(outcome)})
            self._inflight = None
        # Whoever gets these deliveries next may be another instance: it fences us when it
        # owns the queue, and we fence it when we own it again.
        self._executor.submit(self._drop_producer).result()
        self._batch.clear()
        self.settlement.lost()
        self._unacked.set(0)

    def _drain_and_stop(self) -> None:
        """SIGTERM: stop deliveries, commit what we have, ack it, close."""
        log.info("bridge.stopping", extra={"queue": self.queue})
        self._amqp.cancel()
        deadline = time.monotonic() + self.s.shutdown_timeout_s
        while time.monotonic() < deadline:
            now = time.monotonic()
            if self._inflight is not None:
                if self._inflight.future.done():
                    self._settle()
                else:
                    self._amqp.pump(0.05)
                continue
            if not self.settlement.chunks and len(self._batch):
                self.settlement.hold(self._batch.take())
            chunk = self.settlement.ready(now)
            if chunk is not None:
                self._submit(chunk)
                continue
            if self.settlement.chunks:  # waiting for a retry
                self._amqp.pump(min(0.05, max(0.0, self.settlement.retry_at - now)))
                continue
            break
        self._amqp.close()

    def _shutdown(self) -> None:
        self._executor.submit(self._drop_producer).result()
        self._executor.shutdown(wait=True)
        self._amqp.close()
        if self._ledger is not None:
            self._ledger.close()


class Bridge:
    """All pipelines of a config, plus readiness for /health."""

    def __init__(self, settings: BridgeSettings, secrets: Secrets,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.stop = threading.Event()
        self.pipelines = [QueuePipeline(settings, secrets, q, self.metrics, self.stop)
                          for q in settings.rabbitmq.queues]
        self._errors: list[BaseException] = []

    def readiness(self) -> dict[str, object]:
        """/health: booleans decide the status; the rest says why."""
        return {"rabbitmq": all(p.amqp_ok for p in self.pipelines),
                "kafka": all(p.kafka_ok for p in self.pipelines),
                "progressing": all(p.progressing for p in self.pipelines),
                "queues": {p.queue: {"last_commit_age_s": p.last_commit_age_s(),
                                     "consecutive_aborts": p.settlement.consecutive_aborts,
                                     "held_messages": p.settlement.held}
                           for p in self.pipelines}}

    def run(self) -> None:
        """Run until ``stop`` is set or a pipeline fails; re-raises the first failure."""
        threads = [threading.Thread(target=self._run_one, args=(p,), name=f"amqp-{p.queue}")
                   for p in self.pipelines]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=0.2)
            if self._errors:
                self.stop.set()
        for t in threads:
            t.join()
        if self._errors:
            raise self._errors[0]

    def _run_one(self, p: QueuePipeline) -> None:
        try:
            p.run()
        except BaseException as exc:
            log.error("pipeline.failed", extra={"queue": p.queue, "error": str(exc)})
            self._errors.append(exc)
