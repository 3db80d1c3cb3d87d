"""Routed and dead-letter topics are created on first use (``kafka.create_topics``), so a
topic template can fan out to new topics without a ticket per topic."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from sidecar.common.errors import TransactionAborted

log = logging.getLogger(__name__)

TOPIC_CREATE_TIMEOUT_S = 30.0


class TopicCreator:
    """Creates routed and dead-letter topics the first time they are used."""

    def __init__(self, client_config: dict[str, object], partitions: int,
                 replication_factor: int) -> None:
        self._admin = AdminClient(client_config)  # type: ignore[arg-type]
        self._known: set[str] = set()
        self._partitions, self._rf = partitions, replication_factor

    def ensure(self, topics: set[str]) -> None:
        new = topics - self._known
        if not new:
            return
        futures = self._admin.create_topics(
            [NewTopic(t, num_partitions=self._partitions, replication_factor=self._rf)
             for t in sorted(new)], request_timeout=TOPIC_CREATE_TIMEOUT_S)
        for topic, fut in futures.items():
            try:
                fut.result(TOPIC_CREATE_TIMEOUT_S)
                log.info("kafka.topic_created", extra={"topic": topic})
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise TransactionAborted(f"create topic {topic}: {exc.args[0].str()}") \
                        from exc
            self._known.add(topic)
