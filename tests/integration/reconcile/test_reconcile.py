"""``conveyor-reconcile`` against the real warehouse: a simulated legacy pipeline beside ours.

Orders go through the RabbitMQ bridge's own core into Kafka and land in our table through
the local connector file. A "legacy" table is fed from the same events with a known number
of losses, duplicates, late rows and a changed value; the reconciliation must find exactly
those. Then rows are deleted from our table (the night the database refused writes): the
reconciliation finds them missing and says where in Kafka to replay them from, and
``conveyor-connectors replay`` brings them back once; with the window's start deleted from
the log (as retention would), the replay refuses.
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
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

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


def command(stack: Stack, module: str, *args: str,
            ok: tuple[int, ...] = (0, 1)) -> tuple[int, Any]:
    env = {**os.environ, "POSTGRES_DSN": stack.postgres_dsn,
           "KAFKA_BOOTSTRAP": stack.kafka_bootstrap, "CONNECT_URL": stack.connect_url}
    done = subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode in ok, done.stdout + done.stderr
    try:
        return done.returncode, json.loads(done.stdout)
    except ValueError:
        return done.returncode, done.stdout + done.stderr


def reconcile(stack: Stack, *args: str) -> tuple[int, dict[str, Any]]:
    return command(stack, "reconcile.cli", *args, "--json")


def connectors_cli(stack: Stack, *args: str, ok: tuple[int, ...] = (0,)) -> tuple[int, Any]:
    return command(stack, "connectors.cli", *args, ok=ok)


def test_a_legacy_table_is_reconciled_and_a_lost_window_is_located_in_kafka(
        stack: Stack, run: Run, writer: RabbitMQWriter, warehouse: Warehouse,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    sent = writer.publish([order(i, run.token) for i in range(N)])
    connector = for_test("rabbitmq-events.json", run)
    deployed(connector)
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

    # Replay from the bucket: the plan first, then the real thing; the rows come back once.
    since = doc["buckets"][0]["bucket_start"]
    _, plan = connectors_cli(stack, "replay", connector.name, "--since", since, "--dry-run",
                             "--json")
    assert plan["records"] == N and all(p["retained"] for p in plan["partitions"]), plan
    assert warehouse.count(ours) == N - len(gone), "a dry run changes nothing"
    _, out = connectors_cli(stack, "replay", connector.name, "--since", since)
    assert f"replayed {plan['records']} records" in out, out
    rows = warehouse.wait_count(ours, N)
    assert {r["event_id"] for r in rows} == set(ids)
    code, doc = reconcile(stack, "--old", legacy, "--new", ours, *window, *mapping)
    assert doc["totals"]["missing_in_new"] == 0 and doc["totals"]["duplicated_new"] == 0
    assert doc["totals"]["missing_in_old"] == LOST, "only the legacy side's own faults left"

    # Retention took the start of the window: the replay refuses, changing nothing.
    tp = TopicPartition(topic, plan["partitions"][0]["partition"], 1)
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})   # alive until answered
    (deleted,) = admin.delete_records([tp]).values()
    deleted.result(30)
    code, out = connectors_cli(stack, "replay", connector.name, "--since", since, ok=(7,))
    assert "retention" in out, out

    # A connector that does not exist: named exit code, no traceback.
    code, out = connectors_cli(stack, "replay", "no-such-connector", "--since", since, ok=(5,))
