"""Kafka side of the collector: raw records in transactions, topic setup, health.

The collector writes nothing but raw records (``raw.py``) to the raw topic, so this sink
has no dedup, no schema registry and no routing: a batch of records is produced in one
transaction and returns once it is committed. Dedup by event id, routing and Avro happen
in enrich (``enrich/``), which reads the raw topic exactly once.

``RawSink`` is blocking. It holds ``commit.parallel_transactions`` transactional producers
("slots"), each driven from its own thread by the group committer, so one batch can be
produced while another waits for its commit marker.

``plan_batch`` (the dedup decision over a batch of outputs) lives here because both the
enrich writer and the test doubles use it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from sidecar.common.errors import BridgeError
from sidecar.exactly_once.producer import OutRecord, TransactionalProducer
from sidecar.exactly_once.topics import TopicCreator

from .pipeline import Output
from .settings import CollectorSettings, Secrets

log = logging.getLogger(__name__)

ADMIN_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 3.0
# Room left in a record for its headers (querystring, user agent, referer are each capped
# at 8 KB by the HTTP parser) and the record's own framing.
HEADER_ROOM_BYTES = 32_768


class SinkUnavailable(BridgeError):
    """Kafka did not take the batch; nothing of it is visible. Answer 503."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    duplicates: frozenset[int]  # indices into the batch's outputs that were skipped
    written: int
    phases: tuple[tuple[str, float], ...] = ()  # (phase, seconds)


class RawSink:
    def __init__(self, settings: CollectorSettings, secrets: Secrets | None = None) -> None:
        self.settings = settings
        secrets = secrets or Secrets()
        self.client_config = secrets.kafka_client_config(settings)
        self.slots = settings.commit.parallel_transactions
        self.producers: list[TransactionalProducer | None] = [None] * self.slots
        # The raw topic's max.message.bytes, learnt at start (None: unknown).
        self.topic_max_bytes: int | None = None
        self._admin = AdminClient(self.client_config)
        k = settings.kafka
        self._topics = TopicCreator(self.client_config, k.topic_partitions,
                                    k.topic_replication_factor)

    # -- setup ----------------------------------------------------------------------------

    def start(self) -> None:
        """The raw topic, then the producers (each fences a predecessor's open transaction)."""
        if self.settings.kafka.create_topics:
            self._topics.ensure({self.settings.raw.topic})
        self.topic_max_bytes = self._topic_max_bytes()
        for slot in range(self.slots):
            if self.producers[slot] is None:
                self._new_producer(slot)

    def _topic_max_bytes(self) -> int | None:
        """The raw topic's max.message.bytes. The producer is held to it (a record over it
        is refused at produce() with its index, before anything is sent, and no batch of
        small records can exceed it), and the collector sizes its records to fit."""
        topic = self.settings.raw.topic
        try:
            futures = self._admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)],
                                                   request_timeout=ADMIN_TIMEOUT_S)
            configs = next(iter(futures.values())).result(ADMIN_TIMEOUT_S)
            return int(configs["max.message.bytes"].value)
        except Exception as exc:   # unknown: the configured limits stand
            log.warning("snowplow.topic_limit_unknown", extra={"topic": topic,
                                                               "error": str(exc)})
            return None

    @property
    def record_limit(self) -> int | None:
        """The most a raw record's body may hold on this topic, or None when unknown."""
        if self.topic_max_bytes is None:
            return None
        room = self.topic_max_bytes - HEADER_ROOM_BYTES
        return room if room >= 1024 else max(256, self.topic_max_bytes // 2)

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
        if self.topic_max_bytes is not None:
            conf["message.max.bytes"] = min(int(conf.get("message.max.bytes", 1_000_000)),  # type: ignore[call-overload]
                                            self.topic_max_bytes)
        producer = TransactionalProducer(conf, self.transactional_id(slot))
        producer.init()
        self.producers[slot] = producer

    def rebuild(self, slot: int = 0) -> None:
        """After a fatal error: a new producer with the same id (it fences the old one)."""
        self.producers[slot] = None
        self._new_producer(slot)

    # -- the batch --------------------------------------------------------------------------

    def commit(self, outputs: Sequence[Output], slot: int = 0) -> BatchResult:
        """Commit one batch on producer ``slot``; call from that slot's thread. Raises what
        ``TransactionalProducer.commit`` raises (``RecordRejected`` names the output)."""
        producer = self.producers[slot]
        if producer is None:
            self._new_producer(slot)
            producer = self.producers[slot]
        assert producer is not None
        t0 = time.perf_counter()
        producer.commit([OutRecord(o.topic, o.value, o.key or None, o.headers)
                         for o in outputs])
        return BatchResult(frozenset(), len(outputs),
                           (("transaction", time.perf_counter() - t0),))

    # -- ops ------------------------------------------------------------------------------

    def probe(self) -> bool:
        """Can we reach a broker? (Safe to call from any thread.)"""
        try:
            meta = self._admin.list_topics(timeout=PROBE_TIMEOUT_S)
        except KafkaException:
            return False
        return bool(meta.brokers)

    def check(self, topics: Sequence[str] | None = None) -> dict[str, Any]:
        """For ``--check``: brokers, which of ``topics`` (default: the raw topic) exist."""
        meta = self._admin.list_topics(timeout=ADMIN_TIMEOUT_S)
        wanted = list(topics) if topics is not None else [self.settings.raw.topic]
        return {"brokers": len(meta.brokers), "topics": {t: t in meta.topics for t in wanted}}

    def close(self) -> None:
        for producer in self.producers:
            if producer is not None:
                with contextlib.suppress(Exception):
                    producer.close(5.0)


def plan_batch(outputs: Sequence[Output], already: set[str] | frozenset[str],
               encode: Callable[[Output], bytes] = lambda o: o.value,
               ) -> tuple[list[OutRecord], list[str], set[int]]:
    """(records to produce, their fresh ids, indices of duplicates) for one batch.

    A duplicate is an output whose id is already committed, or repeats an earlier output
    of the same batch (a tracker retry racing its original). Outputs without an id (bad
    rows of whole requests) are always written. ``records[i]`` is the i-th output that is
    not a duplicate.
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
        records.append(OutRecord(o.topic, encode(o), o.key or None, o.headers))
    return records, fresh_ids, dups
