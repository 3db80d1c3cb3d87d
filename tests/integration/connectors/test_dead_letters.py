"""Records a sink cannot write end in its dead-letter topic with the reason, and the
connector keeps running and keeps landing the good records around them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from connectors import deploy
from connectors.configs import ConnectorFile
from connectors.rest import ConnectClient
from devstack.stack import Stack
from sidecar.common.avro import AvroEncoder
from sidecar.common.envelope import envelope_avro_schema, now_ms
from tests.integration.landing import Run, for_test, table
from tests.integration.warehouse import Warehouse, committed_behind, poll, read_topic

from .bridges import RabbitMQWriter, order

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ERROR_HEADERS = ("__connect.errors.topic", "__connect.errors.partition",
                 "__connect.errors.offset", "__connect.errors.connector.name",
                 "__connect.errors.stage", "__connect.errors.exception.class.name",
                 "__connect.errors.exception.message")


def test_unwritable_records_go_to_the_dead_letter_topic(
        stack: Stack, run: Run, tmp_path: Path, warehouse: Warehouse, connect: ConnectClient,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    writer = RabbitMQWriter(stack, f"{run.prefix}.events", tmp_path)
    topic = writer.topics["order_placed"]
    connector = for_test("rabbitmq-events.json", run)
    try:
        first = writer.publish([order(i, run.token) for i in range(5)])
        deployed(connector)
        t = table(run, "rabbitmq", "order_placed")
        warehouse.wait_count(t, len(first))

        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all"})
        # 1. Not Avro at all: JSON where the topic is Avro (a JSON route pointed at it).
        producer.produce(topic, b'{"event_id": "json-1"}', b"json-1")
        # 2. Avro, but no event_id: the envelope transform refuses it (it is the upsert key).
        no_id = {"type": "record", "name": "Stray", "namespace": "itest", "fields": [
            {"name": "event_type", "type": "string"}, {"name": "note", "type": "string"}]}
        value = AvroEncoder(stack.schema_registry_url).encode(
            topic, no_id, {"event_type": "order_placed", "note": "no id"})
        producer.produce(topic, value, b"no-id")
        assert producer.flush(30) == 0
        # Good records after the bad ones still land.
        after = writer.publish([order(i, run.token) for i in range(5, 10)])

        warehouse.wait_count(t, len(first) + len(after))
        dlq = connector.config["errors.deadletterqueue.topic.name"]
        dead = read_topic(stack.kafka_bootstrap, dlq, 2)
    finally:
        writer.close()

    by_key = {d.key: d for d in dead}
    assert set(by_key) == {b"json-1", b"no-id"}
    for d in dead:
        for h in ERROR_HEADERS:
            assert h in d.headers, (h, d.headers)
        assert d.headers["__connect.errors.topic"] == topic
        assert d.headers["__connect.errors.connector.name"] == connector.name
    assert by_key[b"json-1"].value == b'{"event_id": "json-1"}'  # the original bytes
    assert by_key[b"json-1"].headers["__connect.errors.stage"] == "VALUE_CONVERTER"
    assert by_key[b"no-id"].value == value
    assert by_key[b"no-id"].headers["__connect.errors.stage"] == "TRANSFORMATION"
    assert "event_id" in by_key[b"no-id"].headers["__connect.errors.exception.message"]

    state = connect.status(connector.name)
    assert state.running, state.failures


def test_a_row_postgres_refuses_stops_the_task_and_skips_nothing(
        stack: Stack, run: Run, tmp_path: Path, warehouse: Warehouse, connect: ConnectClient,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    """Debezium's JDBC sink 3.6 does not dead-letter a row the database refuses (here: text
    for a bigint column): the task FAILS with the database's reason, loudly, and nothing
    after that record is written or committed past, until an operator acts. Registry
    compatibility rules keep such a schema from reaching the topic in the first place."""
    writer = RabbitMQWriter(stack, f"{run.prefix}.events", tmp_path)
    topic = writer.topics["order_placed"]
    connector = for_test("rabbitmq-events.json", run, **{"tasks.max": "1"})
    try:
        first = writer.publish([order(i, run.token) for i in range(5)])
        deployed(connector)
        t = table(run, "rabbitmq", "order_placed")
        warehouse.wait_count(t, len(first))

        payload = json.loads((writer.settings.base_dir / "order_placed.avsc").read_text())
        for f in payload["fields"]:
            if f["name"] == "total_cents":
                f["type"] = "string"
        conflict = envelope_avro_schema("OrderPlacedEnvelope", "itest.conflict", payload)
        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all"})
        producer.produce(topic, AvroEncoder(stack.schema_registry_url).encode(topic, conflict, {
            "event_id": "conflict-1", "event_type": "order_placed", "source": "itest",
            "occurred_at": None, "accepted_at": now_ms(), "attributes": {},
            "payload": {"order_id": "o-x", "customer_id": "c-x", "total_cents": "lots",
                        "currency": "EUR", "items": [], "placed_at": None}}), b"o-x")
        assert producer.flush(30) == 0
        after = writer.publish([order(i, run.token) for i in range(5, 10)])

        state = poll(lambda: connect.status(connector.name), lambda s: bool(s.failures), 120,
                     f"{connector.name} to fail on the refused row")
        assert "total_cents" in "\n".join(state.failures)
        landed = {r["event_id"] for r in warehouse.rows(t)}
        assert "conflict-1" not in landed
        assert landed >= {w.event_id for w in first}
        # Records after the refused one are not skipped: none is committed past it.
        behind = committed_behind(stack.kafka_bootstrap, f"connect-{connector.name}", [topic])
        assert behind[topic] >= 1 + len([w for w in after if w.event_id not in landed])
    finally:
        writer.close()
