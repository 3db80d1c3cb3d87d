"""``conveyor-reconcile --old-topic``: a real topic (Avro, written by the RabbitMQ bridge's
own core in Kafka transactions) against the table the real sink landed from it.

Clean at first; then rows are deleted, duplicated and changed in the table behind the sink's
back, and the reconciliation finds exactly those counts; canaries (here: one customer's
orders, named by a payload field) are left out of the topic side when asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors import deploy
from connectors.configs import ConnectorFile
from devstack.stack import Stack
from tests.integration.connectors.bridges import RabbitMQWriter, order
from tests.integration.landing import Run, for_test, table
from tests.integration.warehouse import Warehouse

from .test_reconcile import reconcile

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N = 240
GONE, TWICE, CHANGED = 6, 4, 1
ABORTED = 20


@pytest.fixture
def writer(stack: Stack, run: Run, tmp_path: Path) -> Iterator[RabbitMQWriter]:
    w = RabbitMQWriter(stack, f"{run.prefix}.events", tmp_path)
    yield w
    w.close()


def test_a_topic_is_reconciled_against_the_table_its_sink_landed(
        stack: Stack, run: Run, writer: RabbitMQWriter, warehouse: Warehouse,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    sent = writer.publish([order(i, run.token) for i in range(N)])
    # An aborted batch is in the log too: a read_committed reader never counts it.
    writer.publish_aborted([order(i, run.token) for i in range(N, N + ABORTED)])
    deployed(for_test("rabbitmq-events.json", run))
    ours = table(run, "rabbitmq", "order_placed")
    rows = warehouse.wait_count(ours, N)
    topic = writer.topics["order_placed"]

    since = (min(r["accepted_at"] for r in rows) - timedelta(minutes=5)).isoformat()
    until = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    args = ["--old-topic", topic, "--new", ours, "--since", since, "--until", until,
            "--bucket", "5m", "--compare", "total_cents", "--compare", "order_id"]
    code, doc = reconcile(stack, *args)
    assert code == 0 and doc["clean"], doc
    assert doc["old_rows"] == N and doc["new_rows"] == N
    assert doc["topic"]["records_read"] == N and doc["topic"]["unreadable"] == 0, doc["topic"]

    # Behind the sink's back: rows deleted, rows twice (the upsert key dropped), one changed.
    ids = sorted(w.event_id for w in sent)
    gone, twice, changed = ids[:GONE], ids[GONE:GONE + TWICE], ids[50:50 + CHANGED]
    pk = warehouse.conn.execute(
        "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
        (f'"{ours}"',)).fetchone()
    assert pk, "the sink upserts on a primary key"
    warehouse.conn.execute(f'ALTER TABLE "{ours}" DROP CONSTRAINT "{pk[0]}"')
    warehouse.conn.execute(f'DELETE FROM "{ours}" WHERE event_id = ANY(%s)', (gone,))
    warehouse.conn.execute(f'INSERT INTO "{ours}" SELECT * FROM "{ours}" '
                           "WHERE event_id = ANY(%s)", (twice,))
    warehouse.conn.execute(f'UPDATE "{ours}" SET total_cents = total_cents + 1 '
                           "WHERE event_id = ANY(%s)", (changed,))

    code, doc = reconcile(stack, *args)
    assert code == 1 and doc["clean"] is False
    assert doc["totals"] == {"missing_in_new": GONE, "missing_in_old": 0,
                             "duplicated_new": TWICE, "duplicated_old": 0,
                             "mismatched": CHANGED, "late_old": 0, "late_new": 0}, doc
    found = {e for b in doc["buckets"] for e in b["examples"].get("missing_in_new", [])}
    assert found and found <= set(gone)
    assert doc["replay"], "each gap comes with where in the topic to replay it from"

    # One customer's orders marked as canaries on the topic side only: they now show as
    # rows the table holds and the topic (as filtered) does not.
    canaries = {w.event_id for w in sent if w.payload["customer_id"] == "c-3"}
    code, doc = reconcile(stack, *args, "--topic-exclude", "customer_id=c-3")
    assert doc["topic"]["excluded"] == len(canaries)
    assert doc["totals"]["missing_in_old"] == len(canaries - set(gone)), doc["totals"]
    # ... and on both sides: the same differences as before, minus the canaries'.
    code, doc = reconcile(stack, *args, "--topic-exclude", "customer_id=c-3",
                          "--new-where", "customer_id <> 'c-3'")
    assert doc["totals"]["missing_in_old"] == 0
    assert doc["totals"]["missing_in_new"] == len(set(gone) - canaries)
    assert doc["totals"]["duplicated_new"] == len(set(twice) - canaries)
