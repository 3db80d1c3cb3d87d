"""Kafka on one node runs transactions: what is committed is seen, what is aborted is not."""

from __future__ import annotations

from confluent_kafka import Producer

from devstack.committed import consume_committed
from devstack.stack import Stack


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

    values = [m.value() for m in consume_committed(stack.kafka_bootstrap, topic, at_least=5)]

    assert values == [f"committed-{i}".encode() for i in range(5)]
