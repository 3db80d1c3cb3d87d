"""Enrich's Kafka writes: dedup by event id, Avro, and the transaction with the offsets.

One batch goes:

1. Avro encoding of the outputs whose route says avro, before the transaction (a value the
   schema refuses is a bad row, not an aborted batch; a registry that does not answer is).
   The registry is asked once per topic; later events are written behind the framing it
   gave (``avro.TopicAvro``);
2. dedup: ids already committed (ledger window, read to its end first when
   ``dedup.sync_each_batch``) or repeated inside the batch are skipped;
3. the fresh records, one ledger record per fresh id, and the consumer's next offsets
   (``send_offsets_to_transaction``) in one transaction: the raw records count as read
   exactly when their results are visible, and not before;
4. after the commit, the ids enter the window.

So a tracker retry of an event that landed is skipped, a crash anywhere replays the batch
from the committed offsets without a trace of the aborted attempt, and nothing lands twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition

from sidecar.common.avro import AvroEncoder, RegistryUnavailable
from sidecar.common.envelope import now_ms
from sidecar.exactly_once.ledger import DedupLedger, RecentIds
from sidecar.exactly_once.producer import OutRecord, RecordRejected

from ..pipeline import Output
from ..sink import BatchResult, SinkUnavailable, plan_batch
from .avro import TopicAvro

log = logging.getLogger(__name__)

_AVRO_HEADERS = (("source", b"snowplow"), ("content-type", b"application/vnd.confluent.avro"))


class OutputRejected(RecordRejected):
    """Kafka refused output ``output_index`` of the batch for good (nothing is visible)."""

    def __init__(self, output_index: int, reason: str) -> None:
        super().__init__(output_index, reason)
        self.output_index = output_index


@dataclass(frozen=True, slots=True)
class Prepared:
    outputs: list[Output]
    values: list[bytes]            # the bytes to write per output (Avro-encoded or JSON)
    unencodable: dict[int, str]    # output index -> why the Avro encoder refused it
    # output index -> its extra records (Snowplow's layout), encoded
    extras: dict[int, list[OutRecord]] = field(default_factory=dict)


class EnrichWriter:
    """Not thread-safe: the enrich loop calls it from its one thread."""

    def __init__(self, commit: Callable[..., None], ledger: DedupLedger | None,
                 window: RecentIds, encoder: AvroEncoder | None, *,
                 sync_each_batch: bool = False, sync_timeout_s: float = 10.0,
                 ensure_topics: Callable[[set[str]], object] | None = None) -> None:
        self._commit = commit   # TransactionalProducer.commit
        self.ledger = ledger
        self.window = ledger.window if ledger is not None else window
        self.encoder = encoder
        self._avro = TopicAvro(encoder) if encoder is not None else None
        self.sync_each_batch = sync_each_batch
        self.sync_timeout_s = sync_timeout_s
        # Creates topics that appear with the data (an entity schema's first entity);
        # raises when Kafka does not answer. None: they exist (or Kafka creates them).
        self._ensure_topics = ensure_topics
        self._topics: set[str] = set()

    def prepare(self, outputs: list[Output]) -> Prepared:
        """Encode Avro outputs. RegistryUnavailable propagates (retry the batch later)."""
        values: list[bytes] = []
        bad: dict[int, str] = {}
        extras: dict[int, list[OutRecord]] = {}
        self._create_topics(outputs)
        for i, o in enumerate(outputs):
            if o.avro is None and not o.extra:
                values.append(o.value)
                continue
            if self._avro is None:
                raise SinkUnavailable("an avro output without a schema registry client")
            try:
                values.append(o.value if o.avro is None else self._avro.encode(o.topic, o.avro))
                if o.extra:
                    extras[i] = [OutRecord(x.topic, self._avro.encode(x.topic, x.value, x.schema),
                                           x.key, _AVRO_HEADERS) for x in o.extra]
            except RegistryUnavailable:
                raise
            except Exception as exc:   # the value does not fit the schema: that event's fault
                if len(values) == i:
                    values.append(o.value)
                bad[i] = f"{type(exc).__name__}: {exc}"[:500]
        return Prepared(outputs, values, bad, extras)

    def _create_topics(self, outputs: list[Output]) -> None:
        new = {x.topic for o in outputs for x in o.extra} - self._topics
        if new and self._ensure_topics is not None:
            try:
                self._ensure_topics(new)
            except Exception as exc:
                raise SinkUnavailable(f"creating topics {sorted(new)}: {exc}") from exc
        self._topics |= new

    def commit(self, prepared: Prepared, offsets: list[TopicPartition],
               group_metadata: Any) -> BatchResult:
        """Dedup and commit; raises OutputRejected, TransactionAborted, FatalKafkaError,
        LedgerUnavailable (all: nothing is visible, offsets not moved)."""
        outputs = prepared.outputs
        t0 = time.perf_counter()
        ids = [o.dedup_id for o in outputs if o.dedup_id]
        if self.ledger is not None and ids:
            already = self.ledger.seen(ids, sync=self.sync_each_batch,
                                       timeout=self.sync_timeout_s)
        else:
            already = self.window.seen(ids)
        values = prepared.values
        by_output = {id(o): values[i] for i, o in enumerate(outputs)}
        records, fresh_ids, dups = plan_batch(outputs, already, lambda o: by_output[id(o)])
        written = [i for i in range(len(outputs)) if i not in dups]
        # Each written output's extra records after all outputs, so that records[i] is
        # still written[i]; owners maps a refused extra back to its output.
        owners: list[int] = []
        for i in written:
            for rec in prepared.extras.get(i, ()):
                records.append(rec)
                owners.append(i)
        if self.ledger is not None:
            records.extend(self.ledger.record(fresh_ids))
        t1 = time.perf_counter()
        try:
            if records or offsets:   # all duplicates and no offsets: nothing to write
                self._commit(records, offsets=offsets, group_metadata=group_metadata)
        except RecordRejected as exc:
            if exc.index is not None and exc.index < len(written):
                raise OutputRejected(written[exc.index], exc.reason) from exc
            if exc.index is not None and exc.index < len(written) + len(owners):
                raise OutputRejected(owners[exc.index - len(written)], exc.reason) from exc
            raise
        t2 = time.perf_counter()
        if self.ledger is not None:
            self.ledger.remember(fresh_ids)
        else:
            at = now_ms()
            self.window.add_many(fresh_ids, at)
            self.window.expire(at)
        return BatchResult(frozenset(dups), len(written),
                           (("dedup", t1 - t0), ("transaction", t2 - t1)))


def next_offsets(messages: Sequence[Any]) -> list[TopicPartition]:
    """Per partition, the offset after the last of ``messages``: what the group commits."""
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic(), m.partition())
        if m.offset() + 1 > last.get(key, -1):
            last[key] = m.offset() + 1
    return [TopicPartition(t, p, o) for (t, p), o in sorted(last.items())]


def first_offsets(messages: Sequence[Any]) -> list[TopicPartition]:
    """Per partition, the first offset of ``messages``: where to seek back to after an abort."""
    first: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic(), m.partition())
        if key not in first or m.offset() < first[key]:
            first[key] = m.offset()
    return [TopicPartition(t, p, o) for (t, p), o in sorted(first.items())]


__all__ = [
    "EnrichWriter",
    "OutRecord",
    "OutputRejected",
    "Prepared",
    "first_offsets",
    "next_offsets",
]
