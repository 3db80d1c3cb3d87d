"""Kafka and Connect side of a scrape: sink groups, their committed offsets, the log's
bounds, and the timestamp of the record each group reads next.

Per scrape: one Connect listing (cached for ``metadata_ttl``), one committed-offsets request
per group, two ListOffsets requests for every partition (earliest, last stable), and one read
per partition that is behind *and* whose committed offset moved since the last scrape: the
timestamp of the record at an offset never changes, so it is cached.

Only librdkafka's consumer API is used, never its AdminClient: the admin requests
ListConsumerGroupOffsets and ListOffsets abort the whole process on an assertion
(``rd_kafka_enq_once_del_source_return: eonce->refcnt > 0``, librdkafka issues 3663 and
4605, open) when a broker restarts under them, which killed this exporter at four of five
Kafka restarts. A consumer per sink group (it never subscribes, so it never joins the group)
reads the committed offsets; ``offsets_for_times`` with Kafka's special timestamps -2 and -1
reads the log start and the last stable offset (the probe is read_committed).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from connectors.replay import ReplayRefused, sink_topics
from sidecar.exactly_once.producer import kafka_error

from .core import PartitionState, included

log = logging.getLogger(__name__)

# Bounds the timestamp cache: one entry per (topic, partition, offset) a group sat at.
STAMP_CACHE_SIZE = 10_000
# Bounds the committed-offset readers: one consumer (a few threads) per sink group.
GROUP_READERS = 64
# A request with less time than this left in the scrape's budget is not sent.
MIN_REQUEST_S = 0.05
# ListOffsets' special timestamps: the log start offset and the end (the last stable offset
# for a read_committed client).
EARLIEST, LATEST = -2, -1
# Errors that say Kafka itself is not there, not that one request was refused.
UNREACHABLE = {KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
               KafkaError._WAIT_COORD, KafkaError.COORDINATOR_NOT_AVAILABLE,
               KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS}


class SourceDown(Exception):
    """A source (Kafka, Connect, PostgreSQL) did not answer; the scrape reports it as down."""


class KafkaUnreachable(SourceDown):
    """Kafka did not answer at all: the scrape stops asking it (one timeout, not one per
    sink) and reports it as down."""


def kafka_failure(what: str, exc: Exception) -> SourceDown:
    if isinstance(exc, KafkaException) and kafka_error(exc).code() in UNREACHABLE:
        return KafkaUnreachable(f"{what}: {kafka_error(exc).str()}")
    return SourceDown(f"{what}: {exc}")


@dataclass(frozen=True)
class Sink:
    connector: str
    group: str
    config: dict[str, str]
    # Connect's status of the connector and of each task (RUNNING, PAUSED, STOPPED,
    # FAILED, UNASSIGNED, RESTARTING), as of the listing; "" when Connect gave none.
    state: str = ""
    task_states: tuple[str, ...] = ()


@dataclass(frozen=True)
class PartitionReading:
    connector: str
    group: str
    topic: str
    partition: int
    state: PartitionState
    next_record_ms: int | None   # None: caught up, or nothing committed before the end
    known: bool = True           # False: the record was not read in time; lag unknown


class Cached:
    """A value recomputed at most every ``ttl`` seconds (and on ``invalidate``)."""

    def __init__(self, load: Callable[[], Any], ttl: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._load, self._ttl, self._clock = load, ttl, clock
        self._value: Any = None
        self._at: float | None = None

    def get(self) -> Any:
        now = self._clock()
        if self._at is None or now - self._at >= self._ttl:
            self._value = self._load()
            self._at = now
        return self._value

    def invalidate(self) -> None:
        self._at = None


def list_sinks(connect_url: str, patterns: list[str], timeout: float) -> list[Sink]:
    """Sink connectors Connect knows (running, paused, stopped or failed): name, group,
    config, and the connector's and its tasks' states."""
    try:
        r = httpx.get(f"{connect_url.rstrip('/')}/connectors",
                      params=[("expand", "info"), ("expand", "status")], timeout=timeout)
        r.raise_for_status()
        listing = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise SourceDown(f"Connect at {connect_url}: {exc}") from exc
    sinks = []
    for name, entry in sorted(listing.items()):
        info = entry.get("info") or {}
        if info.get("type") == "sink" and included(name, patterns):
            status = entry.get("status") or {}
            sinks.append(Sink(name, f"connect-{name}", dict(info.get("config") or {}),
                              str((status.get("connector") or {}).get("state", "")),
                              tuple(str(t.get("state", "")) for t in
                                    sorted(status.get("tasks") or [],
                                           key=lambda t: t.get("id", 0)))))
    return sinks


class KafkaReader:
    """The I/O shell over librdkafka. Never commits, never joins a group."""

    def __init__(self, client_conf: dict[str, Any], read_timeout: float,
                 request_timeout: float = 3.0) -> None:
        self._conf = {**client_conf, "enable.auto.commit": False, "log_level": 3,
                      "isolation.level": "read_committed"}  # what a sink would read
        self._timeout = request_timeout
        self._read_timeout = read_timeout
        self._budget_s: float | None = None
        self._deadline: float | None = None
        self._consumer = Consumer({
            **self._conf,
            "group.id": "conveyor-sla-probe",     # required; it never subscribes or commits
            "enable.partition.eof": True,
            # One record per partition is all a probe needs: small fetches keep memory flat.
            "max.partition.fetch.bytes": 65536,
            "fetch.max.bytes": 1048576,
            "queued.max.messages.kbytes": 4096,
        })
        self._groups: OrderedDict[str, Consumer] = OrderedDict()
        self._stamps: OrderedDict[tuple[str, int, int], int] = OrderedDict()
        self._tails: dict[tuple[str, int], tuple[int, int]] = {}

    def close(self) -> None:
        for c in self._groups.values():
            c.close()
        self._groups.clear()
        self._consumer.close()

    def _group_reader(self, group: str) -> Consumer:
        """A consumer with the group's id that only fetches its committed offsets."""
        c = self._groups.get(group)
        if c is None:
            c = self._groups[group] = Consumer({**self._conf, "group.id": group})
            while len(self._groups) > GROUP_READERS:
                self._groups.popitem(last=False)[1].close()
        self._groups.move_to_end(group)
        return c

    def budget(self, seconds: float) -> None:
        """Bound all that is asked of Kafka from now on to ``seconds`` in total. A scrape must
        answer within Prometheus' scrape timeout, and a broker that is starting up answers
        some requests and times out on others: one 3 s timeout after another (metadata, a
        group's offsets, the log bounds, the records) added up past it. Once the budget is
        spent a request is not sent; Kafka is reported down for this scrape."""
        self._budget_s = seconds
        self._deadline = time.monotonic() + seconds

    def time_left(self, at_most: float) -> float:
        """``at_most``, or less when the budget has less left (never below MIN_REQUEST_S)."""
        if self._deadline is None:
            return at_most
        return max(MIN_REQUEST_S, min(at_most, self._deadline - time.monotonic()))

    def request_timeout(self, what: str) -> float:
        """The timeout for the next request: the usual one, or what is left of the budget."""
        if self._deadline is None:
            return self._timeout
        left = self._deadline - time.monotonic()
        if left <= MIN_REQUEST_S:
            raise KafkaUnreachable(f"{what}: not asked, the scrape's {self._budget_s:g} s "
                                   "for Kafka are spent")
        return min(self._timeout, left)

    def topics(self) -> dict[str, list[int]]:
        try:
            md = self._consumer.list_topics(timeout=self.request_timeout("Kafka metadata"))
        except Exception as exc:
            raise kafka_failure("Kafka metadata", exc) from exc
        return {name: sorted(t.partitions) for name, t in md.topics.items()
                if not name.startswith("__") and t.error is None}

    def committed(self, group: str, parts: list[TopicPartition]) -> dict[tuple[str, int], int]:
        """The group's committed offsets for ``parts`` (missing: never committed)."""
        if not parts:
            return {}
        try:
            result = self._group_reader(group).committed(
                [TopicPartition(tp.topic, tp.partition) for tp in parts],
                timeout=self.request_timeout(f"committed offsets of {group}"))
        except Exception as exc:
            raise kafka_failure(f"committed offsets of {group}", exc) from exc
        return {(tp.topic, tp.partition): tp.offset
                for tp in result if tp.error is None and tp.offset >= 0}

    def bounds(self, parts: list[TopicPartition]) -> dict[tuple[str, int], tuple[int, int]]:
        """(log start, last stable offset) per partition, two batched requests."""
        if not parts:
            return {}
        out: dict[tuple[str, int], list[int | None]] = {}
        for i, spec in enumerate((EARLIEST, LATEST)):
            try:
                result = self._consumer.offsets_for_times(
                    [TopicPartition(tp.topic, tp.partition, spec) for tp in parts],
                    timeout=self.request_timeout("log offsets"))
            except Exception as exc:
                raise kafka_failure("log offsets", exc) from exc
            for tp in result:
                if tp.error is not None or tp.offset < 0:  # one partition without a leader
                    log.warning("sla.partition_offsets_failed", extra={
                        "topic": tp.topic, "partition": tp.partition,
                        "error": str(tp.error) if tp.error else f"offset {tp.offset}"})
                    continue
                out.setdefault((tp.topic, tp.partition), [None, None])[i] = tp.offset
        # A partition with only one of its two bounds is left out: its lag is unknown.
        return {k: (start, end) for k, (start, end) in out.items()
                if start is not None and end is not None}

    def next_stamps(self, at: dict[tuple[str, int], int],
                    ends: dict[tuple[str, int], int] | None = None
                    ) -> dict[tuple[str, int], int | None]:
        """For each partition, the timestamp (ms) of the first committed record at or after
        the offset, or None when none is left before its end (only transaction markers or
        aborted records). A partition not read within the timeout is absent: unknown.

        A sink that has written everything sits one offset short of the end, before the
        last transaction's marker: remembered per partition (offset, end), so an idle,
        caught-up partition is not read again at every scrape."""
        ends = ends or {}
        found: dict[tuple[str, int], int | None] = {}
        todo = {}
        for (topic, p), offset in at.items():
            key2 = (topic, p)
            if key2 in ends and self._tails.get(key2) == (offset, ends[key2]):
                found[key2] = None
                continue
            stamp = self._stamps.get((topic, p, offset))
            if stamp is not None:
                self._stamps.move_to_end((topic, p, offset))
                found[(topic, p)] = stamp
            else:
                todo[(topic, p)] = offset
        if not todo:
            return found
        self._consumer.assign([TopicPartition(t, p, o) for (t, p), o in todo.items()])
        paused: list[TopicPartition] = []
        deadline = time.monotonic() + self._read_timeout
        if self._deadline is not None:
            deadline = min(deadline, self._deadline)
        try:
            while todo and time.monotonic() < deadline:
                for msg in self._consumer.consume(num_messages=500, timeout=0.2):
                    key = (msg.topic(), msg.partition())
                    if key not in todo:
                        continue
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            offset = todo.pop(key)
                            found[key] = None
                            if key in ends:
                                self._tails[key] = (offset, ends[key])
                        continue
                    stamp = int(msg.timestamp()[1])
                    self._remember((key[0], key[1], todo.pop(key)), stamp)
                    found[key] = stamp
                    # Its first record is all we need: stop fetching the rest.
                    paused.append(TopicPartition(key[0], key[1]))
                    self._consumer.pause(paused[-1:])
        finally:
            if paused:
                self._consumer.resume(paused)
            self._consumer.unassign()
        if todo:
            log.warning("sla.records_not_read", extra={"partitions": len(todo),
                                                       "timeout_s": self._read_timeout})
        return found

    def _remember(self, key: tuple[str, int, int], stamp: int) -> None:
        self._stamps[key] = stamp
        while len(self._stamps) > STAMP_CACHE_SIZE:
            self._stamps.popitem(last=False)


