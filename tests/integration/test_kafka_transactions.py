"""Kafka on one node runs transactions: what is committed is seen, what is aborted is not."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer

from tests.integration.stack import Stack


def _read_committed(stack: Stack, topic: str, expect_at_least: int,
                    timeout_s: float = 30) -> list[bytes]:
    """Values read_committed until every partition is at its end and enough were seen."""
    consumer = Consumer({
        "bootstrap.servers": stack.kafka_bootstrap,
        "group.id": f"verify-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "enable.partition.eof": True,
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    values: list[bytes] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(msg.error())
                at_end.add(msg.partition())
                assigned = {tp.partition for tp in consumer.assignment()}
                if len(values) >= expect_at_least and at_end >= assigned:
                    break
                continue
            at_end.discard(msg.partition())
            values.append(msg.value())
    finally:
        consumer.close()
    return values


def test_committed_is_visible_and_aborted_is_not(stack: Stack, unique) -> None:
    topic = unique("txn")
    admin_producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    admin_producer.list_topics(topic)  # auto-creates the topic with one request

    producer = Producer({
        "bootstrap.servers": stack.kafka_bootstrap,
        "transactional.id": unique("txn-producer"),
    })
    producer.init_transactions(30)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"aborted-{i}".encode())
    producer.flush(10)
    producer.abort_transaction(30)

    producer.begin_transaction()
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"committed-{i}".encode())
    producer.commit_transaction(30)

    values = _read_committed(stack, topic, expect_at_least=5)

    assert values == [f"committed-{i}".encode() for i in range(5)]
