"""``conveyor-reconcile`` against the real warehouse: a simulated legacy pipeline beside ours.

Orders go through the RabbitMQ bridge's own core into Kafka and land in our table through
the local connector file. A "legacy" table is fed from the same events with a known number
of losses, duplicates, late rows and a changed value; the reconciliation must find exactly
those. Then rows are deleted from our table (the night the database refused writes): the
reconciliation finds them missing and says where in Kafka to replay them from.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors import deploy
from connectors.configs import ConnectorFile
from devstack.stack import ROOT, Stack
from tests.integration.connectors.bridges import RabbitMQWriter, order
from tests.integration.landing import Run, for_test, table
from tests.integration.warehouse import Warehouse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

N = 300
LOST, TWICE, LATE, CHANGED = 4, 3, 2, 1


@pytest.fixture
def writer(stack: Stack, run: Run, tmp_path: Path) -> Iterator[RabbitMQWriter]:
    w = RabbitMQWriter(stack, f"{run.prefix}.events", tmp_path)
    yield w
    w.close()


def reconcile(stack: Stack, *args: str) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, "POSTGRES_DSN": stack.postgres_dsn,
           "KAFKA_BOOTSTRAP": stack.kafka_bootstrap}
    done = subprocess.run([sys.executable, "-m", "reconcile.cli", *args, "--json"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_legacy_table_is_reconciled_and_a_lost_window_is_located_in_kafka(
        stack: Stack, run: Run, writer: RabbitMQWriter, warehouse: Warehouse,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    sent = writer.publish([order(i, run.token) for i in range(N)])
    deployed(for_test("rabbitmq-events.json", run))
    ours = table(run, "rabbitmq", "order_placed")
    rows = warehouse.wait_count(ours, N)
    by_id = {r["event_id"]: r for r in rows}

    # The legacy pipeline's table: its own column names, fed from the same events.
    legacy = f"{run.prefix}_legacy_orders"
    warehouse.conn.execute(
        f'CREATE TABLE "{legacy}" (order_event_id text, created timestamptz, '
        "loaded_at timestamptz, amount bigint, order_ref text)")
    ids = sorted(w.event_id for w in sent)
    lost, twice = set(ids[:LOST]), ids[LOST:LOST + TWICE]
    late = set(ids[10:10 + LATE])
    changed = set(ids[20:20 + CHANGED])
    with warehouse.conn.cursor() as cur:
        for eid in ids:
            if eid in lost:
                continue
            r = by_id[eid]
            delay = timedelta(minutes=20) if eid in late else timedelta(seconds=2)
            values = (eid, r["accepted_at"], r["accepted_at"] + delay,
                      r["total_cents"] + (1 if eid in changed else 0), r["order_id"])
            for _ in range(2 if eid in twice else 1):
                cur.execute(f'INSERT INTO "{legacy}" VALUES (%s, %s, %s, %s, %s)', values)

    since = (min(r["accepted_at"] for r in rows) - timedelta(minutes=5)).isoformat()
    until = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    window = ["--since", since, "--until", until, "--bucket", "5m"]
    mapping = ["--old-id", "order_event_id", "--old-time", "created", "--old-landed",
               "loaded_at", "--compare", "total_cents=amount", "--compare", "order_id=order_ref"]
    code, doc = reconcile(stack, "--old", legacy, "--new", ours, *window, *mapping)
    assert code == 1 and doc["clean"] is False
    assert doc["totals"] == {"missing_in_new": 0, "missing_in_old": LOST,
                             "duplicated_new": 0, "duplicated_old": TWICE,
                             "mismatched": CHANGED, "late_old": LATE, "late_new": 0}, doc
    examples = {e for b in doc["buckets"] for e in b["examples"].get("missing_in_old", [])}
    assert examples <= lost and examples
    assert doc["new_rows"] == N and doc["old_rows"] == N - LOST + TWICE

    # Against itself: clean, the go signal.
    code, doc = reconcile(stack, "--old", ours, "--new", ours, *window)
    assert code == 0 and doc["clean"] and doc["buckets_drilled"] == 0

    # The night the database refused writes: rows gone from our table.
    gone = ids[100:105]
    warehouse.conn.execute(f'DELETE FROM "{ours}" WHERE event_id = ANY(%s)', (gone,))
    topic = writer.topics["order_placed"]
    code, doc = reconcile(stack, "--old", legacy, "--new", ours, *window, *mapping,
                          "--topic", topic)
    assert code == 1 and doc["totals"]["missing_in_new"] == len(gone)
    (coords,) = doc["replay"].values()   # one 5-minute bucket holds them all
    assert all(c["retained"] for c in coords) and any(c["offset"] >= 0 for c in coords), coords
