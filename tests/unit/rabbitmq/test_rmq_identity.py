"""event_id derivation: message_id, payload field, else a hash stable across redeliveries."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from sidecar.rabbitmq.identity import HASH_PREFIX, event_id_for


def _eid(**kw: Any) -> str:
    base: dict[str, Any] = {"message_id": None, "payload": {"id": "p-1"}, "payload_field": None,
                            "exchange": "ex", "routing_key": "rk", "body": b'{"id":"p-1"}',
                            "properties": {}, "headers": {}}
    base.update(kw)
    return event_id_for(**base)


def test_message_id_wins() -> None:
    assert _eid(message_id="m-1", payload_field="id") == "m-1"


def test_payload_field_when_no_message_id() -> None:
    assert _eid(payload_field="id") == "p-1"
    assert _eid(payload={"meta": {"event_id": 7}}, payload_field="meta.event_id") == "7"


def test_hash_when_field_missing_or_not_scalar() -> None:
    assert _eid(payload_field="nope").startswith(HASH_PREFIX)
    assert _eid(payload={"id": {"x": 1}}, payload_field="id").startswith(HASH_PREFIX)
    assert _eid(payload={"id": True}, payload_field="id").startswith(HASH_PREFIX)


def test_hash_ignores_what_changes_between_deliveries() -> None:
    first = _eid(properties={"timestamp": 1700000000, "type": "t"}, headers={"a": "1"})
    again = _eid(properties={"timestamp": 1700000000, "type": "t"},
                 headers={"a": "1", "x-delivery-count": 3,
                          "x-death": [{"count": 1, "queue": "q"}]})
    assert first == again
    assert first.startswith(HASH_PREFIX) and len(first) == len(HASH_PREFIX) + 32


def test_hash_depends_on_what_the_publisher_set() -> None:
    base = _eid()
    assert _eid(body=b'{"id":"p-2"}') != base
    assert _eid(routing_key="rk2") != base
    assert _eid(exchange="ex2") != base
    assert _eid(properties={"timestamp": 1}) != base
    assert _eid(headers={"tenant": "a"}) != base
    assert _eid(headers={"tenant": b"a"}) != _eid(headers={"tenant": "a"})


def test_hash_is_order_independent_for_headers() -> None:
    assert _eid(headers={"a": 1, "b": 2}) == _eid(headers={"b": 2, "a": 1})


@given(st.binary(max_size=200), st.text(max_size=30), st.text(max_size=30))
def test_hash_is_deterministic(body: bytes, exchange: str, rk: str) -> None:
    a = _eid(body=body, exchange=exchange, routing_key=rk, payload=None)
    b = _eid(body=body, exchange=exchange, routing_key=rk, payload=None)
    assert a == b


def test_no_ambiguity_between_metadata_and_body() -> None:
    assert _eid(routing_key="a", body=b"bc", payload=None) != \
        _eid(routing_key="ab", body=b"c", payload=None)
