"""A poison corpus among 20,000 good messages, from RabbitMQ to the warehouse.

The real bridge (a subprocess) drains a quorum queue into Kafka and the real sink lands the
good events as rows. Every good message must be exactly one row; every poison message
exactly one dead letter with its reason and its original bytes; the queue empty at the end.
One message is valid but larger than its topic accepts: Kafka refuses it, and the bridge
must dead-letter that one record and land the rest of its batch.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from connectors import deploy
from connectors.configs import ConnectorFile
from devstack.stack import Stack
from devstack.topology import declare_topology
from tests.integration.landing import Run, for_test, table
from tests.integration.processes import free_port
from tests.integration.rabbitmq.rmq_harness import (
    SCHEMAS,
    BridgeProcess,
    Publisher,
    bridge_env,
    read_committed,
    wait_for,
    write_config,
)
from tests.integration.warehouse import Warehouse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

GOOD = int(os.environ.get("CONVEYOR_POISON_GOOD_MESSAGES", "20000"))
# max.message.bytes of the routed topic, below the bridge's own limit (1 MB), and above the
# record batches librdkafka builds of good messages here (a batch over it fails whole).
TOPIC_LIMIT = 300_000


def nested(depth: int) -> Any:
    value: Any = 1
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


def robot(i: int, **extra: Any) -> bytes:
    return json.dumps({"robot_id": f"r{i % 100}", "ts": "2026-12-01T10:00:00+00:00",
                       "battery_pct": i % 100, **extra}).encode()


# message_id -> (routing key, body, expected dead-letter reason)
POISON: dict[str, tuple[str, bytes, str]] = {
    "p-deep-1200": ("robot.telemetry", b'{"robot_id":' + b"[" * 1200 + b"]" * 1200 + b"}",
                    "undecodable"),
    "p-deep-inside": ("robot.telemetry", robot(1, zone=None, extra=nested(100)),
                      "undecodable"),
    "p-deep-20000": ("robot.telemetry", b"[" * 20_000, "undecodable"),
    "p-binary": ("robot.telemetry", bytes(range(256)) * 8, "undecodable"),
    "p-invalid-utf8": ("robot.telemetry", b'{"robot_id": "\xc3\x28", "battery_pct": 1}',
                       "undecodable"),
    "p-nan": ("robot.telemetry", b'{"robot_id": "r", "ts": "x", "battery_pct": NaN}',
              "undecodable"),
    "p-empty": ("robot.telemetry", b"", "undecodable"),
    "p-huge-body": ("robot.telemetry", robot(2, zone="z" * 1_000_000), "oversize"),
    "p-schema": ("robot.telemetry", robot(3, battery_pct="high"), "schema"),
    "p-no-route": ("nobody.listens", robot(4), "no_route"),
    # Valid, and within the bridge's limits, but over the topic's max.message.bytes.
    "p-kafka-refuses": ("robot.telemetry", robot(5, zone="z" * (TOPIC_LIMIT + 5_000)),
                        "kafka_rejected"),
}

# Good messages with every header type the AMQP codec carries, some deeply nested.
ODD_HEADERS: list[dict[str, Any]] = [
    {"nested": {"a": [1, {"b": decimal.Decimal("1.25")}], "c": {"d": {"e": None}}}},
    {"when": dt.datetime(2026, 12, 1, 10, 0, 0), "raw": b"\xff\x00\xfe", "flag": True},
    {"big": 2 ** 40, "neg": -7, "list": [b"x", "y", 3, [4, [5]]]},  # pika encodes no floats
    {"deep": nested(150)},
    {"unicode": "grüße 🚚", "empty": ""},
]


def queue_doc(stack: Stack, queue: str) -> dict[str, Any]:
    r = httpx.get(f"{stack.rabbitmq_management_url}/api/queues/%2F/{queue}",
                  auth=(stack.rabbitmq_user, stack.rabbitmq_password), timeout=5)
    r.raise_for_status()
    return {k: r.json().get(k) for k in ("messages", "messages_ready",
                                         "messages_unacknowledged", "consumers")}


@pytest.mark.slow
def test_poison_among_good_messages_lands_once_in_kafka_and_in_the_warehouse(
        stack: Stack, run: Run, warehouse: Warehouse, tmp_path: Path,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    stream = run.prefix
    queue, exchange = f"{stream}.q", f"{stream}.ex"
    topic, dlq = f"{stream}.events.robot_telemetry", f"{stream}.dlq"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 3, 1, config={
            "max.message.bytes": str(TOPIC_LIMIT)})]).values():
        fut.result(30)
    declare_topology(stack.rabbitmq_url, queue, exchange)
    config = write_config(
        tmp_path / "bridge.yaml", stack, stream, queue, exchange,
        [{"routing_key": "robot.#", "topic": topic, "event_type": "robot_telemetry",
          "format": "avro", "schema": str(SCHEMAS / "robot_telemetry.avsc"),
          "key": "payload:robot_id", "occurred_at": "payload:ts"}],
        batch={"max_messages": 500})
    port = free_port()
    bridge = BridgeProcess(config, bridge_env(stack, "poison", port), tmp_path / "bridge.log",
                           port).start()
    publisher = Publisher(stack.rabbitmq_url, exchange)
    try:
        bridge.wait_ready()
        deployed(for_test("rabbitmq-events.json", run))
        poison_at = {GOOD * k // (len(POISON) + 1): mid for k, mid in enumerate(POISON, 1)}
        for i in range(GOOD):
            headers = ODD_HEADERS[i % len(ODD_HEADERS)] if i % 997 == 0 else None
            publisher.publish("robot.telemetry", robot(i), message_id=f"g{i}",
                              headers=headers)
            if i in poison_at:
                mid = poison_at[i]
                rk, body, _ = POISON[mid]
                publisher.publish(rk, body, message_id=mid, headers={"trace": mid})
        total = GOOD + len(POISON)
        wait_for(lambda: bridge.metric_sum("conveyor_rabbitmq_consumed_total") >= total
                 and bridge.metric_sum("conveyor_rabbitmq_unacked_in_flight") == 0,
                 300, "every message handled", pause=0.5)
        assert bridge.proc is not None and bridge.proc.poll() is None, bridge.log_tail()
        assert bridge.metric_sum("conveyor_rabbitmq_errors_total{kind=\"kafka_rejected\"") >= 1
        wait_for(lambda: queue_doc(stack, queue)["messages"] == 0, 60,
                 f"queue empty ({queue_doc(stack, queue)}, bridge "
                 f"{ {k: v for k, v in bridge.metrics().items() if 'total' in k} })")
        assert bridge.stop() == 0, bridge.log_tail()
    finally:
        publisher.close()
        if bridge.proc is not None and bridge.proc.poll() is None:
            bridge.kill()

    doc = queue_doc(stack, queue)
    assert doc["messages"] == 0 and doc["messages_unacknowledged"] == 0, doc

    good_ids = {f"g{i}" for i in range(GOOD)}
    landed = Counter(rec.event_id for rec in read_committed(stack.kafka_bootstrap, [topic],
                                                            timeout=120))
    assert not {k: c for k, c in landed.items() if c > 1}, "duplicates in Kafka"
    assert set(landed) == good_ids

    dead = read_committed(stack.kafka_bootstrap, [dlq], timeout=60)
    assert Counter(rec.event_id for rec in dead) == Counter(list(POISON))  # each once
    for rec in dead:
        rk, body, reason = POISON[rec.event_id]
        assert rec.headers["conveyor.dlq.reason"] == reason.encode(), rec.event_id
        assert rec.headers["conveyor.dlq.detail"]
        assert rec.headers["amqp.header.trace"] == rec.event_id.encode()
        if "conveyor.dlq.truncated_from" in rec.headers:
            assert rec.value is not None and body.startswith(rec.value)
        else:
            assert rec.value == body  # the original bytes

    rows = warehouse.wait_count(table(run, "rabbitmq", "robot_telemetry"), GOOD, timeout=240)
    ids = Counter(row["event_id"] for row in rows)
    assert set(ids) == good_ids and max(ids.values()) == 1
