"""Kafka records exactly as the bridges write them, from the bridges' own code.

- ``RabbitMQWriter``: the RabbitMQ bridge's pure core (``sidecar.rabbitmq.core.Core``: event
  ids, routing, envelope, Avro through the registry) and its transactional producer. Only
  pika is left out: deliveries are built as plain values, as the bridge's shell does.
- ``SnowplowWriter``: payloads from the real ``snowplow-tracker`` (captured instead of sent),
  enrich's core (``CollectorCore.process``: validation, envelope, bad rows) and its writer
  (``EnrichWriter``: Avro encoding, transactional produce). Only HTTP, the collector's raw
  topic and enrich's consumer are left out.

Neither keeps a dedup ledger across instances here, so writing the same events again with a
new writer puts them in Kafka a second time: a replay, which the sinks must absorb.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from snowplow_tracker import Tracker

from devstack.stack import ROOT, Stack
from sidecar.common.avro import AvroEncoder
from sidecar.common.envelope import now_ms
from sidecar.exactly_once.ledger import RecentIds
from sidecar.exactly_once.producer import OutRecord, TransactionalProducer
from sidecar.rabbitmq.core import Core, Delivery
from sidecar.rabbitmq.payloads import load_route_schemas
from sidecar.rabbitmq.settings import settings_from_dict as rmq_settings
from sidecar.snowplow.enrich.writer import EnrichWriter
from sidecar.snowplow.iglu import Resolver
from sidecar.snowplow.pipeline import CollectorCore, RawRequest
from sidecar.snowplow.protocol import TP2_PATH
from sidecar.snowplow.settings import Secrets
from sidecar.snowplow.settings import settings_from_dict as snowplow_settings

RMQ_SCHEMAS = ROOT / "sidecar" / "rabbitmq" / "schemas"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"

# A second Avro event type for the RabbitMQ tests: every primitive the warehouse must type,
# a nested record (flattened one level: the record becomes a JSON column), a nullable field.
PICK_SCHEMA: dict[str, Any] = {
    "type": "record", "name": "RobotPicked", "namespace": "conveyor.events.robots",
    "fields": [
        {"name": "robot_id", "type": "string"},
        {"name": "aisle", "type": "int"},
        {"name": "weight_kg", "type": "double"},
        {"name": "fragile", "type": "boolean"},
        {"name": "position", "type": {"type": "record", "name": "Position", "fields": [
            {"name": "x", "type": "double"}, {"name": "y", "type": "double"}]}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


@dataclass(frozen=True)
class Written:
    event_id: str
    event_type: str
    topic: str
    payload: dict[str, Any]
    accepted_at_ms: int


class RabbitMQWriter:
    """Routes: ``order.placed`` -> ``<prefix>.orders.placed`` (event type order_placed, the
    bridge's own order_placed.avsc), ``robot.picked`` -> ``<prefix>.robots.picked``
    (robot_picked, ``PICK_SCHEMA``); both Avro."""

    def __init__(self, stack: Stack, prefix: str, workdir: Path) -> None:
        pick = workdir / "robot_picked.avsc"
        pick.write_text(json.dumps(PICK_SCHEMA))
        self.topics = {"order_placed": f"{prefix}.orders.placed",
                       "robot_picked": f"{prefix}.robots.picked"}
        self.settings = rmq_settings({
            "stream": prefix.replace("_", "-"),
            "rabbitmq": {"queues": ["warehouse.events"]},
            "kafka": {"bootstrap_servers": stack.kafka_bootstrap},
            "schema_registry": {"url": stack.schema_registry_url},
            "routes": [
                {"name": "orders", "routing_key": "order.placed",
                 "topic": self.topics["order_placed"], "event_type": "order_placed",
                 "format": "avro", "schema": "order_placed.avsc", "key": "payload:order_id",
                 "occurred_at": "payload:placed_at"},
                {"name": "picks", "routing_key": "robot.picked",
                 "topic": self.topics["robot_picked"], "event_type": "robot_picked",
                 "format": "avro", "schema": str(pick), "key": "payload:robot_id"},
            ],
        }, base_dir=RMQ_SCHEMAS)
        schemas = load_route_schemas(self.settings.all_routes(), self.settings.base_dir)
        self.encoder = AvroEncoder(stack.schema_registry_url)
        self.core = Core(self.settings, schemas, self.encoder.encode)
        self._conf: dict[str, object] = {"bootstrap.servers": stack.kafka_bootstrap}
        self._producer = TransactionalProducer(self._conf, f"itest-{prefix}")
        self._tag = 0

    def records(self, messages: Iterable[tuple[str, dict[str, Any], str]]
                ) -> tuple[list[OutRecord], list[Written]]:
        """``(routing_key, payload, message_id)`` -> the records the bridge would produce."""
        prepared = []
        for routing_key, payload, message_id in messages:
            self._tag += 1
            prepared.append(self.core.prepare(Delivery(
                queue="warehouse.events", delivery_tag=self._tag, exchange="warehouse",
                routing_key=routing_key, body=json.dumps(payload).encode(),
                properties={"message_id": message_id, "timestamp": int(time.time()),
                            "app_id": "itest"})))
        accepted = now_ms()
        plan = self.core.plan(prepared, seen=(), accepted_at_ms=accepted)
        assert not plan.dead_letters, f"the bridge dead-lettered test messages: {plan}"
        by_id = {p.event_id: p for p in prepared}
        written = []
        for rec in plan.records:
            event_id = dict(rec.headers)["conveyor.event_id"].decode()
            event_type = dict(rec.headers)["conveyor.event_type"].decode()
            written.append(Written(event_id, event_type, rec.topic,
                                   by_id[event_id].payload, accepted))
        return plan.records, written

    def publish(self, messages: Iterable[tuple[str, dict[str, Any], str]]) -> list[Written]:
        """Write as the bridge does: one committed transaction per batch."""
        records, written = self.records(messages)
        self._producer.commit(records)
        return written

    def publish_aborted(self, messages: Iterable[tuple[str, dict[str, Any], str]]) -> None:
        """Records that reach the log inside a transaction that is then aborted (a bridge
        that lost its RabbitMQ channel mid-batch): read_committed readers never see them."""
        records, _ = self.records(messages)
        producer = Producer({**self._conf, "transactional.id": f"itest-abort-{self._tag}"})
        producer.init_transactions(30)
        producer.begin_transaction()
        for rec in records:
            producer.produce(rec.topic, rec.value, rec.key, headers=list(rec.headers))
        assert producer.flush(30) == 0  # in the log, not just in a buffer
        producer.abort_transaction(30)

    def close(self) -> None:
        self._producer.close(5)


def order(i: int, token: str) -> tuple[str, dict[str, Any], str]:
    return ("order.placed", {
        "order_id": f"o-{token}-{i}", "customer_id": f"c-{i % 7}", "total_cents": 1000 + i,
        "currency": "EUR", "items": [{"sku": f"sku-{i}", "quantity": 1 + i % 3}],
        "placed_at": f"2024-05-01T10:{i % 60:02d}:00+00:00"}, f"order-{token}-{i}")


def pick(i: int, token: str) -> tuple[str, dict[str, Any], str]:
    return ("robot.picked", {
        "robot_id": f"r-{i % 4}", "aisle": i, "weight_kg": 0.5 + i, "fragile": i % 2 == 0,
        "position": {"x": float(i), "y": -1.5}, "note": None if i % 2 else f"n{i}"},
        f"pick-{token}-{i}")


class CaptureEmitter:
    """Keeps what the tracker's POST emitter would send, instead of sending it."""

    def __init__(self) -> None:
        self.events: list[dict[str, str]] = []

    def input(self, payload: dict[str, Any]) -> None:
        event = {k: str(v) for k, v in payload.items()}
        event["stm"] = str(int(time.time() * 1000))
        self.events.append(event)

    def flush(self) -> None: ...
    def sync_flush(self) -> None: ...
    def async_flush(self) -> None: ...


class SnowplowWriter:
    """Good events: every kind to ``<prefix>.events`` as Avro (the stack's collector config
    for landed topics); page views routed to ``<prefix>.page_views``. Bad rows to
    ``<prefix>.bad``."""

    def __init__(self, stack: Stack, prefix: str, instance: str) -> None:
        self.topics = {"default": f"{prefix}.events", "page_views": f"{prefix}.page_views",
                       "bad": f"{prefix}.bad"}
        self.settings = snowplow_settings({
            "instance_id": instance,
            "kafka": {"bootstrap_servers": stack.kafka_bootstrap},
            "schema_registry": {"url": stack.schema_registry_url},
            "topics": {"default": self.topics["default"], "default_format": "avro",
                       "bad": self.topics["bad"],
                       "routes": [{"name": "views", "kind": "page_view", "format": "avro",
                                   "topic": self.topics["page_views"]}]},
            "dedup": {"ledger_topic": ""},
            "commit": {"parallel_transactions": 1},
        })
        self.core = CollectorCore(Resolver(), self.settings.topics.router(),
                                  self.settings.topics.bad, collector="conveyor-snowplow/itest")
        secrets = Secrets()
        self._producer = TransactionalProducer(secrets.kafka_client_config(self.settings),
                                               f"itest-snowplow-{instance}")
        self._producer.init()
        self.writer = EnrichWriter(self._producer.commit, None,
                                   RecentIds(10_000),
                                   AvroEncoder(stack.schema_registry_url))

    @staticmethod
    def tracker(app_id: str = "shop") -> tuple[Tracker, CaptureEmitter]:
        emitter = CaptureEmitter()
        return Tracker("itest", emitter, app_id=app_id, encode_base64=False), emitter

    def post(self, events: list[dict[str, str]] | None = None,
             body: bytes | None = None) -> tuple[list[str], int]:
        """One tp2 POST through the collector core and sink; (good event ids, bad rows)."""
        if body is None:
            body = json.dumps({"schema": PAYLOAD_DATA, "data": events}).encode()
        req = RawRequest("POST", TP2_PATH, "", {"content-type": "application/json",
                                                "user-agent": "itest-agent"},
                         body, now_ms(), "10.1.2.3")
        processed = self.core.process(req)
        result = self.writer.commit(self.writer.prepare(processed.outputs), offsets=[],
                                    group_metadata=None)
        assert not result.duplicates
        good = [o.dedup_id for o in processed.outputs if o.outcome == "good"]
        return [g for g in good if g], processed.bad

    def close(self) -> None:
        self._producer.close()
