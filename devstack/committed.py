"""Read back what Kafka committed on a topic, the way a downstream consumer would see it.

Used by the integration tests and by `make demo` (demo/), which both check their results by
what a read_committed consumer sees: records of aborted transactions never show up.
"""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, KafkaError, Message


def consume_committed(bootstrap: str, topic: str, *, at_least: int = 0,
                      timeout_s: float = 30, group: str = "verify") -> list[Message]:
    """Every committed record of ``topic`` from the start, read until every assigned partition
    is at its end and at least ``at_least`` records were seen, or until ``timeout_s``.

    A fresh consumer group each call (``<group>-<random>``), so nothing read before is skipped.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap,
                         "group.id": f"{group}-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         "enable.partition.eof": True, "enable.auto.commit": False})
    consumer.subscribe([topic])
    messages: list[Message] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    raise RuntimeError(err)
                at_end.add(msg.partition() or 0)
                assigned = {tp.partition for tp in consumer.assignment()}
                if len(messages) >= at_least and at_end >= assigned:
                    break
                continue
            at_end.discard(msg.partition())
            messages.append(msg)
    finally:
        consumer.close()
    return messages
