"""Benchmark: ``conveyor-reconcile`` on two PostgreSQL tables of millions of rows with a
known number of differences, against the same comparison written as one plain SQL FULL
OUTER JOIN, in the same run on the same tables.

1. load: two tables of N order rows (default 5 million) generated inside PostgreSQL
   (``generate_series``, no row crosses the wire), one day of event time; the second then
   gets 100 differences: 40 rows deleted, 30 rows twice, 30 with a changed value.
2. reconcile: ``reconcile.cli.run`` over the day, 1-hour buckets, comparing two columns:
   wall time, rows/s (rows of both tables per second), and the CPU seconds of this process
   (its own counters: user + system) per million rows; the counts it found must be the 100.
   Then the same table on both sides: clean, the checksum pass alone.
3. baseline: the same counts (missing either side, twice either side, values differing)
   from one FULL OUTER JOIN of the two tables grouped by event id; wall time, and the ratio.

    python -m bench.reconcile.bench_reconcile [--rows 5000000] [--keep]

Endpoints and credentials come from the same environment as the integration tests
(``make bench`` provides it).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from devstack.stack import Stack
from reconcile.cli import run
from reconcile.postgres import Side

DAY0 = datetime(2026, 11, 30, tzinfo=UTC)
DELETED, TWICE, CHANGED = 40, 30, 30
COMPARED = ("total_cents", "order_id")


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def load(conn: psycopg.Connection[Any], a: str, b: str, n: int) -> None:
    step_ms = 86_400_000 / n
    conn.execute(f"""
        CREATE UNLOGGED TABLE "{a}" AS
        SELECT 'e-' || i AS event_id,
               %(day0)s::timestamptz + (i * %(step)s) * interval '1 millisecond' AS accepted_at,
               %(day0)s::timestamptz + (i * %(step)s + 2000) * interval '1 millisecond'
                   AS landed_at,
               (1000 + i %% 50000)::bigint AS total_cents,
               'o-' || i AS order_id,
               'c-' || (i %% 97) AS customer_id
        FROM generate_series(0, %(last)s) AS i""",
                 {"day0": DAY0, "step": step_ms, "last": n - 1})
    conn.execute(f'CREATE UNLOGGED TABLE "{b}" AS SELECT * FROM "{a}"')
    # 100 differences, spread over the day: every k-th row from a different offset.
    k = n // (DELETED + TWICE + CHANGED)
    picks = [i * k + 7 for i in range(DELETED + TWICE + CHANGED)]
    deleted = [f"e-{i}" for i in picks[:DELETED]]
    twice = [f"e-{i}" for i in picks[DELETED:DELETED + TWICE]]
    changed = [f"e-{i}" for i in picks[DELETED + TWICE:]]
    conn.execute(f'DELETE FROM "{b}" WHERE event_id = ANY(%s)', (deleted,))
    conn.execute(f'INSERT INTO "{b}" SELECT * FROM "{b}" WHERE event_id = ANY(%s)', (twice,))
    conn.execute(f'UPDATE "{b}" SET total_cents = total_cents + 1 WHERE event_id = ANY(%s)',
                 (changed,))
    conn.execute(f'VACUUM ANALYZE "{a}"')
    conn.execute(f'VACUUM ANALYZE "{b}"')


def full_outer_join(conn: psycopg.Connection[Any], a: str, b: str, lo: datetime,
                    hi: datetime) -> dict[str, int]:
    """The comparison as an analyst would write it: each side grouped by id (to see
    duplicates), joined both ways."""
    values = " || '|' || ".join(f"coalesce({c}::text, '\\N')" for c in COMPARED)
    side = ("SELECT event_id, count(*) AS n, min({v}) AS v, max({v}) AS w FROM \"{t}\" "
            "WHERE accepted_at >= %(lo)s AND accepted_at < %(hi)s GROUP BY event_id")
    row = conn.execute(f"""
        SELECT count(*) FILTER (WHERE n.event_id IS NULL),
               count(*) FILTER (WHERE o.event_id IS NULL),
               count(*) FILTER (WHERE n.n > 1),
               count(*) FILTER (WHERE o.n > 1),
               count(*) FILTER (WHERE o.event_id IS NOT NULL AND n.event_id IS NOT NULL
                                AND (o.v, o.w) IS DISTINCT FROM (n.v, n.w))
        FROM ({side.format(v=values, t=a)}) o
        FULL OUTER JOIN ({side.format(v=values, t=b)}) n USING (event_id)""",
                       {"lo": lo, "hi": hi}).fetchone()
    assert row is not None
    keys = ("missing_in_new", "missing_in_old", "duplicated_new", "duplicated_old",
            "mismatched")
    return dict(zip(keys, (int(x) for x in row), strict=True))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5_000_000,
                        help="rows per table (default 5,000,000)")
    parser.add_argument("--keep", action="store_true", help="keep the tables afterwards")
    args = parser.parse_args(argv)
    n = args.rows
    if n < 1000:
        parser.error("--rows: at least 1000 (100 differences are spread over them)")
    stack = Stack.from_env()
    token = uuid.uuid4().hex[:8]
    a, b = f"bench_reconcile_{token}_old", f"bench_reconcile_{token}_new"
    lo, hi = DAY0, DAY0 + timedelta(days=1)
    expected = {"missing_in_new": DELETED, "missing_in_old": 0, "duplicated_new": TWICE,
                "duplicated_old": 0, "mismatched": CHANGED}
    print(f"  load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        try:
            started = time.monotonic()
            load(conn, a, b, n)
            print(f"  loaded 2 x {n:,} rows (generate_series) in "
                  f"{time.monotonic() - started:.1f}s")

            old = Side(stack.postgres_dsn, a, columns=COMPARED, label="old")
            new = Side(stack.postgres_dsn, b, columns=COMPARED, label="new")
            cpu0, t0 = cpu_s(), time.monotonic()
            report, _ = run(old, new, lo, hi, timedelta(hours=1), timedelta(minutes=15))
            took, cpu = time.monotonic() - t0, cpu_s() - cpu0
            found = {k: report.total(k) for k in expected}
            assert found == expected, f"reconcile found {found}, injected {expected}"
            rows = sum(bk.old.rows + bk.new.rows for bk in report.buckets)
            print(f"  reconcile: {took:.2f}s, {rows / took:,.0f} rows/s (both tables), "
                  f"{report.drilled} of {len(report.buckets)} buckets differed and were narrowed; "
                  f"{cpu:.3f} CPU s of this process = {cpu / (rows / 1e6):.4f} per "
                  "million rows")

            # The same table on both sides: nothing to narrow, the checksum pass alone.
            same = Side(stack.postgres_dsn, a, columns=COMPARED, label="new")
            t0 = time.monotonic()
            clean, _ = run(old, same, lo, hi, timedelta(hours=1), timedelta(minutes=15))
            clean_took = time.monotonic() - t0
            assert clean.clean() and clean.drilled == 0
            print(f"  reconcile of identical tables (checksum pass only): {clean_took:.2f}s, "
                  f"{2 * n / clean_took:,.0f} rows/s")

            t0 = time.monotonic()
            joined = full_outer_join(conn, a, b, lo, hi)
            join_took = time.monotonic() - t0
            assert joined == expected, f"the join found {joined}, injected {expected}"
            print(f"  FULL OUTER JOIN: {join_took:.2f}s, {rows / join_took:,.0f} rows/s")
            print(f"  reconcile / join time: {took / join_took:.2f} "
                  f"(reconcile {join_took / took:.2f}x the join's speed)")
        finally:
            if not args.keep:
                conn.execute(f'DROP TABLE IF EXISTS "{a}"')
                conn.execute(f'DROP TABLE IF EXISTS "{b}"')
    print(f"  load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
