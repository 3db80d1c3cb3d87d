"""Kafka on one node runs transactions: what is committed is seen, what is aborted is not;
and our producer gets through a commit Kafka stops answering mid-way."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import Producer

from devstack.committed import consume_committed
from devstack.stack import Stack, compose
from sidecar.common.errors import FatalKafkaError, TransactionAborted
from sidecar.exactly_once.producer import CommitUndecided, OutRecord, TransactionalProducer


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


@pytest.mark.timeout(300)
def test_a_commit_kafka_stops_answering_is_decided_and_the_producer_goes_on(
        stack: Stack, unique) -> None:
    """Fault injection at the worst moment: the records are acknowledged, then Kafka
    freezes just as commit_transaction() goes out, for longer than the transaction
    timeout. librdkafka keeps that commit in progress and refuses any abort or begin
    (_CONFLICT) until it ends, so a producer that only retried or aborted stayed stuck for
    good (the Kafka-outage test once saw it). The producer must say the outcome is unknown,
    decide it by fencing its stuck client, and commit the next batch once Kafka is back."""
    topic = unique("undecided")
    Producer({"bootstrap.servers": stack.kafka_bootstrap}).list_topics(topic)
    tid = unique("tid")
    producer = TransactionalProducer({"bootstrap.servers": stack.kafka_bootstrap,
                                      "transaction.timeout.ms": 10_000}, tid)
    producer.commit([OutRecord(topic, b"before")])
    thaw = threading.Timer(20, lambda: compose("unpause", "kafka"))

    def freeze_before_commit() -> bool:
        assert producer._producer.flush(10) == 0   # every record acknowledged first
        compose("pause", "kafka")
        thaw.start()
        return True

    try:
        with pytest.raises(CommitUndecided):
            producer.commit([OutRecord(topic, b"during")], guard=freeze_before_commit)
    finally:
        thaw.join()
    assert producer.replacements == 1

    def committed() -> list[bytes]:
        return sorted(m.value() or b"" for m in consume_committed(stack.kafka_bootstrap,
                                                                   topic))

    # Kafka, back from a freeze longer than its own session timeouts, takes a while to
    # serve again: retry as the bridges do, reading back what is committed before each
    # retry (a fatal error gets a new producer, whose init fences and decides).
    tries, fresh = 0, 0
    while True:
        tries += 1
        assert tries <= 10, "the producer never committed again"
        try:
            producer.init()   # a client replaced after an undecided try: decided now
        except TransactionAborted:
            continue
        if b"after" in committed():
            break
        try:
            producer.commit([OutRecord(topic, b"after")])
        except FatalKafkaError:
            fresh += 1
            producer = TransactionalProducer({"bootstrap.servers": stack.kafka_bootstrap,
                                              "transaction.timeout.ms": 10_000}, tid)
        except TransactionAborted:
            pass
    print(f"after the freeze: committed at attempt {tries}, {fresh} new producers")
    values = committed()
    # The frozen commit reached the coordinator or not; either way it is decided, once.
    assert values in ([b"after", b"before", b"during"], [b"after", b"before"]), values
    print(f"undecided commit turned out {'committed' if b'during' in values else 'aborted'}")
