"""Replay a sink connector from a time: plan, then stop -> alter offsets -> resume -> catch up.

Kafka has every piece (ListOffsets by timestamp; KIP-875's ``PUT /connectors/{name}/stop``,
``PATCH /connectors/{name}/offsets``, ``PUT /connectors/{name}/resume``); this puts them in
the order a careful operator would, with the checks in between:

- **the plan first**: per partition the connector's committed offset, the offset of the
  first record stamped at or after ``since``, and how many records that replays;
- **retention**: when the oldest record Kafka still holds is stamped after ``since`` and
  retention has already deleted older ones, records of the window may be gone: refused
  (``--force`` replays what is left);
- CreateTime is not monotonic: Kafka answers with the *first* record stamped at or after
  ``since``, so the replay is complete for every record stamped at or after it;
- a time past a partition's last record leaves that partition where it is.

Replaying is idempotent only for sinks that upsert on ``event_id`` and keep their progress
in Connect's consumer-group offsets: the JDBC sink of our profiles. The Iceberg and
Snowflake sinks keep offsets of their own (in table metadata, in Snowflake channels);
altering Connect's would not move them, so they are refused by name.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from .rest import ConnectClient

SUPPORTED = {
    "io.debezium.connector.jdbc.JdbcSinkConnector":
        "upserts on event_id; progress in Connect's consumer-group offsets",
}
REFUSED = {
    "org.apache.iceberg.connect.IcebergSinkConnector":
        "Iceberg's sink commits its offsets into the table's own metadata; Connect's "
        "offsets do not move it",
    "io.tabular.iceberg.connect.IcebergSinkConnector":
        "Iceberg's sink commits its offsets into the table's own metadata",
    "com.snowflake.kafka.connector.SnowflakeSinkConnector":
        "Snowflake's sink keeps its offsets in Snowflake (Snowpipe Streaming channels)",
}


class ReplayRefused(Exception):
    """The replay cannot be done safely; nothing was changed."""


@dataclass(frozen=True)
class PartitionPlan:
    topic: str
    partition: int
    current: int | None     # the connector's committed offset (None: never committed)
    new: int                # where it reads from after the replay
    end: int
    log_start: int
    retained: bool          # every record stamped at or after ``since`` is still there
    # The offset after the partition's last record: a sink that has written everything
    # commits this, which is short of ``end`` by the transaction markers after it.
    target: int = -1

    @property
    def records(self) -> int:
        upto = (self.target if self.target >= 0 else self.end) if self.current is None \
            else max(self.current, self.new)
        return max(0, upto - self.new)

    def as_json(self) -> dict[str, object]:
        return {"topic": self.topic, "partition": self.partition, "current": self.current,
                "new": self.new, "end": self.end, "target": self.target,
                "log_start": self.log_start,
                "records": self.records, "retained": self.retained}


@dataclass
class Plan:
    connector: str
    since: datetime
    partitions: list[PartitionPlan] = field(default_factory=list)

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def lost_to_retention(self) -> list[PartitionPlan]:
        return [p for p in self.partitions if not p.retained]

    def as_json(self) -> dict[str, object]:
        return {"connector": self.connector, "since": self.since.isoformat(),
                "records": self.records,
                "partitions": [p.as_json() for p in self.partitions]}


def sink_topics(config: dict[str, str], all_topics: list[str]) -> list[str]:
    if config.get("topics"):
        return sorted(t.strip() for t in config["topics"].split(",") if t.strip())
    pattern = config.get("topics.regex")
    if not pattern:
        raise ReplayRefused("the connector names neither topics nor topics.regex")
    rx = re.compile(pattern)
    return sorted(t for t in all_topics if rx.fullmatch(t))


def make_plan(client: ConnectClient, name: str, since: datetime, bootstrap: str,
              timeout: float = 15.0) -> Plan:
    config = client.config(name)
    if config is None:
        raise LookupError(name)
    cls = config.get("connector.class", "")
    if cls in REFUSED:
        raise ReplayRefused(f"{name} ({cls.rsplit('.', 1)[-1]}): {REFUSED[cls]}")
    if cls not in SUPPORTED:
        raise ReplayRefused(f"{name}: {cls} is not a sink this replay knows to be safe "
                            f"(supported: {', '.join(SUPPORTED)})")
    current = client.offsets(name)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "conveyor-replay-probe",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "isolation.level": "read_committed"})
    try:
        meta = consumer.list_topics(timeout=timeout)
        topics = sink_topics(config, [t for t in meta.topics if not t.startswith("__")])
        plan = Plan(name, since)
        for topic in topics:
            for at in offsets_at(consumer, topic, since, sorted(meta.topics[topic].partitions),
                                 timeout):
                target = after_last_record(consumer, topic, at.partition,
                                           max(at.log_start, at.offset), at.end)
                plan.partitions.append(PartitionPlan(
                    topic, at.partition, current.get((topic, at.partition)), at.offset,
                    at.end, at.log_start, at.retained, target))
        return plan
    finally:
        consumer.close()


@dataclass(frozen=True)
class OffsetAt:
    """Where a time starts in one partition, and whether retention still holds it."""

    partition: int
    offset: int        # the first record stamped at or after the time; ``end`` if none
    log_start: int
    end: int
    retained: bool

    def as_json(self) -> dict[str, object]:
        return {"partition": self.partition, "offset": self.offset,
                "log_start": self.log_start, "end": self.end, "retained": self.retained}


def offsets_at(consumer: Consumer, topic: str, at: datetime, partitions: list[int],
               timeout: float = 15.0) -> list[OffsetAt]:
    """Kafka's offsets for a time, per partition. Kafka answers a time older than every
    record it still holds with the log start, so an answer equal to a log start that
    retention has moved, whose record is stamped after the time, means records of the
    window are gone (``retained`` False)."""
    ms = int(at.timestamp() * 1000)
    out = []
    asked = [TopicPartition(topic, p, ms) for p in partitions]
    for tp in consumer.offsets_for_times(asked, timeout=timeout):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition),
                                                   timeout=timeout)
        offset = high if tp.offset < 0 else tp.offset
        retained = not (low > 0 and offset == low
                        and _stamp_at(consumer, topic, tp.partition, low) > ms)
        out.append(OffsetAt(tp.partition, offset, low, high, retained))
    return out


def _stamp_at(consumer: Consumer, topic: str, partition: int, offset: int,
              timeout: float = 10.0) -> int:
    """The timestamp of the record at ``offset`` (the log start: never a marker there)."""
    consumer.assign([TopicPartition(topic, partition, offset)])
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                return int(msg.timestamp()[1])
        raise KafkaException(f"no record read at {topic}[{partition}]@{offset}")
    finally:
        consumer.unassign()


def after_last_record(consumer: Consumer, topic: str, partition: int, start: int, end: int,
                       look_back: int = 1000, timeout: float = 15.0) -> int:
    """The offset after the last committed record in [start, end), looking at most
    ``look_back`` offsets back; ``start`` when there is none there. ``consumer`` must read
    read_committed with partition EOF events. A consumer that has read everything commits
    this, which is short of ``end`` by the markers after it (one per transaction, committed
    or aborted, that ended there)."""
    if end <= start:
        return start
    consumer.assign([TopicPartition(topic, partition, max(start, end - look_back))])
    last = start
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                last = (msg.offset() or 0) + 1
            elif err.code() == KafkaError._PARTITION_EOF:
                return last
        raise KafkaException(f"{topic}[{partition}] not read to its end in {timeout:.0f}s")
    finally:
        consumer.unassign()


def execute(client: ConnectClient, plan: Plan, *, timeout: float = 300.0,
            say: Callable[[str], None] = lambda _m: None) -> None:
    """Stop, move the offsets, resume, and return once the sink has committed up to the
    ends the plan saw (every replayed record written)."""
    name = plan.connector
    client.stop(name)
    say(f"stopped {name}")
    _wait(lambda: client.status(name).state == "STOPPED", timeout, f"{name} to stop")
    client.alter_offsets(name, {(p.topic, p.partition): p.new for p in plan.partitions})
    say(f"offsets of {len(plan.partitions)} partitions moved")
    client.resume(name)
    client.wait_running(name, timeout)
    say(f"resumed {name}; waiting until it has written {plan.records} records again")

    def caught_up() -> bool:
        now = client.offsets(name)
        return all(now.get((p.topic, p.partition), -1) >= p.target for p in plan.partitions
                   if p.target > p.new)

    _wait(caught_up, timeout, f"{name} to catch up with the ends it had before")


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)

