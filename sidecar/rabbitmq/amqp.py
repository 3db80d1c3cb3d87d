"""Every pika call of the bridge, in one place (the way Dramatiq keeps its broker).

A connection that breaks is dropped and rebuilt, never patched; pika's many exception types
are translated into ``AmqpLost`` (reconnect) here.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from sidecar.common.errors import BridgeError

from .core import Delivery
from .settings import BridgeSettings, Topology

log = logging.getLogger(__name__)

PROPERTY_NAMES = ("content_type", "content_encoding", "delivery_mode", "priority",
                  "correlation_id", "reply_to", "expiration", "message_id", "timestamp",
                  "type", "user_id", "app_id", "cluster_id")
# Errors after which the connection (or channel) is gone and must be rebuilt.
LOST = (pika.exceptions.AMQPError, ConnectionError, OSError)


class AmqpLost(BridgeError):
    """The RabbitMQ connection or channel is gone; un-acked deliveries will be redelivered."""


def to_delivery(queue: str, method: Basic.Deliver, props: BasicProperties,
                body: bytes) -> Delivery:
    properties = {n: getattr(props, n) for n in PROPERTY_NAMES if getattr(props, n) is not None}
    return Delivery(queue=queue, delivery_tag=method.delivery_tag, exchange=method.exchange,
                    routing_key=method.routing_key, body=body,
                    redelivered=bool(method.redelivered), properties=properties,
                    headers=dict(props.headers or {}))


class AmqpSession:
    """One connection and one channel consuming one queue."""

    def __init__(self, url: str, settings: BridgeSettings, queue: str) -> None:
        self._url = url
        self._s = settings
        self.queue = queue
        self._conn: pika.BlockingConnection | None = None
        self._ch: BlockingChannel | None = None
        self._tag: str | None = None
        self._cancelled = False

    @property
    def is_open(self) -> bool:
        return bool(self._conn and self._conn.is_open and self._ch and self._ch.is_open)

    @property
    def consuming(self) -> bool:
        """Open, the topology declared and the consumer registered. The channel is open a
        moment before the bindings exist: a publisher told "ready" then would have its
        first messages dropped by the broker as unroutable."""
        return self.is_open and self._tag is not None and not self._cancelled

    def connect(self) -> None:
        params = pika.URLParameters(self._url)
        params.heartbeat = self._s.rabbitmq.heartbeat_s
        params.socket_timeout = self._s.rabbitmq.connect_timeout_s
        params.blocked_connection_timeout = 300
        params.connection_attempts = 1
        params.client_properties = {
            "connection_name": f"conveyor-rabbitmq-{self._s.instance}-{self.queue}"}
        try:
            self._conn = pika.BlockingConnection(params)
            self._ch = self._conn.channel()
            if self._s.rabbitmq.topology.declare:
                declare_topology(self._ch, self._s.rabbitmq.topology)
            # Prefetch before consuming: otherwise RabbitMQ pushes the whole queue at once.
            self._ch.basic_qos(prefetch_count=self._s.rabbitmq.prefetch)
        except LOST as exc:
            self.close()
            raise AmqpLost(f"connect: {describe(exc)}") from exc

    def consume(self, on_delivery: Callable[[Delivery], None]) -> None:
        assert self._ch is not None
        queue = self.queue

        def callback(_ch: Any, method: Basic.Deliver, props: BasicProperties,
                     body: bytes) -> None:
            on_delivery(to_delivery(queue, method, props, body))

        def cancelled(_frame: Any) -> None:
            # The broker cancelled us (queue deleted, node failover): without this we would
            # sit connected, healthy and idle forever.
            self._cancelled = True

        try:
            self._cancelled = False
            self._ch.add_on_cancel_callback(cancelled)
            self._tag = self._ch.basic_consume(queue, callback, auto_ack=False)
        except LOST as exc:
            raise AmqpLost(f"consume {queue}: {describe(exc)}") from exc

    def cancel(self) -> None:
        """Stop deliveries (prefetched but undispatched ones go back to the queue)."""
        if self._ch is not None and self._tag is not None and self.is_open:
            try:
                self._ch.basic_cancel(self._tag)
            except LOST as exc:
                raise AmqpLost(f"cancel: {describe(exc)}") from exc
            self._tag = None

    def pump(self, seconds: float) -> None:
        """Serve the connection (deliveries, heartbeats, thread callbacks) for ``seconds``
        at most; returns early once something was dispatched."""
        if self._conn is None:
            raise AmqpLost("not connected")
        try:
            self._conn.process_data_events(time_limit=max(seconds, 0.0))
        except LOST as exc:
            raise AmqpLost(describe(exc)) from exc
        if self._cancelled:
            raise AmqpLost(f"consumer on {self.queue} cancelled by the broker "
                           "(queue deleted?)")

    def wake_from_thread(self) -> None:
        """Make a ``pump`` in progress return; callable from any thread."""
        conn = self._conn
        if conn is not None and conn.is_open:
            with contextlib.suppress(*LOST):
                conn.add_callback_threadsafe(lambda: None)

    def ack_upto(self, tag: int) -> None:
        try:
            assert self._ch is not None
            self._ch.basic_ack(tag, multiple=True)
        except (AssertionError, *LOST) as exc:
            raise AmqpLost(f"ack: {describe(exc)}") from exc

    def close(self) -> None:
        conn, self._conn, self._ch, self._tag = self._conn, None, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(*LOST):
                conn.close()


def declare_topology(ch: BlockingChannel, topo: Topology) -> None:
    """Durable, idempotent declarations: re-declaring an identical entity is a no-op."""
    for ex in topo.exchanges:
        ch.exchange_declare(ex.name, exchange_type=ex.type, durable=ex.durable)
    for q in topo.queues:
        ch.queue_declare(q.name, durable=q.durable, arguments=q.arguments or None)
    for b in topo.bindings:
        ch.queue_bind(b.queue, b.exchange, routing_key=b.routing_key)


def describe(exc: BaseException) -> str:
    text = str(exc) or repr(exc)
    return f"{type(exc).__name__}: {text}"[:300]
