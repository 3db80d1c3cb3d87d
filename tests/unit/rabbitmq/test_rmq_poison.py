"""No delivery, whatever it holds, can make the core raise: it becomes a dead letter.

The property draws bodies (arbitrary bytes, deep JSON, huge strings, invalid UTF-8),
AMQP properties and headers of every type the AMQP table codec can hand us (and some it
cannot: nested past Python's recursion limit, odd key types), and checks that ``prepare``
and ``plan`` never raise and account for every delivery exactly once."""

from __future__ import annotations

import datetime as dt
import decimal
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rmq_helpers import make_settings

from sidecar.rabbitmq.core import (
    INTERNAL,
    KAFKA_REJECTED,
    UNDECODABLE,
    Core,
    Delivery,
    nested_deeper_than,
)
from sidecar.rabbitmq.payloads import load_route_schemas

SETTINGS = make_settings(dead_letter={"max_record_bytes": 64 * 1024})


def fake_avro(topic: str, schema: dict[str, Any], value: dict[str, Any]) -> bytes:
    return json.dumps(value, default=str).encode()


CORE = Core(SETTINGS, load_route_schemas(SETTINGS.all_routes(), SETTINGS.base_dir), fake_avro)
ROBOT = {"robot_id": "r1", "ts": "2026-01-01T00:00:00Z", "battery_pct": 50}


def deep(n: int, leaf: Any = 1) -> Any:
    value = leaf
    for _ in range(n):
        value = {"a": value} if n % 2 else [value]
    return value


def deep_text(n: int) -> bytes:
    return b"[" * n + b"1" + b"]" * n


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(),
    st.binary(max_size=64), st.decimals(allow_nan=False),
    st.datetimes(timezones=st.none() | st.just(dt.UTC)),
)
field_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                            max_leaves=12)


