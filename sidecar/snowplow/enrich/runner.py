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
- a refusal that names no record (the broker refused a whole record batch, innocent
  records in it): the batch is split in halves, each committed with its own offsets,
  until the raw record at fault is alone, and then its outputs until the one at fault is
  alone; only that one becomes a bad row (``_commit_chunk``, ``_isolate``);
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
import enum
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

from sidecar.common.avro import AvroEncoder, RegistryUnavailable
from sidecar.common.errors import FatalKafkaError, TransactionAborted
from sidecar.exactly_once.ledger import DedupLedger, LedgerUnavailable, RecentIds
from sidecar.exactly_once.producer import (
    CommitUndecided,
    RecordRejected,
    TransactionalProducer,
)
from sidecar.exactly_once.topics import TopicCreator

from ..atomic.layout import AtomicLayout
from ..enrichments import build_enrichments
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
# Snowplow's v_etl column: what enriched the event.
ETL_NAME = "conveyor-enrich/0.2.0"
# After an aborted batch or a failed start: wait this long before reading again.
RETRY_PAUSE_S = 1.0
# Outputs of one batch that may be replaced by bad rows (Kafka refusing them) before the
# batch is given up as aborted and read again.
MAX_REJECTIONS_PER_BATCH = 1000

# One raw record's outputs, and the record (None: not a readable raw record).
Result = tuple[list[Output], RawPayload | None]


class Outcome(enum.Enum):
    COMMITTED = "committed"
    REFUSED = "refused"   # Kafka refused records without naming one: split and try again
    FAILED = "failed"     # aborted, or stuck: read the records again later


def _write_back(results: Sequence[Result], outputs: list[Output]) -> None:
    """Outputs replaced by bad rows in the flat list, back into their records' lists."""
    n = 0
    for outs, _ in results:
        outs[:] = outputs[n:n + len(outs)]
        n += len(outs)