def read_partitions(reader: KafkaReader, sinks: list[Sink],
                    topics: dict[str, list[int]]) -> tuple[list[PartitionReading], list[str]]:
    """Every partition of every sink's topics; plus the sinks that could not be read."""
    problems: list[str] = []
    per_sink: list[tuple[Sink, list[TopicPartition], dict[tuple[str, int], int]]] = []
    for sink in sinks:
        try:
            names = sink_topics(sink.config, list(topics))
        except ReplayRefused as exc:
            problems.append(f"{sink.connector}: {exc}")
            continue
        parts = [TopicPartition(t, p) for t in names if t in topics for p in topics[t]]
        try:
            committed = reader.committed(sink.group, parts)
        except KafkaUnreachable:
            raise   # Kafka is away: every other sink would wait as long for nothing
        except SourceDown as exc:
            problems.append(str(exc))
            continue
        per_sink.append((sink, parts, committed))
    every = {(tp.topic, tp.partition) for _, parts, _ in per_sink for tp in parts}
    bounds = reader.bounds([TopicPartition(t, p) for t, p in sorted(every)])
    states = []
    for sink, parts, committed in per_sink:
        for tp in parts:
            key = (tp.topic, tp.partition)
            if key not in bounds:
                continue
            start, end = bounds[key]
            states.append((sink, tp, PartitionState(committed.get(key), start, end)))
    # The same topic under two sinks at different offsets needs two reads: one per offset.
    behind: dict[tuple[str, int], set[int]] = {}
    ends = {(tp.topic, tp.partition): st.end for _, tp, st in states}
    for _, tp, st in states:
        if not st.caught_up:
            behind.setdefault((tp.topic, tp.partition), set()).add(st.position)
    stamps: dict[tuple[str, int, int], int | None] = {}
    while behind:
        batch = {k: v.pop() for k, v in behind.items()}
        behind = {k: v for k, v in behind.items() if v}
        for (t, p), ms in reader.next_stamps(batch, ends).items():
            stamps[(t, p, batch[(t, p)])] = ms
    readings = []
    for sink, tp, st in states:
        key3 = (tp.topic, tp.partition, st.position)
        known = st.caught_up or key3 in stamps
        readings.append(PartitionReading(sink.connector, sink.group, tp.topic, tp.partition,
                                         st, None if st.caught_up else stamps.get(key3),
                                         known))
    return readings, problems


DLQ_KEY = "errors.deadletterqueue.topic.name"


def dead_letter_totals(reader: KafkaReader, sinks: list[Sink],
                       topics: dict[str, list[int]]) -> dict[str, tuple[str, int]]:
    """connector -> (its dead-letter topic, records in it: the sum of its partitions' end
    offsets) for every sink naming a dead-letter topic. Connect creates that topic when
    the task starts, so one not there yet holds none: (topic, 0)."""
    named = {s.connector: s.config[DLQ_KEY].strip() for s in sinks
             if s.config.get(DLQ_KEY, "").strip()}
    parts = sorted({(t, p) for t in named.values() if t in topics for p in topics[t]})
    bounds = reader.bounds([TopicPartition(t, p) for t, p in parts])
    totals: dict[str, int] = {}
    for (topic, _p), (_start, end) in bounds.items():
        totals[topic] = totals.get(topic, 0) + end
    return {c: (t, totals.get(t, 0)) for c, t in named.items()
            if t not in topics or t in totals}