class Deep:
    """Stands for a value nested ``n`` deep, built only inside the test: Hypothesis prints
    its examples, and printing the value itself would exceed the recursion limit."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __repr__(self) -> str:
        return f"Deep({self.n})"


def materialize(v: Any) -> Any:
    if isinstance(v, Deep):
        return deep(v.n)
    if isinstance(v, dict):
        return {k: materialize(x) for k, x in v.items()}
    return v


hostile_values = st.one_of(field_values, st.builds(Deep, st.integers(1500, 3000)),
                           st.just(decimal.Decimal("NaN")), st.just(object()))

bodies = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda n: deep_text(n), st.integers(60, 5000)),
    st.builds(lambda n: json.dumps({**ROBOT, "x": deep(n)}).encode(), st.integers(1, 200)),
    st.builds(lambda s: json.dumps({**ROBOT, "note": s}).encode(), st.text()),
    st.just(json.dumps(ROBOT).encode()),
    st.just(b'{"robot_id": "\xff\xfe"}'),
    st.just(b'{"robot_id": "\\ud800"}'),
    st.just(b"x" * 200_000),
    st.just(b'{"a": NaN}'),
)
any_text = st.text(alphabet=st.characters(blacklist_categories=()), max_size=16)
properties = st.fixed_dictionaries({}, optional={
    "message_id": hostile_values | any_text, "type": hostile_values, "app_id": hostile_values,
    "timestamp": hostile_values, "content_type": hostile_values,
    "correlation_id": hostile_values, "delivery_mode": hostile_values,
})
headers = st.dictionaries(any_text, hostile_values | any_text, max_size=4)
routing_keys = st.one_of(st.just("robot.telemetry"), st.just("order.placed"), any_text)


@st.composite
def deliveries(draw: st.DrawFn) -> list[Delivery]:
    n = draw(st.integers(1, 4))
    return [Delivery(queue="q", delivery_tag=i + 1, exchange=draw(any_text),
                     routing_key=draw(routing_keys), body=draw(bodies),
                     redelivered=draw(st.booleans()), properties=draw(properties),
                     headers=draw(headers)) for i in range(n)]


def built(d: Delivery) -> Delivery:
    return Delivery(d.queue, d.delivery_tag, d.exchange, d.routing_key, d.body,
                    d.redelivered, materialize(dict(d.properties)),
                    materialize(dict(d.headers)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(deliveries(), st.booleans())
def test_core_never_raises_and_accounts_for_every_delivery(
        batch: list[Delivery], force_first: bool) -> None:
    prepared = [CORE.prepare(built(d)) for d in batch]
    forced = {prepared[0].event_id: (KAFKA_REJECTED, "refused")} if force_first else None
    plan = CORE.plan(prepared, seen=(), accepted_at_ms=1, forced=forced)
    distinct = len({p.event_id for p in prepared})
    assert len(plan.records) == distinct == len(plan.ledger_ids)
    assert plan.duplicates == len(prepared) - distinct
    assert plan.routed + sum(plan.dead_letters.values()) == distinct
    for rec in plan.records:
        if rec.topic == SETTINGS.dead_letter_topic:
            names = dict(rec.headers)
            assert names["conveyor.dlq.reason"]
            assert rec.value is not None
            assert len(rec.value) <= SETTINGS.dead_letter.max_record_bytes


def test_json_nested_past_recursion_is_a_dead_letter_not_a_crash() -> None:
    body = b'{"robot_id":' + deep_text(1200) + b"}"  # the 2.4 KB body that stalled a queue
    p = CORE.prepare(Delivery("q", 1, "ex", "robot.telemetry", body))
    assert p.problem is not None and p.problem[0] == UNDECODABLE
    assert "max_json_depth" in p.problem[1]


def test_header_nested_past_recursion_still_dead_letters_with_the_body() -> None:
    d = Delivery("q", 1, "ex", "nowhere", b"\xff\x00", headers={"h": deep(3000)})
    plan = CORE.plan([CORE.prepare(d)], seen=(), accepted_at_ms=1)
    (rec,) = plan.records
    assert rec.value == b"\xff\x00"
    assert rec.topic == SETTINGS.dead_letter_topic


def test_unexpected_error_for_one_message_is_its_dead_letter() -> None:
    class Exploding:
        def __str__(self) -> str:
            raise RuntimeError("boom")

        __repr__ = __str__

    d = Delivery("q", 1, "ex", "robot.telemetry", json.dumps(ROBOT).encode(),
                 properties={"type": Exploding()})
    good = Delivery("q", 2, "ex", "robot.telemetry",
                    json.dumps({**ROBOT, "robot_id": "r2"}).encode())
    plan = CORE.plan([CORE.prepare(d), CORE.prepare(good)], seen=(), accepted_at_ms=1)
    assert plan.routed == 1
    assert sum(plan.dead_letters.values()) == 1
    assert set(plan.dead_letters) <= {INTERNAL, "no_route", "schema"}


def test_a_forced_record_is_dead_lettered_with_the_reason_kafka_gave() -> None:
    d = Delivery("q", 1, "ex", "robot.telemetry", json.dumps(ROBOT).encode())
    p = CORE.prepare(d)
    plan = CORE.plan([p], seen=(), accepted_at_ms=1,
                     forced={p.event_id: (KAFKA_REJECTED, "MSG_SIZE_TOO_LARGE")})
    (rec,) = plan.records
    assert dict(rec.headers)["conveyor.dlq.reason"] == KAFKA_REJECTED.encode()
    assert plan.dead_letters == {KAFKA_REJECTED: 1}
    assert plan.ledger_ids == [p.event_id]


@given(st.recursive(st.integers() | st.text(alphabet="[]{}\"\\ab"),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(alphabet="[]{}\"\\ab", max_size=3), inner,
                                      max_size=3), max_leaves=30),
       st.integers(1, 8))
def test_depth_check_agrees_with_the_real_depth(value: Any, limit: int) -> None:
    def depth(v: Any) -> int:
        if isinstance(v, list):
            return 1 + max((depth(x) for x in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(x) for x in v.values()), default=0)
        return 0

    assert nested_deeper_than(json.dumps(value).encode(), limit) == (depth(value) > limit)
