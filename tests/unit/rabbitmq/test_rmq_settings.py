"""Settings: file + environment, secrets only from the environment, derived names."""

from __future__ import annotations

from pathlib import Path

import pytest
from rmq_helpers import make_settings

from sidecar.common.errors import ConfigError
from sidecar.rabbitmq.core import Core
from sidecar.rabbitmq.payloads import load_route_schemas
from sidecar.rabbitmq.settings import Secrets, load_settings

EXAMPLES = Path(__file__).resolve().parents[3] / "sidecar" / "rabbitmq" / "examples"


@pytest.mark.parametrize("name", ["minimal.yaml", "full.yaml", "compose.yaml"])
def test_examples_load_with_their_schemas_and_routes(name: str) -> None:
    s = load_settings(EXAMPLES / name)
    assert s.rabbitmq.queues
    Core(s, load_route_schemas(s.all_routes(), s.base_dir))  # schemas parse, templates known


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_RMQ__BATCH__MAX_MESSAGES", "7")
    monkeypatch.setenv("CONVEYOR_RMQ__OPS__PORT", "9123")
    s = load_settings(EXAMPLES / "minimal.yaml")
    assert s.batch.max_messages == 7
    assert s.ops.port == 9123


def test_password_in_file_is_rejected() -> None:
    with pytest.raises(ConfigError, match="CONVEYOR_RABBITMQ_PASSWORD"):
        make_settings(rabbitmq={"queues": ["q"], "url": "amqp://u:secret@h/%2F"})
    with pytest.raises(ConfigError, match="environment"):
        make_settings(kafka={"client": {"sasl.password": "x"}})


def test_unknown_keys_are_rejected_with_their_path() -> None:
    with pytest.raises(ConfigError, match=r"batch\.max_mesages"):
        make_settings(batch={"max_mesages": 5})


def test_batch_must_fit_in_prefetch() -> None:
    with pytest.raises(ConfigError, match="prefetch"):
        make_settings(rabbitmq={"queues": ["q"], "prefetch": 10}, batch={"max_messages": 100})


def test_avro_route_needs_a_schema_and_sources_are_checked() -> None:
    with pytest.raises(ConfigError, match="schema"):
        make_settings(routes=[{"topic": "t", "format": "avro"}])
    with pytest.raises(ConfigError, match="key"):
        make_settings(routes=[{"topic": "t", "key": "payload"}])


def test_secrets_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_settings(rabbitmq={"queues": ["q"], "url": "amqp://rmq:5673/vh"})
    monkeypatch.setenv("CONVEYOR_RABBITMQ_USER", "conveyor")
    monkeypatch.setenv("CONVEYOR_RABBITMQ_PASSWORD", "p@ss/word")
    monkeypatch.setenv("CONVEYOR_KAFKA_SASL_PASSWORD", "k")
    sec = Secrets()
    assert sec.amqp_url(s) == "amqp://conveyor:p%40ss%2Fword@rmq:5673/vh"
    assert "p@ss" not in repr(sec)  # secret types never print
    assert sec.kafka_client_config(s)["sasl.password"] == "k"
    monkeypatch.setenv("CONVEYOR_RABBITMQ_URL", "amqp://a:b@other/%2F")
    assert Secrets().amqp_url(s) == "amqp://a:b@other/%2F"


def test_derived_names(monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_settings()
    assert s.transactional_id("orders.q") == "conveyor-rabbitmq-shop-orders.q"
    # Ownership follows the queue, never the host: a pod rescheduled under a new name
    # must fence the one it replaces.
    assert make_settings(instance_id="other-host").transactional_id("orders.q") == \
        s.transactional_id("orders.q")
    assert s.ledger_topic == "conveyor.ledger.rabbitmq.shop"
    assert s.dead_letter_topic == "conveyor.dlq.rabbitmq.shop"
    monkeypatch.setenv("CONVEYOR_INSTANCE_ID", "pod-3")
    assert make_settings(instance_id=None).instance == "pod-3"


def test_unreadable_or_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stream: [unclosed")
    with pytest.raises(ConfigError, match="YAML"):
        load_settings(bad)
