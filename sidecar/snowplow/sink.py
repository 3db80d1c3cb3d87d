"""Kafka side of the collector: dedup, one transaction per batch, topic setup, health.

``KafkaSink`` is blocking. It holds ``commit.parallel_transactions`` transactional
producers ("slots"), each driven from its own thread by the group committer, so one batch
can be produced while another waits for its commit marker; the ledger, which is not
thread-safe, is only touched under a lock. A batch goes:

1. dedup: ids already committed (ledger window, read to its end first when
   ``dedup.sync_each_batch``) or repeated inside the batch are skipped;
2. the fresh records plus one ledger record per fresh id are produced in one transaction;
3. after ``commit_transaction()`` returns, the ids enter the window.

So a tracker retry of an event that committed is answered 200 without writing it twice, and
an aborted transaction leaves nothing behind: neither events nor ledger ids.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from sidecar.common.avro import AvroEncoder, RegistryUnavailable
from sidecar.common.envelope import now_ms
from sidecar.common.errors import BridgeError
from sidecar.exactly_once.producer import OutRecord, TransactionalProducer
from sidecar.exactly_once.ledger import DedupLedger, RecentIds

from .avro_schema import ENVELOPE_SCHEMA
from .pipeline import Output
from .settings import CollectorSettings, Secrets

log = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 3.0


class SinkUnavailable(BridgeError):
    """Kafka did not take the batch; nothing of it is visible. Answer 503."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    duplicates: frozenset[int]  # indices into the batch's outputs that were skipped
    written: int
    phases: tuple[tuple[str, float], ...] = ()  # (dedup|produce|commit, seconds)


