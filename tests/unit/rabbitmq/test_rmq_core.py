"""The pure core: envelope, dead-letter decisions with reasons, dedup decision."""

from __future__ import annotations

import io
import json
from typing import Any

import fastavro
import pytest
from rmq_helpers import delivery, make_settings

from sidecar.rabbitmq.core import (
    NO_ROUTE,
    OVERSIZE,
    SCHEMA,
    UNDECODABLE,
    Core,
    occurred_at_ms,
    split_duplicates,
)
from sidecar.rabbitmq.payloads import load_route_schemas

ROBOT = {"robot_id": "r-7", "ts": "2026-01-01T00:00:00Z", "battery_pct": 80}
ORDER = {"order_id": "o-1", "customer_id": "c-1", "total_cents": 1299,
         "items": [{"sku": "apple", "quantity": 3}]}


class FakeAvro:
    """Confluent framing with a fixed id, fastavro underneath: no registry needed."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, topic: str, schema: dict[str, Any], value: dict[str, Any]) -> bytes:
        self.calls.append(topic)
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), value)
        return b"\x00\x00\x00\x00\x07" + buf.getvalue()


def make_core(**overrides: Any) -> tuple[Core, FakeAvro]:
    s = make_settings(**overrides)
    fake = FakeAvro()
    return Core(s, load_route_schemas(s.all_routes(), s.base_dir), fake), fake


def headers_of(rec: Any) -> dict[str, bytes]:
    return dict(rec.headers)


def test_json_route_builds_the_envelope() -> None:
    core, _ = make_core()
    d = delivery(json.dumps(ROBOT), message_id="m-1", type="telemetry", timestamp=1_700_000_000,
                 headers={"x-tenant": "acme"})
    p = core.prepare(d)
    plan = core.plan([p], seen=set(), accepted_at_ms=1_800_000_000_000)
    assert plan.routed == 1 and not plan.dead_letters and plan.ledger_ids == ["m-1"]
    rec = plan.records[0]
    assert rec.topic == "events.robots.telemetry"
    assert rec.key == b"m-1"  # default key: the event_id
    env = json.loads(rec.value)  # type: ignore[arg-type]
    assert env["event_id"] == "m-1"
    assert env["event_type"] == "telemetry"
    assert env["source"] == "rabbitmq:shop"
    assert env["payload"] == ROBOT
    assert env["occurred_at"] == "2023-11-14T22:13:20.000+00:00"
    assert env["accepted_at"].startswith("2027-01-15")
    assert env["attributes"]["amqp.routing_key"] == "robot.telemetry"
    h = headers_of(rec)
    assert h["conveyor.event_id"] == b"m-1"
    assert h["amqp.message_id"] == b"m-1"
    assert h["amqp.header.x-tenant"] == b"acme"
    assert h["amqp.timestamp"] == b"1700000000"


def test_avro_route_uses_the_encoder_and_key_from_payload() -> None:
    core, fake = make_core()
    p = core.prepare(delivery(json.dumps(ORDER), routing_key="order.placed"))
    plan = core.plan([p], set(), 1)
    rec = plan.records[0]
    assert fake.calls == ["events.orders"]
    assert rec.value[:1] == b"\x00" and rec.key == b"o-1"  # type: ignore[index]
    assert p.event_id.startswith("sha256:")


@pytest.mark.parametrize(
    ("body", "routing_key", "reason"),
    [
        (b"\xff\xfe not json", "robot.telemetry", UNDECODABLE),
        (b"{truncated", "robot.telemetry", UNDECODABLE),
        (json.dumps({"robot_id": "r"}), "robot.telemetry", SCHEMA),  # JSON Schema
        (json.dumps({"order_id": 5}), "order.placed", SCHEMA),  # Avro schema
        (json.dumps(ROBOT), "nobody.listens", NO_ROUTE),
    ],
)
def test_poison_goes_to_the_dead_letter_topic_with_its_reason(
        body: bytes | str, routing_key: str, reason: str) -> None:
    core, _ = make_core()
    d = delivery(body, routing_key=routing_key, headers={"trace": "t1"})
    plan = core.plan([core.prepare(d)], set(), 1)
    assert plan.dead_letters == {reason: 1} and plan.routed == 0
    rec = plan.records[0]
    assert rec.topic == "conveyor.dlq.rabbitmq.shop"
    assert rec.value == d.body  # the original bytes, untouched
    h = headers_of(rec)
    assert h["conveyor.dlq.reason"] == reason.encode()
    assert h["conveyor.dlq.detail"]
    assert h["amqp.header.trace"] == b"t1"
    assert h["amqp.routing_key"] == routing_key.encode()
    assert plan.ledger_ids == [h["conveyor.event_id"].decode()]


def test_unrenderable_template_is_no_route() -> None:
    core, _ = make_core(routes=[{"routing_key": "#", "topic": "ev.{type}"}])
    plan = core.plan([core.prepare(delivery(json.dumps(ROBOT)))], set(), 1)
    assert plan.dead_letters == {NO_ROUTE: 1}
    assert b"type" in headers_of(plan.records[0])["conveyor.dlq.detail"]


def test_oversize_body_and_oversize_record() -> None:
    core, _ = make_core(max_message_bytes=50)
    plan = core.plan([core.prepare(delivery(json.dumps({**ROBOT, "pad": "x" * 100})))], set(), 1)
    assert plan.dead_letters == {OVERSIZE: 1}
    core2, _ = make_core(max_record_bytes=1024)
    big = {**ROBOT, "pad": "x" * 2000}
    plan2 = core2.plan([core2.prepare(delivery(json.dumps(big)))], set(), 1)
    assert plan2.dead_letters == {OVERSIZE: 1}
    assert b"max_record_bytes" in headers_of(plan2.records[0])["conveyor.dlq.detail"]


def test_huge_dead_letter_is_cut_and_marked() -> None:
    core, _ = make_core(max_message_bytes=10, dead_letter={"max_record_bytes": 20_000})
    body = b"x" * 50_000
    rec = core.plan([core.prepare(delivery(body))], set(), 1).records[0]
    assert len(rec.value) < 20_000  # type: ignore[arg-type]
    assert headers_of(rec)["conveyor.dlq.truncated_from"] == b"50000"


def test_dedup_decision_skips_committed_and_in_batch_duplicates() -> None:
    core, _ = make_core()
    batch = [core.prepare(delivery(json.dumps(ROBOT), message_id=m, tag=i))
             for i, m in enumerate(["a", "b", "a", "c", "b"], start=1)]
    plan = core.plan(batch, seen={"c"}, accepted_at_ms=1)
    assert plan.ledger_ids == ["a", "b"]
    assert plan.duplicates == 3
    assert len(plan.records) == 2


def test_split_duplicates_first_occurrence_wins() -> None:
    core, _ = make_core()
    a1 = core.prepare(delivery("1", message_id="a", tag=1))
    a2 = core.prepare(delivery("2", message_id="a", tag=2))
    fresh, dups = split_duplicates([a1, a2], seen=())
    assert fresh == [a1] and dups == [a2]


def test_redelivery_without_message_id_gets_the_same_id() -> None:
    core, _ = make_core()
    first = core.prepare(delivery(json.dumps(ROBOT), tag=1))
    again = core.prepare(delivery(json.dumps(ROBOT), tag=99, redelivered=True,
                                  headers={"x-delivery-count": 1}))
    assert first.event_id == again.event_id
    assert core.plan([again], seen={first.event_id}, accepted_at_ms=1).records == []


def test_payload_field_event_id() -> None:
    core, _ = make_core(event_id={"payload_field": "robot_id"})
    assert core.prepare(delivery(json.dumps(ROBOT))).event_id == "r-7"


@pytest.mark.parametrize(
    ("source", "props", "headers", "payload", "expected"),
    [
        ("property:timestamp", {"timestamp": 1_700_000_000}, {}, None, 1_700_000_000_000),
        ("property:timestamp", {}, {}, None, None),
        ("header:ts", {}, {"ts": "2026-01-01T00:00:00+00:00"}, None, 1_767_225_600_000),
        ("header:ts", {}, {"ts": "2026-01-01T00:00:00"}, None, None),  # no zone: unknown
        ("payload:t", {}, {}, {"t": 1_767_225_600_000}, 1_767_225_600_000),
        ("payload:t", {}, {}, {"t": 1_767_225_600}, 1_767_225_600_000),
        ("payload:t", {}, {}, {"t": "soon"}, None),
        ("none", {"timestamp": 5}, {}, None, None),
    ],
)
def test_occurred_at(source: str, props: dict[str, Any], headers: dict[str, Any],
                     payload: Any, expected: int | None) -> None:
    d = delivery("{}", headers=headers, **props)
    assert occurred_at_ms(source, d, payload) == expected


def test_json_envelope_keeps_the_body_as_sent_and_parses() -> None:
    core, _ = make_core()
    raw = b'{ "robot_id": "r-7", "ts": "2026-01-01T00:00:00Z", "battery_pct": 80.5 }\n'
    rec = core.plan([core.prepare(delivery(raw))], set(), 1).records[0]
    assert rec.value.endswith(b',"payload":' + raw + b"}")  # type: ignore[union-attr]
    assert json.loads(rec.value)["payload"]["battery_pct"] == 80.5  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [b'{"x": NaN}', b'{"x": Infinity}', '{"x": 1}'.encode("utf-16"),
                                  b"\xef\xbb\xbf{}"])
def test_non_strict_json_is_undecodable(body: bytes) -> None:
    core, _ = make_core()
    plan = core.plan([core.prepare(delivery(body))], set(), 1)
    assert plan.dead_letters == {UNDECODABLE: 1}
