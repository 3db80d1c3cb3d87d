"""The I/O shell: RabbitMQ in, one Kafka transaction per batch out, ack after commit.

One ``QueuePipeline`` per queue, each with its own AMQP connection, transactional producer
(``transactional.id`` = ``conveyor-rabbitmq-<stream>-<instance>-<queue>``) and ledger reader.
Two threads per pipeline, so neither side starves the other:

- the AMQP thread owns every pika call: it collects deliveries into a batch, hands a closed
  batch to the Kafka thread, keeps heartbeats going while the batch commits (and the next
  batch fills), then acks ``multiple`` up to the batch's last delivery tag;
- the Kafka thread (a one-worker executor) reads the ledger, plans the records and commits.

Outcomes of a batch:

- committed: ack(multiple) the last tag. Duplicates found by the ledger are acked too;
- aborted (TransactionAborted, ledger or registry unavailable): nack(multiple, requeue) of
  *everything* received so far, the next batch included, so order is kept; back off, retry;
- fatal (fenced, fatal librdkafka error): stop without acking and exit non-zero; the
  restarted instance fences any zombie and RabbitMQ redelivers what was not acked;
- RabbitMQ lost mid-batch: the commit is aborted if it has not happened yet; if it has, the
  redelivery is a ledger hit. Either way the batch is dropped and the connection rebuilt.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException

from sidecar.common.avro import AvroEncoder, RegistryUnavailable
from sidecar.common.envelope import now_ms
from sidecar.common.errors import FatalKafkaError, TransactionAborted
from sidecar.exactly_once.producer import TransactionalProducer
from sidecar.exactly_once.ledger import DedupLedger, LedgerUnavailable

from .amqp import AmqpLost, AmqpSession
from .batching import Batcher
from .core import Core, Delivery, Plan
from .metrics import Metrics
from .payloads import load_route_schemas
from .settings import BridgeSettings, Secrets
from sidecar.exactly_once.topics import TopicCreator

log = logging.getLogger(__name__)

BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 30.0
KAFKA_PROBE_INTERVAL_S = 5.0
FAILPOINT_EXIT = 86


class Backoff:
    """Doubling delay, capped; reset after a success."""

    def __init__(self, initial: float = BACKOFF_INITIAL_S, cap: float = BACKOFF_MAX_S) -> None:
        self.initial, self.cap, self.current = initial, cap, initial

    def next(self) -> float:
        delay, self.current = self.current, min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.current = self.initial


@dataclass
class _InFlight:
    future: Future[Plan]
    last_tag: int
    count: int
    closed_at: float


class QueuePipeline:
    def __init__(self, settings: BridgeSettings, secrets: Secrets, queue: str,
                 metrics: Metrics, stop: threading.Event) -> None:
        self.s = settings
        self.queue = queue
        self.m = metrics
        self._stop = stop
        self._kafka_conf = secrets.kafka_client_config(settings)
        self._amqp = AmqpSession(secrets.amqp_url(settings), settings, queue)
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
        self._inflight: _InFlight | None = None
        self._last_tag = 0  # highest delivery tag received on the current channel
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"kafka-{queue}")
        self.kafka_ok = False
        self._producer: TransactionalProducer | None = None
        self._ledger: DedupLedger | None = None
        self._topics: TopicCreator | None = None
        self.stopped_cleanly = False
        self._abort_backoff = Backoff(0.2, 10.0)
        self._next_probe = 0.0
        self._eager = False
        self._commits = 0
        armed = os.environ.get("CONVEYOR_RMQ_FAILPOINT_CRASH_AFTER_COMMITS")
        self._crash_after = int(armed) if armed else None
        # Per-delivery metrics, resolved once (labels() costs a lock and a dict lookup).
        self._consumed = metrics.consumed.labels(queue)
        self._unacked = metrics.unacked.labels(queue)

    # -- readiness -----------------------------------------------------------------------

    @property
    def amqp_ok(self) -> bool:
        return self._amqp.is_open

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
        """Until the stop event; raises FatalKafkaError when the producer cannot go on."""
        try:
            self._start_kafka()
            backoff = Backoff()
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

    def _start_kafka(self) -> None:
        """Producer, ledger and topics; retried with backoff while Kafka is unreachable."""
        conf = {**self._kafka_conf, "error_cb": self._on_kafka_error}
        # Our own size checks (max_record_bytes, dead_letter.max_record_bytes) decide what is
        # too large, as dead letters; librdkafka's lower default limit must never fire first,
        # or the same batch would abort and be redelivered forever.
        limit = max(self.s.max_record_bytes, self.s.dead_letter.max_record_bytes) + 64 * 1024
        producer_conf = {**conf, "transaction.timeout.ms": self.s.kafka.transaction_timeout_ms,
                         "message.max.bytes": limit, **self.s.kafka.producer}
        backoff = Backoff()
        while not self._stop.is_set():
            try:
                if self._producer is None:
                    self._producer = TransactionalProducer(
                        producer_conf, self.s.transactional_id(self.queue))
                # Fences a zombie with the same transactional.id and aborts what it left.
                self._producer.init()
                if self._ledger is None:
                    self._ledger = DedupLedger(
                        conf, self.s.ledger_topic, source=self.s.source_name,
                        group_id=f"conveyor-ledger-{self.s.stream}-{self.s.instance}",
                        window_events=self.s.ledger.window_events,
                        max_age_s=self.s.ledger.max_age_s)
                if self.s.ledger.create_topic:
                    self._ledger.ensure_topic(self.s.ledger.partitions,
                                              self.s.ledger.replication_factor)
                self._ledger.start(self.s.ledger.sync_timeout_s)
                if self.s.kafka.create_topics:
                    self._topics = TopicCreator(self._kafka_conf, self.s.kafka.topic_partitions,
                                                self.s.kafka.topic_replication_factor)
                self._set_kafka(True)
                log.info("kafka.ready", extra={"queue": self.queue,
                                               "transactional_id": self._producer.transactional_id,
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
            # Deliveries that piled up while the previous batch committed have waited long
            # enough: send them at once. Under load this sizes batches by commit time.
            if self._inflight is None and (self._batch.due(now) or
                                           (self._eager and len(self._batch))):
                self._submit()
                continue
            if self._inflight is None and not self.kafka_ok and not len(self._batch) \
                    and now >= self._next_probe:
                # Idle while Kafka was reported down: nothing else would notice its return.
                self._next_probe = now + KAFKA_PROBE_INTERVAL_S
                self._executor.submit(self._probe_kafka)
            wait = 0.5 if self._inflight is not None else self._batch.time_left(now)
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
        self._last_tag = d.delivery_tag
        self._batch.add(d, len(d.body), time.monotonic())
        self._consumed.inc()
        self._unacked.inc()

    def _submit(self) -> None:
        self._eager = False
        items = self._batch.take()
        fut = self._executor.submit(self._commit_batch, items)
        fut.add_done_callback(lambda _f: self._amqp.wake_from_thread())
        self._inflight = _InFlight(fut, items[-1].delivery_tag, len(items), time.monotonic())

    def _settle(self) -> None:
        """On the AMQP thread: ack or nack the batch that finished."""
        inflight, self._inflight = self._inflight, None
        assert inflight is not None
        try:
            plan = inflight.future.result()
        except FatalKafkaError:
            self.m.errors.labels(self.queue, "kafka_fatal").inc()
            self.m.transactions.labels(self.queue, "failed").inc()
            raise
        except (TransactionAborted, LedgerUnavailable, RegistryUnavailable) as exc:
            kind = {TransactionAborted: "kafka_aborted", LedgerUnavailable: "ledger",
                    RegistryUnavailable: "schema_registry"}[type(exc)]
            self.m.errors.labels(self.queue, kind).inc()
            self.m.transactions.labels(self.queue, "aborted").inc()
            log.warning("batch.aborted", extra={"queue": self.queue, "error": str(exc),
                                                "messages": inflight.count})
            self._rewind()
            # Give the outage a moment before the redelivery; grows while aborts repeat.
            self._stop.wait(self._abort_backoff.next())
            return
        self._abort_backoff.reset()
        self._eager = True
        self.m.transactions.labels(self.queue, "committed").inc()
        self.m.transaction_seconds.labels(self.queue).observe(
            time.monotonic() - inflight.closed_at)
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
        self._failpoint_after_commit()
        # Only now, with the transaction committed, may RabbitMQ forget these deliveries.
        self._amqp.ack_upto(inflight.last_tag)
        self.m.unacked.labels(self.queue).dec(inflight.count)

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

    def _rewind(self) -> None:
        """Requeue everything received and not acked, in order; drop the pending batch."""
        self._batch.clear()
        self._amqp.nack_upto(self._last_tag)
        self.m.unacked.labels(self.queue).set(0)

    def _commit_batch(self, items: list[Delivery]) -> Plan:
        """On the Kafka thread: dedup, plan, commit. Raises to abort."""
        assert self._producer is not None and self._ledger is not None
        prepared = [self._core.prepare(d) for d in items]
        sync = self.s.ledger.sync == "always" or any(d.redelivered for d in items)
        seen = self._ledger.seen([p.event_id for p in prepared], sync=sync,
                                 timeout=self.s.ledger.sync_timeout_s)
        plan = self._core.plan(prepared, seen, now_ms())
        records = [*plan.records, *self._ledger.record(plan.ledger_ids)]
        if records and self._topics is not None:
            self._topics.ensure({r.topic for r in plan.records})
        if records:
            self._producer.commit(records, guard=lambda: self._amqp.is_open)
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
            # the guard) so the producer is idle before the next batch.
            try:
                self._inflight.future.result()
            except FatalKafkaError:
                raise
            except Exception:
                pass
            self._inflight = None
        self._batch.clear()
        self.m.unacked.labels(self.queue).set(0)
        self._last_tag = 0

    def _drain_and_stop(self) -> None:
        """SIGTERM: stop deliveries, commit what we have, ack it, close."""
        log.info("bridge.stopping", extra={"queue": self.queue})
        self._amqp.cancel()
        deadline = time.monotonic() + self.s.shutdown_timeout_s
        while time.monotonic() < deadline:
            if self._inflight is not None:
                if self._inflight.future.done():
                    self._settle()
                else:
                    self._amqp.pump(0.05)
                continue
            if len(self._batch):
                self._submit()
                continue
            break
        self._amqp.close()

    def _shutdown(self) -> None:
        self._executor.shutdown(wait=True)
        self._amqp.close()
        if self._producer is not None:
            self._producer.close()
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

    def readiness(self) -> dict[str, bool]:
        return {"rabbitmq": all(p.amqp_ok for p in self.pipelines),
                "kafka": all(p.kafka_ok for p in self.pipelines)}

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
