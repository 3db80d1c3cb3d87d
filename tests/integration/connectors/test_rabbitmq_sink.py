"""The RabbitMQ bridge's topics land as one typed table per event type, exactly once."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors import deploy
from connectors.configs import ConnectorFile
from devstack.stack import Stack
from tests.integration.landing import Run, for_test, table
from tests.integration.warehouse import Warehouse, committed_behind, poll

from .bridges import RabbitMQWriter, order, pick

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def writer(stack: Stack, run: Run, tmp_path: Path):
    w = RabbitMQWriter(stack, f"{run.prefix}.events", tmp_path)
    yield w
    w.close()


def test_events_land_in_typed_tables_once(
        stack: Stack, run: Run, writer: RabbitMQWriter, warehouse: Warehouse,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    orders = writer.publish([order(i, run.token) for i in range(30)])
    picks = writer.publish([pick(i, run.token) for i in range(20)])
    # A batch whose transaction was aborted: in the log, never committed.
    writer.publish_aborted([order(i, run.token) for i in range(100, 110)])

    connector = for_test("rabbitmq-events.json", run)
    deployed(connector)

    orders_table = table(run, "rabbitmq", "order_placed")
    picks_table = table(run, "rabbitmq", "robot_picked")
    order_rows = warehouse.wait_count(orders_table, len(orders))
    pick_rows = warehouse.wait_count(picks_table, len(picks))

    # Typed columns: envelope fields, the payload's first level, JSON for the rest.
    cols = warehouse.columns(orders_table)
    assert {k: cols[k] for k in ("event_id", "event_type", "source", "total_cents",
                                 "currency", "customer_id")} == {
        "event_id": "text", "event_type": "text", "source": "text", "total_cents": "bigint",
        "currency": "text", "customer_id": "text"}
    for ts in ("occurred_at", "accepted_at", "landed_at"):
        assert cols[ts].startswith("timestamp"), (ts, cols[ts])
    assert cols["items"] == "text" and cols["attributes"] == "text"
    assert "payload" not in cols
    assert warehouse.primary_key(orders_table) == ["event_id"]

    sent = {w.event_id: w for w in orders}
    assert {r["event_id"] for r in order_rows} == set(sent)
    for row in order_rows:
        w = sent[row["event_id"]]
        assert row["event_type"] == "order_placed"
        assert row["source"] == writer.settings.source_name
        assert row["order_id"] == w.payload["order_id"]
        assert row["total_cents"] == w.payload["total_cents"]
        assert json.loads(row["items"]) == w.payload["items"]
        assert json.loads(row["attributes"])["amqp.routing_key"] == "order.placed"
        assert _utc(row["occurred_at"]) == datetime.fromisoformat(w.payload["placed_at"])
        assert _ms(row["accepted_at"]) == w.accepted_at_ms
        assert row["landed_at"] >= row["accepted_at"]

    pcols = warehouse.columns(picks_table)
    assert {k: pcols[k] for k in ("aisle", "weight_kg", "fragile", "note", "position")} == {
        "aisle": "integer", "weight_kg": "double precision", "fragile": "boolean",
        "note": "text", "position": "text"}
    by_id = {r["event_id"]: r for r in pick_rows}
    for w in picks:
        row = by_id[w.event_id]
        assert (row["aisle"], row["weight_kg"], row["fragile"], row["note"]) == (
            w.payload["aisle"], w.payload["weight_kg"], w.payload["fragile"],
            w.payload["note"])
        assert json.loads(row["position"]) == w.payload["position"]

    # Offsets are committed on the topics the records came from (RouteByField renames the
    # topic in flight): a restarted task resumes, it does not replay the topic.
    group = f"connect-{connector.name}"
    poll(lambda: committed_behind(stack.kafka_bootstrap, group, list(writer.topics.values())),
         lambda behind: not any(behind.values()), 60, f"{group} to commit its offsets")


def test_sending_the_same_events_again_adds_no_rows(
        stack: Stack, run: Run, writer: RabbitMQWriter, warehouse: Warehouse,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    messages = [order(i, run.token) for i in range(25)]
    first = writer.publish(messages)
    deployed(for_test("rabbitmq-events.json", run))
    t = table(run, "rabbitmq", "order_placed")
    before = {r["event_id"]: r for r in warehouse.wait_count(t, len(first))}

    # The same messages through the bridge again (a rewind, a replay, a second bridge
    # without the ledger): same event ids, newer accepted_at, in Kafka twice.
    again = writer.publish(messages)
    assert {w.event_id for w in again} == set(before)
    replayed_at = again[0].accepted_at_ms

    # Wait until every row was rewritten by the replay (its accepted_at is the new one):
    # only then does "no new rows" mean the sink saw the duplicates and upserted them.
    rows = poll(lambda: warehouse.rows(t),
                lambda rs: all(_ms(r["accepted_at"]) == replayed_at for r in rs), 120,
                f"the replayed events to be written to {t}")
    assert len(rows) == len(first)
    assert sorted(r["event_id"] for r in rows) == sorted(before)
    assert all(r["landed_at"] > before[r["event_id"]]["landed_at"] for r in rows)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _ms(value: datetime) -> int:
    return int(_utc(value).timestamp() * 1000)
