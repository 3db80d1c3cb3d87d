"""Benchmark: the warehouse sink (Connect + our SMTs + Debezium's JDBC sink) into PostgreSQL,
against the same rows written straight into PostgreSQL with COPY, in the same run.

1. throughput: a topic is pre-filled with N order events exactly as the RabbitMQ bridge
   writes them (its own core: envelope, Avro through the registry, transactions). The
   connector of ``connectors/configs/local/rabbitmq-events.json`` (renamed for this run)
   then drains it; rows/s is counted from the first row visible to the N-th (and, printed
   alongside, from the connector's creation, start-up included).
2. baseline: the same N rows (the table's own columns and values, read back from it) are
   written by COPY from Python into an empty copy of the table: rows/s.
3. latency: events are published at a steady rate; each row's latency is publish (the
   bridge's ``accepted_at``) -> the row visible to a SQL reader polling every 100 ms, plus
   the SMT's own ``landed_at - accepted_at``; p50 and p99.

    python -m bench.connect.bench_sink [--events 100000] [--warmup-events 20000]
                                       [--rate 1000] [--seconds 30]

Targets: at least 5,000 rows/s; p99 under 5 s. Endpoints and credentials come from the
same environment as the integration tests (``make bench`` provides it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka.admin import AdminClient, NewTopic

from connectors import deploy
from connectors.rest import ConnectClient
from devstack.stack import Stack
from tests.integration.connectors.bridges import RabbitMQWriter, order
from tests.integration.landing import Run, for_test, table

TARGET_ROWS_S = 5000.0
TARGET_P99_S = 5.0
PARTITIONS = 4
BATCH = 5000  # events per bridge transaction while pre-filling


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (statistics.quantiles, inclusive method)."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def create_topics(stack: Stack, topics: list[str]) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics]).values():
        future.result(30)


def scalar(conn: psycopg.Connection[Any], sql: str, *params: Any) -> Any:
    row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def count(conn: psycopg.Connection[Any], t: str) -> int:
    if scalar(conn, "SELECT to_regclass(%s)", f'public."{t}"') is None:
        return 0
    return int(scalar(conn, f'SELECT count(*) FROM "{t}"'))


def wait_rows(conn: psycopg.Connection[Any], t: str, n: int, timeout: float
              ) -> tuple[float, float]:
    """Block until ``t`` holds ``n`` rows; monotonic times of the first row and the last."""
    deadline = time.monotonic() + timeout
    first = None
    while (seen := count(conn, t)) < n:
        if seen and first is None:
            first = time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{t}: {seen} of {n} rows after {timeout:.0f}s")
        time.sleep(0.1)
    last = time.monotonic()
    return (first or last), last


def prefill(writer: RabbitMQWriter, token: str, n: int, start: int = 0) -> None:
    for first in range(start, start + n, BATCH):
        writer.publish([order(i, token) for i in range(first, min(first + BATCH, start + n))])


def throughput(stack: Stack, connect: ConnectClient, conn: psycopg.Connection[Any],
               n: int, workdir: Path) -> tuple[float, float, str]:
    """(rows/s from the first row to the last, rows/s including the connector's start,
    the table)."""
    run = Run()
    writer = RabbitMQWriter(stack, f"{run.prefix}.events", workdir)
    create_topics(stack, list(writer.topics.values()))
    started = time.monotonic()
    prefill(writer, run.token, n)
    writer.close()
    print(f"  pre-filled {n:,} events in {time.monotonic() - started:.1f}s")
    connector = for_test("rabbitmq-events.json", run)
    t = table(run, "rabbitmq", "order_placed")
    started = time.monotonic()
    deploy.apply(connect, connector, timeout=120)
    try:
        first, last = wait_rows(conn, t, n, timeout=max(300.0, n / 200))
    finally:
        deploy.delete(connect, connector.name)
    return n / max(last - first, 1e-3), n / (last - started), t


def baseline(conn: psycopg.Connection[Any], source: str) -> float:
    """COPY the sink's own rows into an empty table of the same shape: rows/s."""
    target = f"{source}_copy"
    conn.execute(f'CREATE TABLE "{target}" (LIKE "{source}" INCLUDING ALL)')
    try:
        cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position", (source,)).fetchall()]
        rows = conn.execute(f'SELECT * FROM "{source}"').fetchall()
        names = ", ".join(f'"{c}"' for c in cols)
        started = time.monotonic()
        with conn.transaction(), conn.cursor() as cur, \
                cur.copy(f'COPY "{target}" ({names}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        elapsed = time.monotonic() - started
        assert count(conn, target) == len(rows)
        return len(rows) / elapsed
    finally:
        conn.execute(f'DROP TABLE IF EXISTS "{target}"')


class Watcher(threading.Thread):
    """Polls the table every 100 ms; records when each event id first became visible."""

    def __init__(self, dsn: str, t: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.t = dsn, t
        self.visible: dict[str, float] = {}  # event_id -> wall-clock seconds
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.wait(0.1):
                if count(conn, self.t) == len(self.visible):
                    continue
                now = time.time()
                for (event_id,) in conn.execute(f'SELECT event_id FROM "{self.t}"'):
                    self.visible.setdefault(event_id, now)


def latency(stack: Stack, connect: ConnectClient, conn: psycopg.Connection[Any], rate: int,
            seconds: int, workdir: Path) -> tuple[list[float], list[float]]:
    run = Run()
    writer = RabbitMQWriter(stack, f"{run.prefix}.events", workdir)
    create_topics(stack, list(writer.topics.values()))
    connector = for_test("rabbitmq-events.json", run)
    t = table(run, "rabbitmq", "order_placed")
    deploy.apply(connect, connector, timeout=120)
    watcher = Watcher(stack.postgres_dsn, t)
    watcher.start()
    published: dict[str, float] = {}
    per_tick = max(rate // 20, 1)  # 20 transactions a second, like a busy bridge
    try:
        start = time.monotonic()
        for tick in range(seconds * 20):
            first = tick * per_tick
            for w in writer.publish([order(i, run.token) for i in range(first, first + per_tick)]):
                published[w.event_id] = w.accepted_at_ms / 1000
            pause = start + (tick + 1) / 20 - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # pacing the load, not waiting for anything
        deadline = wait_rows(conn, t, len(published), timeout=300)[1] + 10
        while len(watcher.visible) < len(published) and time.monotonic() < deadline:
            time.sleep(0.1)  # the watcher's next poll sees the last rows
        rows = conn.execute(f'SELECT EXTRACT(EPOCH FROM landed_at - accepted_at) FROM "{t}"'
                            ).fetchall()
    finally:
        watcher.stop.set()
        writer.close()
        deploy.delete(connect, connector.name)
        conn.execute(f'DROP TABLE IF EXISTS "{t}"')
    missing = len(published) - len(watcher.visible)
    assert missing == 0, f"the watcher never saw {missing} rows"
    visible = [watcher.visible[e] - at for e, at in published.items()]
    return visible, [float(r[0]) for r in rows]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=100_000, help="pre-filled events")
    ap.add_argument("--warmup-events", type=int, default=20_000,
                    help="events drained first, not measured (0: none)")
    ap.add_argument("--rate", type=int, default=1000, help="events/s for the latency run")
    ap.add_argument("--seconds", type=int, default=30, help="length of the latency run")
    args = ap.parse_args(argv)

    stack = Stack.from_env()
    stack.wait(["kafka", "schema-registry", "connect", "postgres"])
    connect = ConnectClient(stack.connect_url)
    ok = True
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn, \
            tempfile.TemporaryDirectory() as tmp:
        if args.warmup_events:
            # A worker that just started interprets the converter, SMT and JDBC paths; the
            # JIT needs a few thousand records before the figures mean anything.
            print(f"warm-up: {args.warmup_events:,} events through the same sink (not measured)")
            _, _, t = throughput(stack, connect, conn, args.warmup_events, Path(tmp))
            conn.execute(f'DROP TABLE IF EXISTS "{t}"')
        print(f"throughput: {args.events:,} events pre-filled, then drained by the sink")
        rows_s, with_start_s, t = throughput(stack, connect, conn, args.events, Path(tmp))
        try:
            copy_s = baseline(conn, t)
        finally:
            conn.execute(f'DROP TABLE IF EXISTS "{t}"')
        print(f"  sink     {rows_s:10,.0f} rows/s   (first row to last; target >= "
              f"{TARGET_ROWS_S:,.0f})")
        print(f"           {with_start_s:10,.0f} rows/s   (from creating the connector: task "
              "start and group join included)")
        print(f"  COPY     {copy_s:10,.0f} rows/s   (baseline: Python COPY, same rows)")
        print(f"  ratio    {rows_s / copy_s:10.2f}   sink / COPY")
        ok &= rows_s >= TARGET_ROWS_S

        print(f"latency: {args.rate:,} events/s for {args.seconds}s")
        visible, landed = latency(stack, connect, conn, args.rate, args.seconds, Path(tmp))
        p50, p99 = pct(visible, 50), pct(visible, 99)
        print(f"  publish -> row visible   p50 {p50:6.2f}s   p99 {p99:6.2f}s   "
              f"(target p99 < {TARGET_P99_S:.0f}s; {len(visible):,} rows, 100 ms polls)")
        print(f"  accepted_at -> landed_at p50 {pct(landed, 50):6.2f}s   "
              f"p99 {pct(landed, 99):6.2f}s   (stamped by the SMT, before the DB commit)")
        ok &= p99 < TARGET_P99_S
    connect.close()
    print("targets met" if ok else "TARGETS MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