class KafkaSink:
    def __init__(self, settings: CollectorSettings, secrets: Secrets | None = None) -> None:
        self.settings = settings
        secrets = secrets or Secrets()
        self.client_config = secrets.kafka_client_config(settings)
        self.encoder: AvroEncoder | None = None
        if settings.topics.uses_avro:
            info = secrets.schema_registry_user_info
            self.encoder = AvroEncoder(settings.schema_registry.url,
                                       user_info=info.get_secret_value() if info else None)
        self._encoder_lock = threading.Lock()
        self.slots = settings.commit.parallel_transactions
        self.producers: list[TransactionalProducer | None] = [None] * self.slots
        self.ledger: DedupLedger | None = None
        self._ledger_lock = threading.Lock()
        d = settings.dedup
        self.window = RecentIds(d.window_events, d.max_age_s * 1000)
        self._admin = AdminClient(self.client_config)

    # -- setup ----------------------------------------------------------------------------

    def start(self) -> None:
        """Topics, producer (fences and aborts a predecessor's open transaction), ledger."""
        if self.settings.kafka.create_topics:
            self.ensure_topics()
        for slot in range(self.slots):
            if self.producers[slot] is None:
                self._new_producer(slot)
        d = self.settings.dedup
        if d.ledger_topic and self.ledger is None:
            ledger = DedupLedger(self.client_config, d.ledger_topic,
                                 group_id=f"conveyor-ledger-{self.settings.transactional_id}",
                                 source="snowplow", window_events=d.window_events,
                                 max_age_s=d.max_age_s)
            if self.settings.kafka.create_topics:
                ledger.ensure_topic(partitions=d.ledger_partitions,
                                    replication_factor=self.settings.kafka.topic_replication_factor)
            # After init_transactions: our own dead predecessor's transaction is aborted by
            # then, so reading the ledger to its committed end cannot hang on it.
            ledger.start(timeout=max(d.sync_timeout_s, 30.0))
            self.ledger = ledger
            self.window = ledger.window

    def ensure_topics(self) -> None:
        k = self.settings.kafka
        wanted = self.settings.all_topics()
        existing = self._admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return
        futures = self._admin.create_topics(
            [NewTopic(t, num_partitions=k.topic_partitions,
                      replication_factor=k.topic_replication_factor) for t in missing],
            request_timeout=ADMIN_TIMEOUT_S)
        for topic, fut in futures.items():
            try:
                fut.result(ADMIN_TIMEOUT_S)
                log.info("snowplow.topic_created", extra={"topic": topic})
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise

    def transactional_id(self, slot: int) -> str:
        base = self.settings.transactional_id
        return base if self.slots == 1 else f"{base}-{slot}"

    def _new_producer(self, slot: int) -> None:
        old = self.producers[slot]
        if old is not None:
            with contextlib.suppress(Exception):
                old.close(1.0)
        k = self.settings.kafka
        conf: dict[str, object] = {**self.client_config,
                                   "transaction.timeout.ms": k.transaction_timeout_ms,
                                   "linger.ms": 1, **k.producer}
        producer = TransactionalProducer(conf, self.transactional_id(slot))
        producer.init()
        self.producers[slot] = producer

    def rebuild(self, slot: int = 0) -> None:
        """After a fatal error: a new producer with the same id (it fences the old one)."""
        self.producers[slot] = None
        self._new_producer(slot)

    # -- the batch --------------------------------------------------------------------------

    def commit(self, outputs: Sequence[Output], slot: int = 0) -> BatchResult:
        """Dedup and commit one batch on producer ``slot``; call from that slot's thread.

        The caller must not have the same event id in two slots' batches at once (the
        group committer defers such a retry until the first batch is decided).
        """
        producer = self.producers[slot]
        if producer is None:
            self._new_producer(slot)
            producer = self.producers[slot]
        assert producer is not None
        t0 = time.perf_counter()
        ids = [o.dedup_id for o in outputs if o.dedup_id]
        with self._ledger_lock:
            if self.ledger is not None and ids:
                already = self.ledger.seen(ids, sync=self.settings.dedup.sync_each_batch,
                                           timeout=self.settings.dedup.sync_timeout_s)
            else:
                already = self.window.seen(ids)
        records, fresh_ids, dups = plan_batch(outputs, already, self._encode)
        t1 = t2 = time.perf_counter()
        if records:
            if self.ledger is not None:
                records.extend(self.ledger.record(fresh_ids))
            producer.commit(records)
            t2 = time.perf_counter()
        with self._ledger_lock:
            if self.ledger is not None:
                self.ledger.remember(fresh_ids)
            else:
                at = now_ms()
                for i in fresh_ids:
                    self.window.add(i, at)
                self.window.expire(at)
        return BatchResult(frozenset(dups), len(outputs) - len(dups),
                           (("dedup", t1 - t0), ("transaction", t2 - t1)))

    def _encode(self, o: Output) -> bytes:
        if o.avro is None:
            return o.value
        if self.encoder is None:
            raise SinkUnavailable("an avro route without a schema registry client")
        try:
            with self._encoder_lock:
                return self.encoder.encode(o.topic, ENVELOPE_SCHEMA, o.avro)
        except RegistryUnavailable as exc:
            raise SinkUnavailable(str(exc)) from exc

    # -- ops ------------------------------------------------------------------------------

    def probe(self) -> bool:
        """Can we reach a broker? (Safe to call from any thread.)"""
        try:
            meta = self._admin.list_topics(timeout=PROBE_TIMEOUT_S)
        except KafkaException:
            return False
        return bool(meta.brokers)

    def check(self) -> dict[str, Any]:
        """For ``--check``: brokers, which of our topics exist."""
        meta = self._admin.list_topics(timeout=ADMIN_TIMEOUT_S)
        topics = [*self.settings.all_topics(),
                  *([self.settings.dedup.ledger_topic] if self.settings.dedup.ledger_topic else [])]
        return {"brokers": len(meta.brokers),
                "topics": {t: t in meta.topics for t in topics}}

    def close(self) -> None:
        for producer in self.producers:
            if producer is not None:
                with contextlib.suppress(Exception):
                    producer.close(5.0)
        if self.ledger is not None:
            self.ledger.close()



def plan_batch(outputs: Sequence[Output], already: set[str] | frozenset[str],
               encode: Callable[[Output], bytes] = lambda o: o.value,
               ) -> tuple[list[OutRecord], list[str], set[int]]:
    """(records to produce, their fresh ids, indices of duplicates) for one batch.

    A duplicate is an output whose id is already committed, or repeats an earlier output
    of the same batch (a tracker retry racing its original). Outputs without an id (bad
    rows of whole requests) are always written.
    """
    dups: set[int] = set()
    fresh_ids: list[str] = []
    records: list[OutRecord] = []
    batch_ids: set[str] = set()
    for i, o in enumerate(outputs):
        if o.dedup_id is not None:
            if o.dedup_id in already or o.dedup_id in batch_ids:
                dups.add(i)
                continue
            batch_ids.add(o.dedup_id)
            fresh_ids.append(o.dedup_id)
        records.append(OutRecord(o.topic, encode(o), o.key, o.headers))
    return records, fresh_ids, dups
