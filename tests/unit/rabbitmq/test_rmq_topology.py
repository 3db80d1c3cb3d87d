"""Which queue settings let RabbitMQ drop a message, as the management API describes them."""

from __future__ import annotations

from typing import Any

import pytest

from sidecar.rabbitmq.topology import assess, declared_info

SAC = {"x-single-active-consumer": True}


def refusals(info: dict[str, Any], version: str = "4.0.5", **kw: Any) -> list[str]:
    return [f.message for f in assess("q", info, version, **kw) if f.refuse]


def quorum(**args: Any) -> dict[str, Any]:
    return {"type": "quorum", "arguments": {"x-queue-type": "quorum", **SAC, **args}}


def test_rabbitmq_4_quorum_queue_without_limit_or_dlx_drops_after_20() -> None:
    (msg,) = refusals(quorum())
    assert "20 times" in msg and "drops them silently" in msg


def test_the_same_queue_on_rabbitmq_3_has_no_limit() -> None:
    assert refusals(quorum(), version="3.13.7") == []


@pytest.mark.parametrize("info", [
    quorum(**{"x-dead-letter-exchange": "parked"}),
    quorum(**{"x-delivery-limit": -1}),
    {"type": "quorum", "arguments": {**SAC},
     "effective_policy_definition": {"dead-letter-exchange": "parked"}},
    {"type": "classic", "arguments": {**SAC}},
])
def test_topologies_that_lose_nothing(info: dict[str, Any]) -> None:
    assert refusals(info) == []


def test_a_dead_letter_exchange_is_named_where_messages_leave() -> None:
    (f,) = assess("q", quorum(**{"x-dead-letter-exchange": "parked"}), "4.0.5")
    assert not f.refuse and "'parked'" in f.message


@pytest.mark.parametrize(("args", "words"), [
    ({"x-max-length": 10}, "drop-head"),
    ({"x-max-length-bytes": 1000}, "drop-head"),
    ({"x-message-ttl": 60000}, "expire"),
    ({"x-expires": 60000}, "deleted"),
])
def test_other_ways_to_drop(args: dict[str, Any], words: str) -> None:
    msgs = refusals({"type": "classic", "arguments": {**SAC, **args}})
    assert len(msgs) == 1 and words in msgs[0]


def test_length_limit_that_rejects_publishes_drops_nothing() -> None:
    assert refusals({"type": "classic", "arguments": {
        **SAC, "x-max-length": 10, "x-overflow": "reject-publish"}}) == []


def test_policy_and_argument_limits_take_the_lower() -> None:
    info = quorum(**{"x-delivery-limit": 50})
    info["effective_policy_definition"] = {"delivery-limit": 30}
    (msg,) = refusals(info)
    assert "30 times" in msg


def test_accepting_loss_turns_refusals_into_warnings() -> None:
    assert refusals(quorum(), accept_message_loss=True) == []
    (f,) = assess("q", quorum(), "4.0.5", accept_message_loss=True)
    assert "accepted" in f.message


def test_a_shared_queue_needs_single_active_consumer() -> None:
    info = {"type": "classic", "arguments": {}}
    (msg,) = refusals(info)
    assert "x-single-active-consumer" in msg
    assert refusals(info, require_single_active_consumer=False) == []


def test_streams_are_refused() -> None:
    assert refusals({"type": "stream", "arguments": SAC})


def test_the_api_answers_an_empty_list_for_no_policy() -> None:
    info = quorum(**{"x-dead-letter-exchange": "p"})
    info["effective_policy_definition"] = []
    assert refusals(info) == []


def test_a_declared_queue_is_judged_by_its_declaration() -> None:
    info = declared_info({"x-queue-type": "quorum", **SAC})
    assert info["type"] == "quorum"
    assert refusals(info)
