"""The enrich loop: one consumer-group member reading the raw topic, exactly once.

Consume-transform-produce as KIP-447 has it: records are read ``read_committed``; a batch
(at most ``enrich.max_batch_records`` raw records, closed early at
``enrich.max_batch_events`` outputs) is enriched, and its outputs, its ledger records and
the consumer's next offsets are committed in one transaction. No transaction spans a
``consume()`` call, so a rebalance (which runs inside ``consume()``) never finds one open.
Zombies are fenced by the group generation that ``send_offsets_to_transaction`` carries.

What can go wrong, and what happens:

- an output Kafka refuses for good (``OutputRejected``): that output becomes a bad row
  (``size/rejected_by_kafka``) and the batch is committed again;
- an aborted transaction, a ledger or registry that does not answer: nothing is visible;
  the consumer seeks back to the batch's first offsets and reads it again after a pause;
- a fatal error (fenced, or a generation that is no longer current): producer and consumer
  are rebuilt, and the new member resumes from the committed offsets.

The enrich core never raises for a record (``core.Enricher``), so no record can stop a
partition; ``/health`` turns 503 when records wait and nothing committed for
``enrich.stalled_after_s``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from sidecar.common.avro import AvroEncoder, RegistryUnavailable
from sidecar.common.errors import FatalKafkaError, TransactionAborted
from sidecar.exactly_once.ledger import DedupLedger, LedgerUnavailable, RecentIds
from sidecar.exactly_once.producer import CommitUndecided, TransactionalProducer
from sidecar.exactly_once.topics import TopicCreator

from ..iglu import Resolver
from ..pipeline import CollectorCore, Output
from ..raw import RawPayload
from ..settings import CollectorSettings, Secrets
from ..sink import SinkUnavailable
from .core import Enricher
from .metrics import EnrichMetrics
from .writer import EnrichWriter, OutputRejected, first_offsets, next_offsets

log = logging.getLogger(__name__)

COLLECTOR_NAME = "conveyor-snowplow/0.2.0"
# After an aborted batch or a failed start: wait this long before reading again.
RETRY_PAUSE_S = 1.0
# Outputs of one batch that may be replaced by bad rows (Kafka refusing them) before the
# batch is given up as aborted and read again.
MAX_REJECTIONS_PER_BATCH = 1000


def build_enricher(settings: CollectorSettings) -> Enricher:
    resolver = Resolver(settings.iglu_repositories, bundled=settings.iglu.bundled)
    # The collector already resolved identity and IP: the core must not look at
    # X-Forwarded-For again (the raw record's IP is final).
    core = CollectorCore(resolver, settings.topics.router(), settings.topics.bad,
                         cookie=settings.cookie.to_config(), limits=settings.limits_config(),
                         use_forwarded_for=False, collector=COLLECTOR_NAME)
    return Enricher(core)


class EnrichRunner:
    def __init__(self, settings: CollectorSettings, secrets: Secrets | None = None,
                 metrics: EnrichMetrics | None = None, *,
                 consumer_factory: Callable[[dict[str, Any]], Any] = Consumer,
                 producer_factory: Callable[[dict[str, object], str], Any]
                 = TransactionalProducer,
                 ledger_factory: Callable[..., Any] | None = DedupLedger,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.metrics = metrics or EnrichMetrics()
        self.client_config = (secrets or Secrets()).kafka_client_config(settings)
        self.enricher = build_enricher(settings)
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self._ledger_factory = ledger_factory
        self._clock = clock
        self.encoder: AvroEncoder | None = None
        if settings.topics.uses_avro:
            info = Secrets().schema_registry_user_info
            self.encoder = AvroEncoder(settings.schema_registry.url,
                                       user_info=info.get_secret_value() if info else None)
        self.consumer: Any = None
        self.producer: Any = None
        self.ledger: Any = None
        self.writer: EnrichWriter | None = None
        self.ready = False
        self.failing_since: float | None = None
        self.last_commit_at: float | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set: start (retrying while Kafka is away), then loop."""
        while not stop.is_set():
            try:
                self._start()
                self._loop(stop)
            except FatalKafkaError as exc:
                log.warning("enrich.rebuild", extra={"error": str(exc)})
                self.metrics.commit_failures.labels("fatal").inc()
                self._drop_clients()
            except (TransactionAborted, LedgerUnavailable, KafkaException) as exc:
                log.warning("enrich.kafka_not_ready", extra={"error": str(exc)})
                self._mark_failing()
                self._drop_clients()
                stop.wait(RETRY_PAUSE_S)
        self.close()

    def _start(self) -> None:
        if self.consumer is not None:
            return
        s = self.settings
        k = s.kafka
        if k.create_topics:
            TopicCreator(self.client_config, k.topic_partitions,
                         k.topic_replication_factor).ensure({s.raw.topic, *s.enrich_topics()})
        if self.producer is None:
            conf: dict[str, object] = {**self.client_config,
                                       "transaction.timeout.ms": k.transaction_timeout_ms,
                                       "linger.ms": 5, **k.producer}
            producer = self._producer_factory(conf, s.enrich_transactional_id)
            producer.init()   # fences our predecessor and aborts what it left open
            self.producer = producer
        window = RecentIds(s.dedup.window_events, s.dedup.max_age_s * 1000)
        if s.dedup.ledger_topic and self._ledger_factory is not None and self.ledger is None:
            ledger = self._ledger_factory(
                self.client_config, s.dedup.ledger_topic,
                group_id=f"conveyor-ledger-{s.enrich_transactional_id}", source="snowplow",
                window_events=s.dedup.window_events, max_age_s=s.dedup.max_age_s)
            if k.create_topics:
                ledger.ensure_topic(partitions=s.dedup.ledger_partitions,
                                    replication_factor=k.topic_replication_factor)
            ledger.start(timeout=max(s.dedup.sync_timeout_s, 30.0))
            self.ledger = ledger
        self.writer = EnrichWriter(self.producer.commit, self.ledger, window, self.encoder,
                                   sync_each_batch=s.dedup.sync_each_batch,
                                   sync_timeout_s=s.dedup.sync_timeout_s)
        e = s.enrich
        consumer = self._consumer_factory({
            **self.client_config,
            "group.id": e.group_id,
            # Static membership: a restarted instance gets its partitions back at once.
            "group.instance.id": s.enrich_instance,
            "session.timeout.ms": e.session_timeout_ms,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        })
        consumer.subscribe([s.raw.topic])
        self.consumer = consumer
        self.ready = True
        log.info("enrich.ready", extra={"transactional_id": s.enrich_transactional_id,
                                        "group": e.group_id, "raw_topic": s.raw.topic})

    def _drop_clients(self) -> None:
        self.ready = False
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                self.consumer.close()
        self.consumer = None
        if self.producer is not None:
            with contextlib.suppress(Exception):
                self.producer.close(1.0)
        self.producer = None
        # The ledger's window stays valid across a rebuild: keep it.

    def close(self) -> None:
        self._drop_clients()
        if self.ledger is not None:
            with contextlib.suppress(Exception):
                self.ledger.close()
            self.ledger = None

    # -- the loop -------------------------------------------------------------------------

    def _loop(self, stop: threading.Event) -> None:
        e = self.settings.enrich
        while not stop.is_set():
            msgs = self.consumer.consume(e.max_batch_records, e.poll_timeout_ms / 1000)
            if msgs:
                self.process(msgs, stop)
            elif self.failing_since is None:
                self.metrics.lag_idle.set(1)

    def process(self, msgs: Sequence[Message], stop: threading.Event | None = None) -> bool:
        """Enrich and commit ``msgs`` in batches; False when a batch was rewound."""
        records = []
        for m in msgs:
            err = m.error()
            if err is None:
                records.append(m)
            elif err.fatal():
                raise FatalKafkaError(f"consumer: {err.str()}")
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("enrich.consume_error", extra={"error": err.name()})
        self.metrics.lag_idle.set(0)
        i = 0
        while i < len(records):
            chunk, results = self._next_chunk(records, i)
            if not self._commit_chunk(chunk, results):
                self._rewind(records[i:])
                if stop is not None:
                    stop.wait(RETRY_PAUSE_S)
                return False
            i += len(chunk)
        return True

    def _next_chunk(self, records: Sequence[Message], start: int
                    ) -> tuple[list[Message], list[tuple[list[Output], RawPayload | None]]]:
        limit = self.settings.enrich.max_batch_events
        chunk: list[Message] = []
        results: list[tuple[list[Output], RawPayload | None]] = []
        n = 0
        for m in records[start:]:
            if chunk and n >= limit:
                break
            _, ts = m.timestamp()
            enriched = self.enricher.enrich(m.headers(), m.value(),  # type: ignore[arg-type]
                                            ts if ts > 0 else 0)
            chunk.append(m)
            results.append((enriched.outputs, enriched.raw))
            n += len(enriched.outputs)
        return chunk, results

    def _commit_chunk(self, chunk: list[Message],
                      results: list[tuple[list[Output], RawPayload | None]]) -> bool:
        assert self.writer is not None
        outputs = [o for outs, _ in results for o in outs]
        sources = [raw for outs, raw in results for _ in outs]
        offsets = next_offsets(chunk)
        started = self._clock()
        for _ in range(MAX_REJECTIONS_PER_BATCH):
            try:
                prepared = self.writer.prepare(outputs)
                for i, why in prepared.unencodable.items():
                    outputs[i] = self.enricher.rejected(outputs[i], sources[i],
                                                        f"Avro encoding: {why}")
                if prepared.unencodable:
                    prepared = self.writer.prepare(outputs)
                result = self.writer.commit(prepared, offsets,
                                            self.consumer.consumer_group_metadata())
            except OutputRejected as exc:
                i = exc.output_index
                self.metrics.rejected.labels(outputs[i].outcome).inc()
                if outputs[i].outcome == "bad" and outputs[i].reason == "rejected_by_kafka":
                    # Even the small replacement is refused: the bad-rows topic is
                    # misconfigured. Stop this batch (health turns red) rather than drop it.
                    log.error("enrich.bad_row_refused", extra={"error": exc.reason})
                    self._failed("bad_row_refused")
                    return False
                outputs[i] = self.enricher.rejected(outputs[i], sources[i], exc.reason)
                continue
            except CommitUndecided as exc:
                # The offsets may have been committed with it: only the group's committed
                # offsets say where to read on, so the member is rebuilt from them.
                raise FatalKafkaError(f"commit outcome unknown: {exc}") from exc
            except (TransactionAborted, LedgerUnavailable, SinkUnavailable,
                    RegistryUnavailable) as exc:
                log.warning("enrich.batch_aborted", extra={"error": str(exc),
                                                           "records": len(chunk)})
                self._failed(type(exc).__name__)
                return False
            self._committed(chunk, outputs, result, self._clock() - started)
            return True
        self._failed("too_many_rejections")
        return False

    def _committed(self, chunk: list[Message], outputs: list[Output], result: Any,
                   seconds: float) -> None:
        m = self.metrics
        self.failing_since = None
        self.last_commit_at = self._clock()
        m.last_commit.set_to_current_time()
        m.records.inc(len(chunk))
        m.batch_records.observe(len(chunk))
        m.commit_seconds.observe(seconds)
        # Counted per batch: a labelled counter takes a lock and a lookup per increment.
        outcomes = Counter("duplicate" if i in result.duplicates else o.outcome
                           for i, o in enumerate(outputs))
        for outcome, n in outcomes.items():
            m.events.labels(outcome).inc(n)
        if outcomes.get("bad"):
            bad = Counter((o.check or "", o.reason or "") for i, o in enumerate(outputs)
                          if o.outcome == "bad" and i not in result.duplicates)
            for (check, reason), n in bad.items():
                m.bad_rows.labels(check, reason).inc(n)

    def _failed(self, reason: str) -> None:
        self.metrics.commit_failures.labels(reason).inc()
        self._mark_failing()

    def _mark_failing(self) -> None:
        if self.failing_since is None:
            self.failing_since = self._clock()

    def _rewind(self, records: Sequence[Message]) -> None:
        """Read these again: seek each partition back to its first uncommitted record."""
        for tp in first_offsets(records):
            try:
                self.consumer.seek(tp)
            except KafkaException as exc:
                # No longer ours (rebalanced away): its new owner reads from the committed
                # offset, which is where we would have gone.
                log.info("enrich.seek_skipped", extra={"partition": tp.partition,
                                                       "error": str(exc)})

    # -- ops ------------------------------------------------------------------------------

    def readiness(self) -> dict[str, bool]:
        stalled = (self.failing_since is not None
                   and self._clock() - self.failing_since > self.settings.enrich.stalled_after_s)
        return {"kafka": self.ready, "progressing": not stalled}
