"""Recovery's Kafka side: the bad rows of a window, and the transaction that writes what
they became, exactly once across runs.

Why recovery writes the good events itself instead of putting raw records back on the raw
topic for the running enrich: enrich's dedup ledger holds the event id of every output it
wrote, bad rows of single events included, so the running enrich would skip a replayed
event as a duplicate of its own bad row. Recovery therefore runs enrich's core in process
(the same code and settings) and commits the good events, in enrich's writer, together with
their ids in a ledger of its own (``<dedup.ledger_topic>.recovered``): an event recovered
once is skipped by every later run, and a run that dies before its commit left nothing
visible. Runs share one transactional id, so a new run fences one still running and reads
the ledger only after that, seeing everything the older one committed.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from connectors.replay import OffsetAt, offsets_at
from sidecar.exactly_once.ledger import DedupLedger, LedgerUnavailable, RecentIds
from sidecar.exactly_once.producer import TransactionalProducer
from sidecar.exactly_once.topics import TopicCreator

from ..enrich.writer import EnrichWriter, Prepared
from ..pipeline import Output
from ..settings import CollectorSettings
from ..sink import BatchResult

DEFAULT_LEDGER = "conveyor.ledger.snowplow"
READ_TIMEOUT_S = 120.0
POLL_S = 0.5


class RetentionGone(Exception):
    """Kafka no longer holds the start of the window on some partitions."""

    def __init__(self, lost: list[OffsetAt]) -> None:
        super().__init__(", ".join(f"partition {o.partition} starts at offset {o.log_start}"
                                   for o in lost))
        self.lost = lost


def ledger_topic(settings: CollectorSettings) -> str:
    return f"{settings.dedup.ledger_topic or DEFAULT_LEDGER}.recovered"


def transactional_id(settings: CollectorSettings) -> str:
    # One per pipeline (enrich's group), the same for every run: see the module docstring.
    return f"conveyor-snowplow-recover-{settings.enrich.group_id}"


class BadRowWindow:
    """The committed records of ``topic`` stamped in [since, until) (until: the end as of
    opening), read in batches so that memory is bounded whatever the window's size.
    Opening resolves the window and refuses it (``RetentionGone``) before anything is
    read. Use as a context manager."""

    def __init__(self, client_config: dict[str, Any], topic: str, since: datetime,
                 until: datetime | None) -> None:
        self.topic = topic
        self._consumer = Consumer({
            **client_config, "group.id": "conveyor-snowplow-recover-reader",
            "enable.auto.commit": False, "isolation.level": "read_committed",
            "enable.partition.eof": True, "auto.offset.reset": "earliest"})
        try:
            meta = self._consumer.list_topics(topic, timeout=15).topics.get(topic)
            if meta is None or meta.error is not None:
                raise KafkaException(f"topic {topic} not found")
            partitions = sorted(meta.partitions)
            self.starts = offsets_at(self._consumer, topic, since, partitions)
            lost = [o for o in self.starts if not o.retained]
            if lost:
                raise RetentionGone(lost)
            if until is None:
                self.stops = {o.partition: o.end for o in self.starts}
            else:
                self.stops = {o.partition: o.offset
                              for o in offsets_at(self._consumer, topic, until, partitions)}
        except BaseException:
            self._consumer.close()
            raise

    def __enter__(self) -> BadRowWindow:
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self._consumer.close()

    def as_json(self) -> dict[str, Any]:
        return {"partitions": [{"partition": o.partition, "from": o.offset,
                                "to": self.stops[o.partition]} for o in self.starts]}

    def batches(self, size: int, timeout: float = READ_TIMEOUT_S
                ) -> Iterator[list[bytes | None]]:
        """The window's values, at most ``size`` at a time, until every partition reached
        its stop (or its committed end: what is still in an open transaction is left)."""
        pending = {o.partition for o in self.starts if o.offset < self.stops[o.partition]}
        if not pending:
            return
        self._consumer.assign([TopicPartition(self.topic, o.partition, o.offset)
                               for o in self.starts if o.partition in pending])
        deadline = time.monotonic() + timeout
        while pending:
            if time.monotonic() > deadline:
                raise KafkaException(f"{self.topic} partitions {sorted(pending)} not read "
                                     f"to the end of the window in {timeout:.0f}s")
            batch: list[bytes | None] = []
            for msg in self._consumer.consume(size, timeout=POLL_S):
                p = msg.partition()
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(p)
                        continue
                    raise KafkaException(err)
                offset = msg.offset() or 0
                if p not in pending or offset >= self.stops[p]:
                    pending.discard(p)
                    continue
                batch.append(msg.value())
                if offset + 1 >= self.stops[p]:
                    pending.discard(p)
            if batch:
                deadline = time.monotonic() + timeout   # progress: the limit is per batch
                yield batch


class RecoveryWriter:
    """The recovery ledger (read to its end), and with ``write``, the transactional
    producer and enrich's writer. Use as a context manager."""

    def __init__(self, settings: CollectorSettings, client_config: dict[str, Any], *,
                 write: bool) -> None:
        self.settings = settings
        self.client_config = client_config
        self.write = write
        self.topic = ledger_topic(settings)
        self.producer: Any = None
        self.ledger: DedupLedger | None = None
        self.writer: EnrichWriter | None = None

    def __enter__(self) -> RecoveryWriter:
        s = self.settings
        if self.write:
            conf: dict[str, object] = {**self.client_config, "linger.ms": 5,
                                       "transaction.timeout.ms": s.kafka.transaction_timeout_ms,
                                       **s.kafka.producer}
            self.producer = TransactionalProducer(conf, transactional_id(s))
            self.producer.init()   # fences a run still going, before the ledger is read
        ledger: DedupLedger | None = DedupLedger(self.client_config, self.topic,
                             group_id="conveyor-snowplow-recover-ledger", source="recovery",
                             window_events=max(s.dedup.window_events, 1000),
                             max_age_s=s.dedup.max_age_s * 7)
        assert ledger is not None
        try:
            if self.write and s.kafka.create_topics:
                ledger.ensure_topic(replication_factor=s.kafka.topic_replication_factor)
            ledger.start(timeout=60)
        except LedgerUnavailable:
            ledger.close()
            if self.write:
                raise
            ledger = None   # dry run before any recovery: nothing recovered yet
        self.ledger = ledger
        if self.write:
            encoder = None
            if s.uses_avro:
                from sidecar.common.avro import AvroEncoder

                from ..settings import Secrets
                info = Secrets().schema_registry_user_info
                encoder = AvroEncoder(s.schema_registry.url,
                                      user_info=info.get_secret_value() if info else None)
            creator = TopicCreator(self.client_config, s.kafka.topic_partitions,
                                   s.kafka.topic_replication_factor) \
                if s.kafka.create_topics else None
            self.writer = EnrichWriter(self.producer.commit, ledger,
                                       RecentIds(1000), encoder, sync_each_batch=True,
                                       sync_timeout_s=s.dedup.sync_timeout_s,
                                       ensure_topics=creator.ensure if creator else None)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.ledger is not None:
            with contextlib.suppress(Exception):
                self.ledger.close()
        if self.producer is not None:
            with contextlib.suppress(Exception):
                self.producer.close(5.0)

    def already(self, outputs: Sequence[Output]) -> set[str]:
        ids = [o.dedup_id for o in outputs if o.dedup_id]
        return self.ledger.seen(ids, sync=True) if self.ledger is not None else set()

    def commit(self, outputs: list[Output]) -> tuple[BatchResult, dict[int, str]]:
        """Write ``outputs`` not recovered before, with their ledger ids, in one
        transaction. Also returns the outputs the Avro encoder refused (index -> why),
        which are left out."""
        assert self.writer is not None
        prepared = self.writer.prepare(outputs)
        refused = dict(prepared.unencodable)
        if refused:
            keep = [i for i in range(len(outputs)) if i not in refused]
            prepared = Prepared([outputs[i] for i in keep], [prepared.values[i] for i in keep],
                                {})
        return self.writer.commit(prepared, [], None), refused
