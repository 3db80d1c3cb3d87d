"""What a user checks after a sink ran: tables, columns, rows, dead letters, offsets.

Every wait polls a condition against a deadline and fails with what it last saw.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

T = TypeVar("T")


def poll(fetch: Callable[[], T], done: Callable[[T], bool], timeout: float, what: str,
         every: float = 0.5) -> T:
    """Call ``fetch`` until ``done(result)``; raise with the last result after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; "
                                 f"last seen: {_short(result)}")
        time.sleep(every)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 600 else text[:600] + "..."


class Warehouse:
    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)

    def close(self) -> None:
        self.conn.close()

    def exists(self, table: str) -> bool:
        row = self.conn.execute("SELECT to_regclass(%s)", (f'public."{table}"',)).fetchone()
        return bool(row and row[0])

    def tables(self, prefix: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "AND table_name LIKE %s ORDER BY 1", (prefix.replace("_", r"\_") + "%",)).fetchall()
        return [r[0] for r in rows]

    def count(self, table: str) -> int:
        if not self.exists(table):
            return 0
        row = self.conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        return int(row[0]) if row else 0

    def rows(self, table: str, order_by: str = "event_id") -> list[dict[str, Any]]:
        if not self.exists(table):
            return []
        cur = self.conn.execute(f'SELECT * FROM "{table}" ORDER BY "{order_by}"')
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def columns(self, table: str) -> dict[str, str]:
        rows = self.conn.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = %s", (table,)).fetchall()
        return {r[0]: r[1] for r in rows}

    def primary_key(self, table: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary",
            (f'public."{table}"',)).fetchall()
        return sorted(r[0] for r in rows)

    def wait_count(self, table: str, count: int, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Rows of ``table`` once it holds ``count`` (fails at once on more: a duplicate)."""
        def fetch() -> int:
            n = self.count(table)
            assert n <= count, f"{table} holds {n} rows, more than the {count} expected"
            return n
        poll(fetch, lambda n: n == count, timeout, f"{count} rows in {table}")
        return self.rows(table)

    def drop(self, *tables: str) -> None:
        for t in tables:
            self.conn.execute(f'DROP TABLE IF EXISTS "{t}"')


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 90.0
               ) -> list[DeadLetter]:
    """The first ``expected`` records of ``topic`` (fails if fewer arrive in time)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"itest-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "isolation.level": "read_committed",
                         "topic.metadata.refresh.interval.ms": 1000})
    consumer.subscribe([topic])
    out: list[DeadLetter] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(out)} of {expected} records in {topic} after "
                                     f"{timeout:.0f}s: {out}")
            for msg in consumer.consume(100, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() in (KafkaError._PARTITION_EOF,
                                      KafkaError.UNKNOWN_TOPIC_OR_PART):
                        continue
                    raise AssertionError(err.str())
                headers = {k: (v.decode("utf-8", "replace") if v is not None else "")
                           for k, v in (msg.headers() or [])}
                out.append(DeadLetter(msg.topic(), msg.key(), msg.value(), headers))
    finally:
        consumer.close()
    return out


def committed_behind(bootstrap: str, group: str, topics: list[str]) -> dict[str, int]:
    """Per topic: committed records that consumer group ``group`` has not committed past.

    Counted against what a read_committed consumer is handed, not against the log end:
    records of aborted transactions and commit markers are never handed to a sink, so its
    committed offset rightly stays before them.
    """
    group_consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                               "enable.auto.commit": False})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(timeout=10)
    parts = [TopicPartition(t, p) for t in topics if t in meta.topics
             for p in meta.topics[t].partitions]
    try:
        done = {(tp.topic, tp.partition): tp.offset
                for tp in group_consumer.committed(parts, timeout=10)}
    finally:
        group_consumer.close()
    behind = {t: 0 for t in topics}
    for topic, partition, offset in _committed_offsets(bootstrap, parts):
        if offset >= done[(topic, partition)]:  # no commit: -1001, so everything counts
            behind[topic] += 1
    return behind


def _committed_offsets(bootstrap: str, parts: list[TopicPartition]
                       ) -> list[tuple[str, int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"itest-{uuid.uuid4()}",
                         "enable.auto.commit": False, "isolation.level": "read_committed",
                         "enable.partition.eof": True})
    consumer.assign([TopicPartition(tp.topic, tp.partition, 0) for tp in parts])
    pending = {(tp.topic, tp.partition) for tp in parts}
    out = []
    deadline = time.monotonic() + 30
    try:
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=0.5):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard((msg.topic(), msg.partition()))
                        continue
                    raise AssertionError(err.str())
                out.append((msg.topic(), msg.partition(), msg.offset()))
    finally:
        consumer.close()
    assert not pending, f"could not read {sorted(pending)} to the end"
    return out
