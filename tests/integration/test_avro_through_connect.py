"""Avro written by Python through the registry's Confluent-compatible API (magic byte +
4-byte schema id) is read back by Connect's converter: a JDBC sink lands it as typed rows."""

from __future__ import annotations

import time
from decimal import Decimal

import psycopg
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connectors.rest import ConnectClient
from devstack.stack import Stack

# Inside the compose network Connect reaches the registry by its service name.
CONVERTER = {
    "value.converter": "io.apicurio.registry.utils.converter.AvroConverter",
    "value.converter.apicurio.registry.url": "http://schema-registry:8081/apis/registry/v2",
    "value.converter.apicurio.registry.as-confluent": "true",
    "value.converter.apicurio.registry.use-id": "contentId",
    "value.converter.apicurio.registry.headers.enabled": "false",
    "key.converter": "org.apache.kafka.connect.storage.StringConverter",
}

SCHEMA = """
{"type": "record", "name": "Order", "namespace": "io.conveyor.test", "fields": [
  {"name": "event_id", "type": "string"},
  {"name": "item", "type": "string"},
  {"name": "quantity", "type": "int"},
  {"name": "price",
   "type": {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2}},
  {"name": "note", "type": ["null", "string"], "default": null}
]}
"""


def test_python_avro_is_read_by_connect_converter(stack: Stack, unique) -> None:
    topic = unique("avro_orders").replace("-", "_")
    registry = SchemaRegistryClient({"url": stack.schema_registry_url})
    serialize = AvroSerializer(registry, SCHEMA)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all"})
    sent = {
        f"o-{i}": {"event_id": f"o-{i}", "item": f"item {i}", "quantity": i,
                   "price": Decimal(f"{i}.25"), "note": None if i % 2 else f"n{i}"}
        for i in range(10)
    }
    for key, record in sent.items():
        value = serialize(record, SerializationContext(topic, MessageField.VALUE))
        assert value[0] == 0 and len(value) > 5  # Confluent wire format: magic byte, id
        producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0

    connect = ConnectClient(stack.connect_url)
    name = unique("avro-sink")
    connect.put(name, {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "connection.url": "jdbc:postgresql://postgres:5432/warehouse",
        "connection.username": "${env:CONVEYOR_POSTGRES_USER}",
        "connection.password": "${env:CONVEYOR_POSTGRES_PASSWORD}",
        "insert.mode": "upsert",
        "primary.key.mode": "record_value",
        "primary.key.fields": "event_id",
        "schema.evolution": "basic",
        **CONVERTER,
    })
    try:
        connect.wait_running(name)
        rows = _wait_for_rows(stack, topic, len(sent))
    finally:
        connect.delete(name)

    assert {r[0]: r[1:] for r in rows} == {
        k: (v["item"], v["quantity"], v["price"], v["note"]) for k, v in sent.items()
    }


def _wait_for_rows(stack: Stack, table: str, count: int, timeout: float = 90.0) -> list[tuple]:
    deadline = time.monotonic() + timeout
    rows: list[tuple] = []
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            exists = conn.execute("SELECT to_regclass(%s)", (f'"{table}"',)).fetchone()
            if exists and exists[0]:
                rows = conn.execute(
                    f'SELECT event_id, item, quantity, price, note FROM "{table}"').fetchall()
                if len(rows) >= count:
                    return rows
            time.sleep(0.5)
    raise AssertionError(f"{len(rows)} of {count} rows landed in {table} within {timeout}s")