def build_enricher(settings: CollectorSettings) -> Enricher:
    resolver = Resolver(settings.iglu_repositories, bundled=settings.iglu.bundled)
    # The collector already resolved identity and IP: the core must not look at
    # X-Forwarded-For again (the raw record's IP is final).
    a = settings.atomic
    atomic = AtomicLayout(resolver, a.events_topic, a.entity_topic_prefix,
                          v_collector=COLLECTOR_NAME, v_etl=ETL_NAME) if a.enabled else None
    core = CollectorCore(resolver, settings.topics.router(), settings.topics.bad,
                         cookie=settings.cookie.to_config(), limits=settings.limits_config(),
                         use_forwarded_for=False, collector=COLLECTOR_NAME,
                         enrichments=build_enrichments(settings.enrichments,
                                                       settings.base_dir),
                         atomic=atomic)
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
        if settings.uses_avro:
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
        creator = TopicCreator(self.client_config, k.topic_partitions,
                               k.topic_replication_factor) if k.create_topics else None
        self.writer = EnrichWriter(self.producer.commit, self.ledger, window, self.encoder,
                                   sync_each_batch=s.dedup.sync_each_batch,
                                   sync_timeout_s=s.dedup.sync_timeout_s,
                                   ensure_topics=creator.ensure if creator else None)
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
            elif err.fatal() or err.code() == KafkaError._FATAL:
                # librdkafka hands a fatal consumer error (e.g. a static member fenced after
                # a broker restart) as a message error _FATAL whose own fatal() is False;
                # read as a warning, the consumer stayed dead and enrich stopped for good.
                raise FatalKafkaError(f"consumer: {err.str()}")
            elif err.code() != KafkaError._PARTITION_EOF:
                log.warning("enrich.consume_error", extra={"error": err.name()})
        self.metrics.lag_idle.set(0)
        i = 0
        while i < len(records):
            chunk, results = self._next_chunk(records, i)
            done = self._commit_chunk(chunk, results)
            i += done
            if done < len(chunk):
                self._rewind(records[i:])
                if stop is not None:
                    stop.wait(RETRY_PAUSE_S)
                return False
        return True

    def _next_chunk(self, records: Sequence[Message], start: int
                    ) -> tuple[list[Message], list[Result]]:
        limit = self.settings.enrich.max_batch_events
        chunk: list[Message] = []
        results: list[Result] = []
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

    def _commit_chunk(self, chunk: list[Message], results: list[Result]) -> int:
        """Commit ``chunk`` with its outputs; how many of its records (from the first) are
        committed. A refusal that names no record (the broker refused a whole record batch,
        e.g. over the topic's max.message.bytes, innocent records in it) splits the chunk
        in halves, each committed with its own next offsets (valid: a partition's records
        are contiguous in a chunk, so a prefix of the chunk is a prefix of each), until
        the raw record at fault is alone; then ``_isolate`` looks among its outputs."""
        parts = deque([(0, len(chunk))])
        while parts:
            lo, hi = parts.popleft()
            msgs = chunk[lo:hi]
            outputs = [o for outs, _ in results[lo:hi] for o in outs]
            sources = [raw for outs, raw in results[lo:hi] for _ in outs]
            started = self._clock()
            outcome, result, reason = self._transact(outputs, sources, next_offsets(msgs))
            _write_back(results[lo:hi], outputs)
            if outcome is Outcome.COMMITTED:
                self._committed(msgs, outputs, result, self._clock() - started)
                continue
            if outcome is Outcome.FAILED:
                return lo
            self.metrics.refusal_splits.inc()
            log.warning("enrich.refused_unnamed", extra={"records": hi - lo,
                                                         "outputs": len(outputs),
                                                         "error": reason})
            if hi - lo > 1:
                mid = (lo + hi) // 2
                parts.extendleft([(mid, hi), (lo, mid)])
            elif not self._isolate(chunk[lo], results[lo], reason):
                return lo
        return len(chunk)

    def _isolate(self, msg: Message, result: Result, reason: str) -> bool:
        """The outputs of one raw record, refused together without a name: committed in
        halves, each its own transaction, until the output at fault is alone; that one
        becomes a ``size/rejected_by_kafka`` bad row, and the last transaction carries
        the record's offset. True once the offset is committed.

        The earlier halves commit without the offset: if enrich stops before the last,
        the record is read again and the ledger skips the events already committed. So
        the outputs with an event id go first and those without (bad rows of events
        without a usable eid, which nothing could skip) last, with the offset.
        """
        outputs, raw = result
        if not outputs:   # nothing of ours was refused (cannot happen: one output at least)
            self._failed("refused_without_outputs")
            return False
        offsets = next_offsets([msg])
        groups: deque[list[int]] = deque()

        def refused(group: list[int], why: str) -> bool:
            if len(group) > 1:
                half = len(group) // 2
                groups.extendleft([group[half:], group[:half]])
                return True
            i = group[0]
            self.metrics.rejected.labels(outputs[i].outcome).inc()
            if outputs[i].outcome == "bad" and outputs[i].reason == "rejected_by_kafka":
                log.error("enrich.bad_row_refused", extra={"error": why})
                self._failed("bad_row_refused")
                return False
            outputs[i] = self.enricher.rejected(outputs[i], raw, why)
            groups.appendleft(group)   # its bad row, alone
            return True

        order = sorted(range(len(outputs)), key=lambda i: outputs[i].dedup_id is None)
        if not refused(order, reason):
            return False
        while groups:
            group = groups.popleft()
            last = not groups
            part = [outputs[i] for i in group]
            started = self._clock()
            outcome, res, why = self._transact(part, [raw] * len(part),
                                               offsets if last else [])
            for i, o in zip(group, part, strict=True):
                outputs[i] = o
            if outcome is Outcome.COMMITTED:
                self._committed([msg] if last else [], part, res, self._clock() - started)
            elif outcome is Outcome.FAILED or not refused(group, why):
                return False
        return True

    def _transact(self, outputs: list[Output], sources: list[RawPayload | None],
                  offsets: list[Any]) -> tuple[Outcome, Any, str]:
        """One transaction of ``outputs`` and ``offsets``. An output Kafka refuses by
        name, or the Avro encoder refuses, becomes a bad row in ``outputs`` and the
        transaction is tried again; a refusal without a name is the caller's to split."""
        assert self.writer is not None
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
                    return Outcome.FAILED, None, exc.reason
                outputs[i] = self.enricher.rejected(outputs[i], sources[i], exc.reason)
                continue
            except RecordRejected as exc:
                if exc.index is None:
                    return Outcome.REFUSED, None, exc.reason
                # A ledger record: not one of ours to replace; read the batch again.
                log.warning("enrich.batch_aborted", extra={"error": str(exc),
                                                           "outputs": len(outputs)})
                self._failed(type(exc).__name__)
                return Outcome.FAILED, None, exc.reason
            except CommitUndecided as exc:
                # The offsets may have been committed with it: only the group's committed
                # offsets say where to read on, so the member is rebuilt from them.
                raise FatalKafkaError(f"commit outcome unknown: {exc}") from exc
            except (TransactionAborted, LedgerUnavailable, SinkUnavailable,
                    RegistryUnavailable) as exc:
                log.warning("enrich.batch_aborted", extra={"error": str(exc),
                                                           "outputs": len(outputs)})
                self._failed(type(exc).__name__)
                return Outcome.FAILED, None, str(exc)
            return Outcome.COMMITTED, result, ""
        self._failed("too_many_rejections")
        return Outcome.FAILED, None, "too many rejections"

    def _committed(self, chunk: list[Message], outputs: list[Output], result: Any,
                   seconds: float) -> None:
        m = self.metrics
        self.failing_since = None
        self.last_commit_at = self._clock()
        m.last_commit.set_to_current_time()
        m.commit_seconds.observe(seconds)
        if chunk:   # a part of one record's outputs commits without its offset
            m.records.inc(len(chunk))
            m.batch_records.observe(len(chunk))
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
