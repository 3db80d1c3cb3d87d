"""A Kafka topic as one side of a reconciliation: the records of an event-time window, read
once, read_committed, and answered as ``TableReader`` answers for a table.

Which offsets hold the window is resolved from times with the replay's own helper
(``connectors.replay.offsets_at``): per partition, from the first record stamped at or after
``since`` to the first stamped at or after ``until + lateness``. A record is stamped when it
is produced, after its event time, so every record of the window is stamped at or after
``since``; ``lateness`` is how long after the window's end one may still reach Kafka (an
app that was offline). Records are then kept by their event time, not their stamp.

A window whose start retention has already deleted is refused (``NotRetained``): the topic
would look as if the table held rows it never had.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from connectors.replay import offsets_at

from .core import RowDigest, Summary
from .records import Landing, RecordSpec, Skip, parse

log = logging.getLogger(__name__)

# How long a read may see nothing at all before it gives up on a partition that has not
# reached its end (a broker gone mid-read).
IDLE_TIMEOUT_S = 60.0


class NotRetained(Exception):
    """Retention has deleted records of the window: the topic side would be incomplete."""


@dataclass(frozen=True)
class TopicSide:
    topic: str
    bootstrap: str
    registry_url: str | None = None
    spec: RecordSpec = field(default_factory=RecordSpec)
    lateness: timedelta = timedelta(hours=1)
    use_stamp_as_landed: bool = True     # late = stamped in Kafka more than the SLA after


@dataclass
class TopicStats:
    """What was read, so a report can say what the comparison rests on."""

    records: int = 0
    excluded: int = 0                       # left out on purpose (canaries)
    outside: int = 0                        # event time outside the window
    skipped: Counter[str] = field(default_factory=Counter)   # reason -> count
    partitions: list[dict[str, int]] = field(default_factory=list)

    @property
    def unreadable(self) -> int:
        return sum(self.skipped.values())

    def as_json(self) -> dict[str, object]:
        return {"records_read": self.records, "excluded": self.excluded,
                "outside_window": self.outside, "unreadable": self.unreadable,
                "unreadable_reasons": dict(self.skipped), "partitions": self.partitions}


class TopicReader:
    """``summaries`` reads the window (once); ``rows`` answers from what it read."""

    def __init__(self, side: TopicSide,
                 progress: Callable[[int, int], None] | None = None, *,
                 consumer: Any = None) -> None:
        self.side = side
        self.stats = TopicStats()
        self._progress = progress
        self._landing: Landing | None = None
        self._avro: Callable[[bytes], Any] | None = None
        self.consumer = consumer or Consumer({
            "bootstrap.servers": side.bootstrap,
            "group.id": f"conveyor-reconcile-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False, "enable.partition.eof": True,
            "isolation.level": "read_committed", "auto.offset.reset": "earliest",
            "log_level": 3})

    def close(self) -> None:
        self.consumer.close()

    def summaries(self, since: datetime, until: datetime, bucket: timedelta,
                  sla: timedelta, within: tuple[timedelta, list[int]] | None = None
                  ) -> dict[int, Summary]:
        """The first call reads the window; later ones (finer buckets, for the
        drill-down) answer from what it read."""
        if self._landing is None:
            self._landing = Landing(since, until, bucket, sla)
            self._read(self._landing)
            self.stats.outside = self._landing.outside
        return self._landing.summaries(bucket, within)

    def summaries_and_finer(self, since: datetime, until: datetime, bucket: timedelta,
                            finer: timedelta, sla: timedelta
                            ) -> tuple[dict[int, Summary], dict[int, Summary]]:
        coarse = self.summaries(since, until, bucket, sla)
        return coarse, self._read_first().summaries(finer)

    def ids(self, since: datetime, until: datetime, size: timedelta,
            indexes: list[int]) -> set[str]:
        return self._read_first().ids(size, indexes)

    def rows_of(self, since: datetime, until: datetime, bucket: timedelta,
                buckets: list[int], ids: set[str]) -> dict[int, list[RowDigest]]:
        return self._read_first().rows_of(buckets, ids)

    def rows(self, lo: datetime, hi: datetime) -> list[RowDigest]:
        return self._read_first().rows(lo, hi)

    def _read_first(self) -> Landing:
        assert self._landing is not None, "summaries() reads the window first"
        return self._landing

    def _decoder(self) -> Callable[[bytes], Any] | None:
        if self._avro is None and self.side.registry_url:
            from confluent_kafka.schema_registry import SchemaRegistryClient
            from confluent_kafka.schema_registry.avro import AvroDeserializer
            from confluent_kafka.serialization import MessageField, SerializationContext

            deserialize = AvroDeserializer(SchemaRegistryClient({"url": self.side.registry_url}))
            ctx = SerializationContext(self.side.topic, MessageField.VALUE)
            self._avro = lambda value: deserialize(value, ctx)
        return self._avro

    def _plan(self, landing: Landing) -> dict[int, tuple[int, int]]:
        """Per partition: [first offset, stop offset) of the window."""
        topic = self.side.topic
        meta = self.consumer.list_topics(topic, timeout=15).topics.get(topic)
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaException(f"topic {topic} not found")
        parts = sorted(meta.partitions)
        starts = offsets_at(self.consumer, topic, landing.since, parts)
        gone = [s.partition for s in starts if not s.retained]
        if gone:
            raise NotRetained(f"{topic}: retention has deleted records stamped after "
                              f"{landing.since.isoformat()} in partitions {gone}")
        stops = {s.partition: s.offset for s in offsets_at(
            self.consumer, topic, landing.until + self.side.lateness, parts)}
        plan = {s.partition: (s.offset, stops[s.partition]) for s in starts}
        self.stats.partitions = [{"partition": p, "from": a, "to": b}
                                 for p, (a, b) in sorted(plan.items())]
        return plan

    def _read(self, landing: Landing) -> None:
        plan = {p: r for p, r in self._plan(landing).items() if r[1] > r[0]}
        total = sum(b - a for a, b in plan.values())
        topic, spec, stats = self.side.topic, self.side.spec, self.stats
        if not plan:
            return
        self.consumer.assign([TopicPartition(topic, p, a) for p, (a, _) in plan.items()])
        pending = set(plan)
        done_offsets = dict.fromkeys(plan, 0)
        decode = self._decoder()
        last_seen = time.monotonic()
        try:
            while pending:
                msgs = self.consumer.consume(1000, timeout=0.5)
                if not msgs and time.monotonic() - last_seen > IDLE_TIMEOUT_S:
                    raise KafkaException(f"{topic}: nothing read for {IDLE_TIMEOUT_S:.0f}s "
                                         f"from partitions {sorted(pending)}")
                for msg in msgs:
                    last_seen = time.monotonic()
                    p = msg.partition()
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.discard(p)
                            continue
                        raise KafkaException(err)
                    if p not in pending:
                        continue
                    offset = msg.offset() or 0
                    a, stop = plan[p]
                    if offset >= stop:
                        pending.discard(p)
                        continue
                    done_offsets[p] = offset + 1 - a
                    if offset + 1 >= stop:
                        pending.discard(p)
                    stats.records += 1
                    self._take(landing, spec, msg.value(), msg.timestamp()[1], decode)
                if self._progress is not None:
                    self._progress(sum(done_offsets.values()), total)
        finally:
            self.consumer.unassign()

    def _take(self, landing: Landing, spec: RecordSpec, value: bytes | None, stamp_ms: int,
              decode: Callable[[bytes], Any] | None) -> None:
        stamp = (datetime.fromtimestamp(stamp_ms / 1000, UTC)
                 if self.side.use_stamp_as_landed and stamp_ms > 0 else None)
        r = parse(value, spec, stamp, decode)
        if r is None:
            self.stats.excluded += 1
        elif isinstance(r, Skip):
            self.stats.skipped[r.reason] += 1
        else:
            landing.add(r)
