"""The dedup ledger: which event_ids are already committed in Kafka, shared by all instances.

A bridge that commits a transaction and then dies before acking its input (RabbitMQ ack,
HTTP 200) gets the same events again. To make that redelivery a no-op, every transaction
also writes one small record per event_id to a ledger topic (key = event_id), and before
deciding about a batch the bridge reads the ledger (read_committed) up to its end.

Usage (inside the loop that owns the transactional producer)::

    ledger = DedupLedger(client_config, "conveyor.ledger.rabbitmq.orders",
                         group_id="conveyor-ledger-orders-host1", source="rabbitmq:orders")
    ledger.ensure_topic()
    ledger.start()                                      # loads the window, reads to the end
    already = ledger.seen(ids, sync=any_redelivered)    # -> set of committed ids
    records = routed + ledger.record(fresh_ids)         # same transaction
    producer.commit(records)
    ledger.remember(fresh_ids)                          # visible at once to this instance

**Reading to the end** (``sync``): we take the partitions' *uncommitted* end offsets (high
watermarks) first, then consume read_committed until the committed end has passed them. Any
transaction that had written a ledger record before the sync began is thereby decided
(committed: we see its ids; aborted: it never happened), including one still open in another
instance. This is one ListOffsets round trip plus the fetch of what is new.

**The window**: the ledger remembers the last ``window_events`` ids it has seen (all
instances together, in ledger order) that are at most ``max_age_s`` old. On start it reads
back the last ``window_events`` records of each partition, so time spent down does not eat
the window: a redelivery is recognised as long as fewer than ``window_events`` events of the
stream were committed between the original commit and the redelivery, and no more than
``max_age_s`` passed. Past the window, a redelivered event is produced again (the only way
to get a duplicate), and sinks that upsert by event_id still absorb it. Memory is roughly
``window_events`` x 140 bytes (40-character ids).

The topic is created ``cleanup.policy=compact,delete`` with ``retention.ms`` = the age limit:
ids are unique, so compaction alone would keep every one forever.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from sidecar.common.envelope import now_ms
from sidecar.common.errors import BridgeError, TransactionAborted

from .producer import OutRecord
from .topics import create_topics

log = logging.getLogger(__name__)

CONSUME_BATCH = 5000
POLL_TIMEOUT_S = 0.05
METADATA_TIMEOUT_S = 10.0
# The broker does not end a read_committed long-poll when a transaction commits, so a sync
# can wait this long for records that are already committed: keep it short. The cost is
# an idle fetch per partition every few milliseconds, a few hundred bytes each.
LEDGER_FETCH_WAIT_MS = 5


class LedgerUnavailable(BridgeError):
    """The ledger could not be read to its end in time; decide nothing, retry later."""


class RecentIds:
    """The window: ids in arrival order, bounded by count and age (pure, no I/O).

    Ids live in a set (membership) and in chunks of ids that arrived together with one
    timestamp (order and age): about 140 bytes per 40-character id, where an OrderedDict
    of id -> timestamp takes 215.
    """

    CHUNK = 4096

    def __init__(self, max_ids: int, max_age_ms: int | None = None) -> None:
        self.max_ids = max_ids
        self.max_age_ms = max_age_ms
        self._ids: set[str] = set()
        self._chunks: deque[tuple[int, list[str]]] = deque()

    def add(self, event_id: str, at_ms: int) -> None:
        self.add_many((event_id,), at_ms)

    def add_many(self, event_ids: Iterable[str], at_ms: int) -> None:
        ids = self._ids
        chunks = self._chunks
        for e in event_ids:
            if e in ids:
                continue
            ids.add(e)
            if not chunks or chunks[-1][0] != at_ms or len(chunks[-1][1]) >= self.CHUNK:
                chunks.append((at_ms, []))
            chunks[-1][1].append(e)
        overflow = len(ids) - self.max_ids
        while overflow > 0:
            _, oldest = chunks[0]
            cut = oldest[:overflow]
            ids.difference_update(cut)
            overflow -= len(cut)
            if len(cut) == len(oldest):
                chunks.popleft()
            else:
                del oldest[:len(cut)]

    def evict_older_than(self, cutoff_ms: int) -> int:
        n = 0
        while self._chunks and self._chunks[0][0] < cutoff_ms:
            _, oldest = self._chunks.popleft()
            self._ids.difference_update(oldest)
            n += len(oldest)
        return n

    def expire(self, now: int) -> int:
        return 0 if self.max_age_ms is None else self.evict_older_than(now - self.max_age_ms)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def seen(self, event_ids: Iterable[str]) -> set[str]:
        return {e for e in event_ids if e in self._ids}


class DedupLedger:
    """A compacted topic of committed event_ids plus the in-memory window over it.

    Not thread-safe: use it from the thread that runs the transactions.
    """

    def __init__(self, client_config: Mapping[str, Any], topic: str, *, group_id: str,
                 source: str = "", window_events: int = 500_000,
                 max_age_s: int = 7 * 24 * 3600) -> None:
        self.topic = topic
        self._client_config = dict(client_config)
        self._source = source.encode()
        self._max_age_ms = max_age_s * 1000
        self.window = RecentIds(window_events, self._max_age_ms)
        common = {**self._client_config, "group.id": group_id, "enable.auto.commit": False,
                  "enable.auto.offset.store": False}
        self._consumer = Consumer({**common, "isolation.level": "read_committed",
                                   "enable.partition.eof": True,
                                   "auto.offset.reset": "earliest",
                                   "fetch.wait.max.ms": LEDGER_FETCH_WAIT_MS})
        # Only asked for uncommitted high watermarks (see ``sync``); never consumes. While
        # Kafka is down it retries its connection every few tens of milliseconds and logs
        # each try at error level (thousands of lines a minute, the same as the consumer's
        # few): its own failures reach us as LedgerUnavailable, so it logs only critical.
        self._probe = Consumer({**common, "isolation.level": "read_uncommitted",
                                "log_level": 2})
        self._partitions: list[int] = []
        self._eof: dict[int, int] = {}
        self._next: dict[int, int] = {}

    # -- setup ----------------------------------------------------------------------------

    def ensure_topic(self, partitions: int = 1, replication_factor: int = -1,
                     timeout: float = 30.0) -> None:
        """Create the ledger topic if it does not exist (idempotent)."""
        admin = AdminClient(self._client_config)
        topic = NewTopic(self.topic, num_partitions=partitions,
                         replication_factor=replication_factor,
                         config={"cleanup.policy": "compact,delete",
                                 "retention.ms": str(self._max_age_ms)})
        try:
            refused = create_topics(admin, [topic], timeout)
        except TransactionAborted as exc:  # no answer: Kafka is (re)starting
            raise LedgerUnavailable(f"cannot create ledger topic {self.topic}: {exc}") from exc
        if refused:
            raise LedgerUnavailable(f"cannot create ledger topic {self.topic}: "
                                    f"{refused[self.topic]}")

    def start(self, timeout: float = 60.0, *, to_end: bool = True) -> None:
        """Assign every partition at ``end - window_events`` and read to the end (or, with
        ``to_end=False``, only start fetching: the next ``seen(sync=True)`` reads on)."""
        try:
            meta = self._consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            raise LedgerUnavailable(f"ledger metadata: {exc}") from exc
        tmeta = meta.topics.get(self.topic)
        if tmeta is None or tmeta.error is not None or not tmeta.partitions:
            raise LedgerUnavailable(f"ledger topic {self.topic} does not exist")
        self._partitions = sorted(tmeta.partitions)
        assignment = []
        for p, (low, high) in self._watermarks(timeout).items():
            # Never below the log start (retention deletes the oldest ids): an offset out of
            # range would make the consumer jump to the end and load an empty window.
            start = max(high - self.window.max_ids, low) if high > 0 else OFFSET_BEGINNING
            assignment.append(TopicPartition(self.topic, p, start))
        self._consumer.assign(assignment)
        if not to_end:
            return
        started = time.monotonic()
        self.sync(timeout)
        log.info("ledger.loaded", extra={"topic": self.topic, "ids": len(self.window),
                                         "seconds": round(time.monotonic() - started, 2)})

    # -- the API ------------------------------------------------------------------------

    def seen(self, event_ids: Iterable[str], *, sync: bool = True,
             timeout: float = 30.0) -> set[str]:
        """The subset of ``event_ids`` already committed. With ``sync``, first read the
        ledger to its end (needed whenever a redelivery is possible); without, use what is
        already fetched (enough to catch duplicates published twice in a short time)."""
        if sync:
            self.sync(timeout)
        else:
            self.poll()
        return self.window.seen(event_ids)

    def record(self, event_ids: Iterable[str]) -> list[OutRecord]:
        """Ledger records for ``event_ids``, to produce in the same transaction."""
        return [OutRecord(self.topic, self._source or b"1", e.encode()) for e in event_ids]

    def remember(self, event_ids: Iterable[str]) -> None:
        """Call after the transaction committed; saves waiting for our own records."""
        self.window.add_many(event_ids, now_ms())

    def poll(self) -> None:
        """Take in whatever the consumer has fetched, without waiting."""
        while True:
            msgs = self._consumer.consume(CONSUME_BATCH, timeout=0)
            if not msgs:
                break
            self._take(msgs)
        self.window.expire(now_ms())

    def sync(self, timeout: float = 30.0) -> None:
        """Read to the committed end as of now (see the module docstring)."""
        deadline = time.monotonic() + timeout
        targets = self._high_watermarks(timeout)
        pending = {p for p, high in targets.items() if self._reached(p) < high}
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LedgerUnavailable(
                    f"ledger {self.topic} not read to its end within {timeout:.0f}s "
                    f"(partitions {sorted(pending)})")
            # consume(n, timeout) waits until it has n messages or the timeout passes: take
            # what is there at once, else wait for the first thing to arrive (record or EOF).
            msgs = self._consumer.consume(CONSUME_BATCH, timeout=0)
            if not msgs:
                msgs = self._consumer.consume(1, timeout=min(left, POLL_TIMEOUT_S))
            self._take(msgs)
            pending = {p for p in pending if self._reached(p) < targets[p]}
        self.poll()

    def close(self) -> None:
        for c in (self._consumer, self._probe):
            with contextlib.suppress(KafkaException, RuntimeError):
                c.close()

    # -- internals ----------------------------------------------------------------------

    def _reached(self, p: int) -> int:
        # A transaction's commit marker takes an offset but is never handed to us, so the
        # position after the last id can sit one short of the end; the EOF event does not.
        return max(self._eof.get(p, -1), self._next.get(p, -1))

    def _take(self, msgs: list[Any]) -> None:
        # One window chunk per consume call, stamped with its newest record's time: age
        # eviction is per chunk, a few milliseconds of skew at most.
        ids: list[str] = []
        newest = 0
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    self._eof[m.partition()] = max(self._eof.get(m.partition(), -1), m.offset())
                    continue
                if err.fatal():
                    raise LedgerUnavailable(f"ledger consumer: {err.str()}")
                log.warning("ledger.consume_error", extra={"error": err.name()})
                continue
            key = m.key()
            if key is not None:
                ids.append(key.decode("utf-8", "replace"))
                newest = max(newest, m.timestamp()[1])
            self._next[m.partition()] = m.offset() + 1
        if ids:
            self.window.add_many(ids, newest if newest > 0 else now_ms())

    def _refresh_probe_metadata(self) -> None:
        """Ask the broker for the ledger topic's metadata again.

        The probe consumer has no assignment, so librdkafka never refreshes the topic on
        its own: metadata cached while Kafka was starting (topic without partitions or
        leader) would make every later watermark query fail with "Unknown partition",
        long after Kafka is back. The caller retries after this."""
        try:
            self._probe.list_topics(self.topic, timeout=METADATA_TIMEOUT_S)
        except KafkaException as exc:
            log.debug("ledger.metadata_refresh_failed", extra={"error": str(exc)})

    def _high_watermarks(self, timeout: float) -> dict[int, int]:
        return {p: high for p, (_, high) in self._watermarks(timeout).items()}

    def _watermarks(self, timeout: float) -> dict[int, tuple[int, int]]:
        """(log start, uncommitted end) per partition, asked of the broker now."""
        out = {}
        for p in self._partitions or [0]:
            try:
                low, high = self._probe.get_watermark_offsets(TopicPartition(self.topic, p),
                                                              timeout=timeout, cached=False)
            except KafkaException as exc:
                self._refresh_probe_metadata()
                raise LedgerUnavailable(f"ledger end offsets: {exc.args[0].str()}") from exc
            out[p] = (low, high)
        return out
