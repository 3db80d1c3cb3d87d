"""A stopped and restarted stack keeps its Kafka data, its Connect configs and its schemas."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from connectors.rest import ConnectClient
from devstack.committed import consume_committed
from devstack.stack import Stack

SCHEMA = '{"type": "record", "name": "Kept", "fields": [{"name": "event_id", "type": "string"}]}'


@pytest.mark.slow
def test_restart_keeps_kafka_data_connect_configs_and_schemas(stack: Stack, unique) -> None:
    topic = unique("kept")
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap,
                         "transactional.id": unique("kept-producer")})
    producer.init_transactions(30)
    producer.begin_transaction()
    for i in range(3):
        producer.produce(topic, key=b"one-partition", value=f"kept-{i}".encode())
    producer.commit_transaction(30)

    registry = SchemaRegistryClient({"url": stack.schema_registry_url})
    schema_id = registry.register_schema(f"{topic}-value", Schema(SCHEMA, "AVRO"))

    connect = ConnectClient(stack.connect_url)
    name = unique("kept-sink")
    config = {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "topics": topic,
        "connection.url": "jdbc:postgresql://postgres:5432/warehouse",
        "connection.username": "${env:CONVEYOR_POSTGRES_USER}",
        "connection.password": "${env:CONVEYOR_POSTGRES_PASSWORD}",
    }
    connect.put(name, config)
    try:
        stack.restart("connect", "schema-registry", "kafka")

        values = [m.value() for m in consume_committed(stack.kafka_bootstrap, topic, at_least=3)]
        assert values == [b"kept-0", b"kept-1", b"kept-2"]
        kept = connect.config(name)
        assert kept is not None and {k: kept[k] for k in config} == config
        fresh = SchemaRegistryClient({"url": stack.schema_registry_url})
        assert fresh.get_schema(schema_id).schema_str.replace(" ", "") == SCHEMA.replace(" ", "")
    finally:
        connect.delete(name)
