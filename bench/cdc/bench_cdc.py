"""Benchmark: the fulfilment centre's changes from database commit to warehouse row, through
Debezium's PostgreSQL source (exactly once), Kafka and the JDBC sink, in the same run as the
source's own limit.

1. steady: the load generator (fulfilment/load.py) commits ``--rate`` transactions per second
   for ``--seconds``; per change, commit (the source's ``occurred_at``) -> row made
   (``landed_at``) in the change tables: p50, p99, max.
2. drain: the source connector is paused, ``--burst`` transactions are committed as fast as
   one connection can (that rate is the baseline: what the database takes from one writer),
   then it is resumed; changes/s landed from the resume to the last row, and its ratio to the
   write rate.
3. cost: CPU seconds of both Connect workers (their JVMs' own counters, /proc/1/stat) per
   1,000 changes landed during the drain: source, both sinks and the converters.

    python -m bench.cdc.bench_cdc [--rate 100] [--seconds 30] [--burst 20000]

Endpoints and credentials come from the same environment as the integration tests
(``make bench`` provides it).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import psycopg

from connectors.rest import ConnectClient
from devstack.stack import PROJECT, Stack
from fulfilment.load import TABLES, run
from tests.integration.cdc.harness import Pipeline, deploy_pipeline
from tests.integration.landing import Run
from tests.integration.warehouse import Warehouse, poll

WORKERS = ("connect", "connect-2")


def pct(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def worker_cpu_s() -> float:
    """User + system CPU seconds of both workers' JVMs (PID 1 in each container)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for service in WORKERS:
        stat = subprocess.run(["docker", "exec", f"{PROJECT}_{service}_1", "cat", "/proc/1/stat"],
                              capture_output=True, text=True, check=True).stdout
        fields = stat.rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def landed(cdc: Pipeline, since_lsn: int = 0) -> list[tuple[float, float]]:
    """(occurred_at, landed_at) in epoch seconds of this run's streamed changes."""
    out: list[tuple[float, float]] = []
    for table in TABLES:
        for row in cdc.change_rows(table):
            if row["change_op"] != "r" and row["change_lsn"] > since_lsn:
                out.append((row["occurred_at"].timestamp(), row["landed_at"].timestamp()))
    return out


def wait_landed(cdc: Pipeline, n: int, since_lsn: int, timeout: float) -> list[tuple[float, float]]:
    return poll(lambda: landed(cdc, since_lsn), lambda rows: len(rows) >= n, timeout,
                f"{n} changes landed", every=1.0)


def max_lsn(cdc: Pipeline) -> int:
    lsns = [r["change_lsn"] for t in TABLES for r in cdc.change_rows(t)]
    return max(lsns, default=0)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.cdc.bench_cdc")
    parser.add_argument("--rate", type=float, default=100.0, help="steady transactions/s")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--burst", type=int, default=20_000, help="transactions in the drain")
    args = parser.parse_args(argv)

    stack = Stack.from_env()
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    source_conn = psycopg.connect(stack.fulfilment_dsn, autocommit=True)
    writer = psycopg.connect(stack.fulfilment_dsn)
    warehouse = Warehouse(stack.postgres_dsn)
    connect = ConnectClient(stack.connect_url)
    this = Run()
    pipelines = deploy_pipeline(connect, this, source_conn, warehouse,
                                **{"snapshot.mode": "no_data"})
    cdc = next(pipelines)
    try:
        poll(cdc.slot_state, lambda s: s is not None and s[0], 120, "the slot to be active")
        load = cdc.load(writer, seed=11)
        load.setup()

        # 1. steady rate
        t0 = time.monotonic()
        tally = run(load, args.rate, args.seconds)
        wrote_s = time.monotonic() - t0
        rows = wait_landed(cdc, tally.total, 0, 300)
        delays = [lnd - occ for occ, lnd in rows]
        print(f"steady: {tally.total} changes in {wrote_s:.1f}s "
              f"({tally.total / wrote_s:,.0f} changes/s offered, {args.rate:.0f} tx/s)")
        print(f"  commit -> row: p50 {pct(delays, 50) * 1000:,.0f} ms, "
              f"p99 {pct(delays, 99) * 1000:,.0f} ms, max {max(delays) * 1000:,.0f} ms")

        # 2. drain a backlog
        before_lsn = max_lsn(cdc)
        connect.pause(cdc.source.name)
        done_before = load.tally.total
        t0 = time.monotonic()
        for _ in range(args.burst):
            load.step()
        write_s = time.monotonic() - t0
        written = load.tally.total - done_before
        cpu0 = worker_cpu_s()
        resumed = time.time()
        connect.resume(cdc.source.name)
        rows = wait_landed(cdc, written, before_lsn, 600)
        cpu = worker_cpu_s() - cpu0
        last = max(lnd for _, lnd in rows)
        drain = written / (last - resumed)
        write_rate = written / write_s
        print(f"drain: {written} changes written at {write_rate:,.0f}/s by one connection "
              f"(the baseline), landed at {drain:,.0f}/s: ratio {drain / write_rate:.2f}")
        print(f"  Connect workers' CPU: {cpu:.1f} s, {cpu / written * 1000:.2f} s per 1,000 "
              f"changes (source, two sinks, converters)")
    finally:
        pipelines.close()
        connect.close()
        writer.close()
        warehouse.drop(*warehouse.tables(f"{this.prefix}_"))
        warehouse.close()
        source_conn.close()
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
