"""Kafka on one node runs transactions: what is committed is seen, what is aborted is not."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, Producer

from tests.integration.stack import Stack


def _read_committed(stack: Stack, topic: str, expect_at_least: int, timeout_s: float = 30) -> list[bytes]:
    """Everything read_committed up to the partition ends (a transaction marker included)."""
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
    eof: set[int] = set()
    import time

    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == msg.error()._PARTITION_EOF:
                    eof.add(msg.partition())
                    if len(values) >= expect_at_least and eof >= set(range(1)):
                        break
                    continue
                raise AssertionError(msg.error())
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
