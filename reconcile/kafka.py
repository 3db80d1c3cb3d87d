"""Where in Kafka a gap can be replayed from: per partition, the first offset at or after
a time, and whether retention still holds it (the replay's own resolution of times)."""

from __future__ import annotations

from datetime import datetime

from confluent_kafka import Consumer, KafkaException

from connectors.replay import OffsetAt, offsets_at


def replay_offsets(bootstrap: str, topic: str, at: datetime,
                   timeout: float = 15.0) -> list[OffsetAt]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "conveyor-reconcile-probe",
                  "enable.auto.commit": False})
    try:
        meta = c.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            raise KafkaException(f"topic {topic} not found")
        return offsets_at(c, topic, at, sorted(meta.partitions), timeout)
    finally:
        c.close()
