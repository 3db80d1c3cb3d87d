"""Benchmark: the SLA exporter's own cost per scrape, with 200 partitions and 50 tables,
against a baseline of 1 partition and 1 table measured in the same run.

Setup (removed afterwards): 20 topics x 10 partitions with a few hundred records each, one
consumer group that committed half of every partition (so every partition is behind and
needs its record read), and 50 tables shaped like the sinks' (accepted_at, landed_at) with
rows landing between scrapes. The exporter runs in this process, on the stack's Kafka and
PostgreSQL; its sinks are given directly instead of asked from Connect.

Per configuration: CPU seconds per scrape of this process (time.process_time: user +
system), first scrape (cold: every record read) and steady scrapes (warm: timestamps
cached, windows small), wall time per scrape, and resident memory the exporter added
(VmRSS before building it and after the scrapes). Printed as figures and as ratios against
the baseline.

    python -m bench.sla [--scrapes 10]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from devstack.stack import Stack
from sidecar.common.config import settings_from_dict
from sla.exporter import SlaCollector
from sla.kafka import Sink
from sla.service import ConnectKafkaSide, PostgresSide
from sla.settings import SlaSecrets, SlaSettings

TOPICS, PARTITIONS, TABLES = 20, 10, 50
RECORDS_PER_PARTITION = 200
ROWS_PER_TABLE = 2000


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass
class Figures:
    label: str
    cold_cpu: float
    warm_cpu: float
    warm_wall: float
    rss_kb: int


def setup_kafka(stack: Stack, prefix: str) -> tuple[list[str], str, str]:
    """The measured topics, the baseline's one-partition topic, and the group."""
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    topics = [f"{prefix}.sla.t{i}" for i in range(TOPICS)]
    base = f"{prefix}.sla.base"
    new = [NewTopic(t, PARTITIONS, 1) for t in topics] + [NewTopic(base, 1, 1)]
    for f in admin.create_topics(new).values():
        f.result(30)
    parts = [(t, p) for t in topics for p in range(PARTITIONS)] + [(base, 0)]
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 20})
    for t, p in parts:
        for _ in range(RECORDS_PER_PARTITION):
            producer.produce(t, b"x" * 100, partition=p)
        producer.poll(0)
    assert producer.flush(60) == 0
    group = f"connect-{prefix}-sla-bench"
    committer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": group,
                          "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(t, p, RECORDS_PER_PARTITION // 2)
                              for t, p in parts], asynchronous=False)
    committer.close()
    return topics, base, group


def setup_tables(stack: Stack, prefix: str) -> list[str]:
    names = [f"{prefix}_sla_bench_{i}" for i in range(TABLES)]
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        for n in names:
            conn.execute(f'CREATE TABLE "{n}" (event_id text PRIMARY KEY, '
                         "accepted_at timestamp, landed_at timestamp)")
            conn.execute(
                f'INSERT INTO "{n}" SELECT g::text, '
                "(now() AT TIME ZONE 'UTC') - make_interval(secs => g), "
                "(now() AT TIME ZONE 'UTC') - make_interval(secs => g) + interval '2 s' "
                "FROM generate_series(1, %s) g", (ROWS_PER_TABLE,))
    return names


def land_more(stack: Stack, names: list[str], n: int, seq: int) -> None:
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        for t in names:
            conn.execute(
                f'INSERT INTO "{t}" SELECT %s || g::text, '
                "(now() AT TIME ZONE 'UTC') - interval '10 s', "
                "(now() AT TIME ZONE 'UTC') - interval '8 s' FROM generate_series(1, %s) g",
                (f"s{seq}-{uuid.uuid4().hex[:8]}-", n))


def measure(stack: Stack, label: str, topics: list[str], group: str, tables: list[str],
            scrapes: int) -> Figures:
    settings = settings_from_dict(SlaSettings, {
        "kafka": {"bootstrap_servers": stack.kafka_bootstrap},
        "postgres": {"tables": tables},
        "landing": {"settle_seconds": 0}})
    secrets = SlaSecrets()
    gc.collect()
    before = rss_kb()
    kafka = ConnectKafkaSide(settings, secrets)
    sinks = [Sink(group.removeprefix("connect-"), group, {"topics": ",".join(topics)})]
    kafka.sinks = lambda: sinks  # type: ignore[method-assign]
    pg = PostgresSide(settings, _pg_secrets(stack, secrets))
    collector = SlaCollector(settings, kafka, pg)
    t0 = time.process_time()
    first = collector.measure()
    cold = time.process_time() - t0
    assert all(first.up.values()), first.up
    assert all(seconds > 0 for _, seconds in first.lag), "every partition is behind"
    warm, wall = [], []
    for i in range(scrapes):
        land_more(stack, tables, 20, i)     # not timed: rows arriving between scrapes
        c0, w0 = time.process_time(), time.perf_counter()
        collector.measure()
        warm.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    grown = rss_kb() - before
    kafka.close()
    pg.close()
    return Figures(label, cold, statistics.median(warm), statistics.median(wall), grown)


def _pg_secrets(stack: Stack, secrets: SlaSecrets) -> SlaSecrets:
    from urllib.parse import unquote, urlsplit
    u = urlsplit(stack.postgres_dsn)
    return secrets.model_copy(update={
        "postgres_user": unquote(u.username or ""),
        "postgres_password": _secret(unquote(u.password or ""))})


def _secret(value: str) -> Any:
    from pydantic import SecretStr
    return SecretStr(value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scrapes", type=int, default=10)
    args = ap.parse_args()
    stack = Stack.from_env()
    prefix = f"b{uuid.uuid4().hex[:8]}"
    print(f"setting up {TOPICS * PARTITIONS} partitions and {TABLES} tables ...", flush=True)
    topics, base_topic, group = setup_kafka(stack, prefix)
    tables = setup_tables(stack, prefix)
    try:
        base = measure(stack, "baseline: 1 partition, 1 table", [base_topic], group,
                       tables[:1], args.scrapes)
        full = measure(stack, f"{TOPICS * PARTITIONS} partitions, {TABLES} tables", topics,
                       group, tables, args.scrapes)
    finally:
        with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
            for t in tables:
                conn.execute(f'DROP TABLE IF EXISTS "{t}"')
        admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
        for f in admin.delete_topics([*topics, base_topic]).values():
            f.result(30)
    print(f"\n{'':34} {'cold CPU s':>11} {'warm CPU s':>11} {'warm wall s':>12} {'RSS +MiB':>9}")
    for fig in (base, full):
        print(f"{fig.label:34} {fig.cold_cpu:11.4f} {fig.warm_cpu:11.4f} "
              f"{fig.warm_wall:12.4f} {fig.rss_kb / 1024:9.1f}")

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.1f}x" if b > 0 else "n/a"

    print(f"\nratios (200 partitions + 50 tables / baseline): cold CPU "
          f"{ratio(full.cold_cpu, base.cold_cpu)}, warm CPU {ratio(full.warm_cpu, base.warm_cpu)}, "
          f"warm wall {ratio(full.warm_wall, base.warm_wall)}, RSS growth "
          f"{ratio(full.rss_kb, base.rss_kb)}")
    print(f"per partition+table, warm: {full.warm_cpu / (TOPICS * PARTITIONS + TABLES) * 1e6:.0f}"
          " µs CPU")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
