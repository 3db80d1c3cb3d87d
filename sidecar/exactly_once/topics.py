"""Topic creation with timeouts, for every process that creates its topics on first use.

Routed and dead-letter topics are created when a batch first needs them
(``kafka.create_topics``), so a topic template can fan out to new topics without a ticket
per topic. Outcomes per topic:

- created, or already there: remembered, never asked again;
- refused for good (an invalid name, a policy): returned to the caller, which dead-letters
  the records meant for it instead of retrying a batch that can never commit;
- no answer in time, or any other error: ``TransactionAborted`` (Kafka is starting or
  away); the caller keeps its inputs and tries again later.
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from sidecar.common.errors import TransactionAborted

log = logging.getLogger(__name__)

TOPIC_CREATE_TIMEOUT_S = 30.0
PERMANENT = frozenset({KafkaError.TOPIC_EXCEPTION, KafkaError.POLICY_VIOLATION,
                       KafkaError.INVALID_CONFIG})


def create_topics(admin: Any, topics: Iterable[NewTopic],
                  timeout: float = TOPIC_CREATE_TIMEOUT_S) -> dict[str, str]:
    """Create ``topics`` (idempotent); topic -> reason for those Kafka refused for good.

    Raises TransactionAborted when Kafka does not answer within ``timeout`` or fails."""
    topics = list(topics)
    if not topics:
        return {}
    try:
        futures = admin.create_topics(topics, request_timeout=timeout)
    except KafkaException as exc:
        raise TransactionAborted(f"create topics: {exc}") from exc
    refused: dict[str, str] = {}
    for name, fut in futures.items():
        try:
            fut.result(timeout)
            log.info("kafka.topic_created", extra={"topic": name})
        except concurrent.futures.TimeoutError as exc:
            raise TransactionAborted(f"create topic {name}: no answer within "
                                     f"{timeout:.0f}s") from exc
        except KafkaException as exc:
            err = exc.args[0]
            code = err.code() if isinstance(err, KafkaError) else KafkaError._FAIL
            if code == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            reason = err.str() if isinstance(err, KafkaError) else str(exc)
            if code in PERMANENT:
                refused[name] = reason
                continue
            raise TransactionAborted(f"create topic {name}: {reason}") from exc
    return refused


class TopicCreator:
    """Creates routed and dead-letter topics the first time they are used."""

    def __init__(self, client_config: Mapping[str, object], partitions: int,
                 replication_factor: int, *, admin: Any = None,
                 timeout: float = TOPIC_CREATE_TIMEOUT_S) -> None:
        self._admin = admin if admin is not None else AdminClient(dict(client_config))  # type: ignore[arg-type]
        self._known: set[str] = set()
        self._refused: dict[str, str] = {}
        self._partitions, self._rf = partitions, replication_factor
        self._timeout = timeout

    def ensure(self, topics: set[str]) -> dict[str, str]:
        """Make sure ``topics`` exist; topic -> reason for those that never will."""
        new = topics - self._known - self._refused.keys()
        if new:
            refused = create_topics(
                self._admin, [NewTopic(t, num_partitions=self._partitions,
                                       replication_factor=self._rf) for t in sorted(new)],
                self._timeout)
            self._refused.update(refused)
            self._known.update(new - refused.keys())
        return {t: self._refused[t] for t in topics if t in self._refused}
