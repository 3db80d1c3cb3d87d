"""Routing rules: patterns, first match wins, default, templates, partition keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecar.rabbitmq.routing import (
    RouteError,
    Router,
    RoutingInput,
    check_template,
    compile_pattern,
    lookup_path,
    partition_key,
    sanitize_topic,
)
from sidecar.rabbitmq.settings import Route


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("order.placed", "order.placed", True),
        ("order.placed", "order.placed.eu", False),
        ("order.*", "order.placed", True),
        ("order.*", "order", False),
        ("order.*", "order.placed.eu", False),
        ("order.#", "order", True),
        ("order.#", "order.placed.eu", True),
        ("#.eu", "order.placed.eu", True),
        ("#.eu", "eu", True),
        ("#.eu", "order.placed.us", False),
        ("*.placed.#", "order.placed", True),
        ("*.placed.#", "placed", False),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("a.#.b", "a.x.y.c", False),
        ("#", "", True),
        ("#", "anything.at.all", True),
        ("*", "", True),  # RabbitMQ: an empty routing key is one empty word
        ("re:robot\\.[0-9]+", "robot.42", True),
        ("re:robot\\.[0-9]+", "robot.42.x", False),
    ],
)
def test_amqp_topic_patterns(pattern: str, value: str, expected: bool) -> None:
    assert compile_pattern(pattern)(value) is expected


def _input(**kw: object) -> RoutingInput:
    base: dict[str, object] = {"queue": "q", "exchange": "ex", "routing_key": "order.placed"}
    base.update(kw)
    return RoutingInput(**base)  # type: ignore[arg-type]


def test_first_match_wins_then_default() -> None:
    router = Router(
        [Route(routing_key="order.*", topic="orders"),
         Route(routing_key="#", topic="everything")],
        Route(topic="fallback"), stream="s")
    assert router.route(_input()).topic == "orders"  # type: ignore[union-attr]
    assert router.route(_input(routing_key="robot.x")).topic == "everything"  # type: ignore[union-attr]


def test_default_route_and_no_route() -> None:
    with_default = Router([Route(routing_key="order.*", topic="orders")],
                          Route(topic="fallback"), stream="s")
    without = Router([Route(routing_key="order.*", topic="orders")], None, stream="s")
    assert with_default.route(_input(routing_key="robot.x")).topic == "fallback"  # type: ignore[union-attr]
    assert without.route(_input(routing_key="robot.x")) is None


def test_all_conditions_must_match() -> None:
    router = Router([Route(exchange="shop", type="re:order_.*", headers={"x-tenant": "acme"},
                           topic="t")], None, stream="s")
    ok = _input(exchange="shop", type="order_placed", headers={"x-tenant": b"acme"})
    assert router.route(ok) is not None
    assert router.route(_input(exchange="shop", type="order_placed")) is None
    assert router.route(_input(exchange="other", type="order_placed",
                               headers={"x-tenant": "acme"})) is None
    assert router.route(_input(exchange="shop", headers={"x-tenant": "acme"})) is None


def test_templates_render_fields_and_sanitize() -> None:
    router = Router([Route(routing_key="#", topic="ev.{rk[0]}.{type}.{headers[t]}.{stream}",
                           event_type="{exchange}:{routing_key}")], None, stream="wh")
    t = router.route(_input(type="placed", headers={"t": "a b"}))
    assert t is not None
    assert t.topic == "ev.order.placed.a_b.wh"
    assert t.event_type == "ex:order.placed"


def test_event_type_defaults_to_amqp_type_then_routing_key() -> None:
    router = Router([Route(routing_key="#", topic="t")], None, stream="s")
    assert router.route(_input(type="order_placed")).event_type == "order_placed"  # type: ignore[union-attr]
    assert router.route(_input()).event_type == "order.placed"  # type: ignore[union-attr]


def test_template_missing_value_is_a_route_error() -> None:
    router = Router([Route(routing_key="#", topic="ev.{type}")], None, stream="s")
    with pytest.raises(RouteError, match="type"):
        router.route(_input())
    router2 = Router([Route(routing_key="#", topic="ev.{headers[t]}")], None, stream="s")
    with pytest.raises(RouteError):
        router2.route(_input())
    router3 = Router([Route(routing_key="#", topic="ev.{rk[5]}")], None, stream="s")
    with pytest.raises(RouteError):
        router3.route(_input())


def test_unknown_template_field_rejected_at_config_time() -> None:
    with pytest.raises(ValueError, match="unknown template field"):
        check_template("events.{routingkey}", "route x")
    with pytest.raises(ValueError):
        Router([Route(topic="{nope}")], None, stream="s")


def test_sanitize_topic() -> None:
    assert sanitize_topic("a:b/c") == "a_b_c"
    with pytest.raises(RouteError):
        sanitize_topic("")
    with pytest.raises(RouteError):
        sanitize_topic("x" * 250)


def test_partition_key_sources() -> None:
    payload = {"order": {"id": 42}}
    kw = {"event_id": "e1", "routing_key": "rk", "headers": {"h": "hv"}, "payload": payload}
    assert partition_key("event_id", **kw) == b"e1"  # type: ignore[arg-type]
    assert partition_key("routing_key", **kw) == b"rk"  # type: ignore[arg-type]
    assert partition_key("none", **kw) is None  # type: ignore[arg-type]
    assert partition_key("header:h", **kw) == b"hv"  # type: ignore[arg-type]
    assert partition_key("payload:order.id", **kw) == b"42"  # type: ignore[arg-type]
    # Missing: the event_id keeps the record landing.
    assert partition_key("payload:order.nope", **kw) == b"e1"  # type: ignore[arg-type]
    assert partition_key("header:missing", **kw) == b"e1"  # type: ignore[arg-type]


def test_lookup_path() -> None:
    doc = {"a": {"b": [{"c": 1}]}}
    assert lookup_path(doc, "a.b.0.c") == 1
    assert lookup_path(doc, "a.x") is None
    assert lookup_path("scalar", "a") is None


def _reference(pattern: str, key: str) -> bool:
    """RabbitMQ's topic-exchange semantics, written the slow, obvious way."""
    def match(p: list[str], w: list[str]) -> bool:
        if not p:
            return not w
        if p[0] == "#":
            return any(match(p[1:], w[i:]) for i in range(len(w) + 1))
        if not w:
            return False
        return (p[0] == "*" or p[0] == w[0]) and match(p[1:], w[1:])
    return match(pattern.split("."), key.split("."))


_words = st.sampled_from(["a", "b", "c", ""])


@given(st.lists(st.sampled_from(["a", "b", "*", "#"]), min_size=1, max_size=6),
       st.lists(_words, min_size=1, max_size=7))
def test_pattern_matcher_agrees_with_the_reference(pat: list[str], key: list[str]) -> None:
    pattern, routing_key = ".".join(pat), ".".join(key)
    assert compile_pattern(pattern)(routing_key) is _reference(pattern, routing_key)
