"""The RabbitMQ topology our tests, `make demo` and `make bench` run against, declared in one
place so none of them drifts from what the bridge is configured to declare.

Every queue is a quorum queue (RabbitMQ 4 replicates only quorum queues and streams; classic
mirroring is gone) with:

- ``x-delivery-limit: -1``: RabbitMQ 4.0 gives quorum queues a default delivery limit of 20
  and drops a message that is returned more often than that (or dead-letters it, when a
  dead-letter exchange is set). The bridge returns a whole batch to the queue whenever Kafka
  cannot take it, so an outage of a few minutes would exhaust 20 deliveries and lose events
  without a trace. -1 restores "no limit", as RabbitMQ's quorum-queue guide documents for
  4.0 ("Disabling the limit"); poison messages are the bridge's to dead-letter (to Kafka),
  never RabbitMQ's to drop.
- ``x-single-active-consumer: true``: of several bridge instances on one queue only one
  receives deliveries; the next takes over when its connection goes. Fencing of a previous
  owner relies on it.

RabbitMQ refuses a re-declaration whose arguments differ from the queue's (406
PRECONDITION_FAILED), so the bridge's ``rabbitmq.topology`` must carry the same arguments:
take them from ``bridge_topology``.
"""

from __future__ import annotations

from typing import Any

import pika

# What every queue of ours is declared with (queue_declare arguments / the bridge config's).
QUEUE_ARGUMENTS: dict[str, Any] = {
    "x-queue-type": "quorum",
    "x-delivery-limit": -1,
    "x-single-active-consumer": True,
}


def declare_topology(rabbitmq_url: str, queue: str, exchange: str | None = None,
                     routing_key: str = "#") -> None:
    """Declare ``queue`` (durable quorum queue with ``QUEUE_ARGUMENTS``) and, when
    ``exchange`` is given, a durable topic exchange bound to it with ``routing_key``.

    Idempotent: declaring the same topology again (as the bridge does at every connect) is
    a no-op; a queue that exists with other arguments raises pika's ChannelClosedByBroker
    (406 PRECONDITION_FAILED) instead of being used as it is. Without ``exchange``, publish
    to the queue through the default exchange (routing key = queue name).
    """
    conn = pika.BlockingConnection(pika.URLParameters(rabbitmq_url))
    try:
        ch = conn.channel()
        if exchange is not None:
            ch.exchange_declare(exchange, exchange_type="topic", durable=True)
        ch.queue_declare(queue, durable=True, arguments=dict(QUEUE_ARGUMENTS))
        if exchange is not None:
            ch.queue_bind(queue, exchange, routing_key=routing_key)
    finally:
        if conn.is_open:
            conn.close()


def bridge_topology(queues: list[str], exchange: str,
                    bindings: dict[str, str] | None = None) -> dict[str, Any]:
    """The bridge config's ``rabbitmq.topology`` section for the same topology as
    ``declare_topology``: ``bindings`` maps queue -> routing key (default ``#`` for each)."""
    keys = bindings or {}
    return {
        "declare": True,
        "exchanges": [{"name": exchange, "type": "topic"}],
        "queues": [{"name": q, "durable": True, "arguments": dict(QUEUE_ARGUMENTS)}
                   for q in queues],
        "bindings": [{"exchange": exchange, "queue": q, "routing_key": keys.get(q, "#")}
                     for q in queues],
    }
