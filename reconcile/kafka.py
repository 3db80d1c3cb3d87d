"""Where in Kafka a gap can be replayed from: per partition, the first offset at or after
a time (Kafka's ListOffsets by timestamp), and whether retention still holds it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from confluent_kafka import Consumer, KafkaException, TopicPartition


@dataclass(frozen=True)
class ReplayFrom:
    partition: int
    offset: int          # -1: no record at or after the time (the partition's end)
    log_start: int
    end: int

    @property
    def retained(self) -> bool:
        """False when records of the window may already have left the log: Kafka answers
        a time older than everything retained with the log start, so an answer equal to a
        log start that retention has moved means records stamped after the time are gone."""
        return self.offset == -1 or self.log_start == 0 or self.offset > self.log_start

    def as_json(self) -> dict[str, object]:
        return {"partition": self.partition, "offset": self.offset,
                "log_start": self.log_start, "end": self.end, "retained": self.retained}


def replay_offsets(bootstrap: str, topic: str, at: datetime,
                   timeout: float = 15.0) -> list[ReplayFrom]:
    """CreateTime is not monotonic within a partition: the offset Kafka gives is the first
    record whose timestamp is at or after ``at``, and earlier-stamped records may follow it.
    Replaying from it is still complete for records stamped at or after ``at``."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "conveyor-reconcile-probe",
                  "enable.auto.commit": False})
    try:
        meta = c.list_topics(topic, timeout=timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            raise KafkaException(f"topic {topic} not found")
        ms = int(at.timestamp() * 1000)
        asked = [TopicPartition(topic, p, ms) for p in sorted(meta.partitions)]
        out = []
        for tp in c.offsets_for_times(asked, timeout=timeout):
            low, high = c.get_watermark_offsets(TopicPartition(topic, tp.partition),
                                                timeout=timeout)
            out.append(ReplayFrom(tp.partition, tp.offset, low, high))
        return out
    finally:
        c.close()
