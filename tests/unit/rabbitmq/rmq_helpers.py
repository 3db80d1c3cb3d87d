"""Helpers for the RabbitMQ bridge's unit tests: settings and deliveries as plain values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sidecar.rabbitmq.core import Delivery
from sidecar.rabbitmq.settings import BridgeSettings, settings_from_dict

SCHEMAS = Path(__file__).resolve().parents[3] / "sidecar" / "rabbitmq" / "schemas"


def make_settings(**overrides: Any) -> BridgeSettings:
    raw: dict[str, Any] = {
        "stream": "shop",
        "instance_id": "i1",
        "rabbitmq": {"queues": ["q"]},
        "routes": [
            {"name": "orders", "routing_key": "order.placed", "topic": "events.orders",
             "format": "avro", "schema": "order_placed.avsc", "key": "payload:order_id"},
            {"name": "robots", "routing_key": "robot.#", "topic": "events.robots.{rk[1]}",
             "format": "json", "schema": "robot_telemetry.json"},
        ],
    }
    raw.update(overrides)
    return settings_from_dict(raw, base_dir=SCHEMAS)


def delivery(body: bytes | str, *, routing_key: str = "robot.telemetry", tag: int = 1,
             redelivered: bool = False, **properties: Any) -> Delivery:
    headers = properties.pop("headers", {})
    return Delivery(queue="q", delivery_tag=tag, exchange="ex", routing_key=routing_key,
                    body=body.encode() if isinstance(body, str) else body,
                    redelivered=redelivered, properties=properties, headers=headers)
