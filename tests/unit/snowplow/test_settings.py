"""Settings: the example configs load, the environment overrides, mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.common.errors import ConfigError
from sidecar.snowplow.settings import load_settings, settings_from_dict

EXAMPLES = Path(__file__).resolve().parents[3] / "sidecar" / "snowplow" / "examples"


def test_minimal_example_has_safe_defaults() -> None:
    s = load_settings(EXAMPLES / "minimal.yaml")
    assert s.http.port == 8080
    assert (s.topics.default, s.topics.bad) == ("snowplow.events", "snowplow.bad")
    assert s.commit.unsafe_ack_before_commit is False
    assert s.dedup.ledger_topic and s.cookie.secure


def test_full_example_loads_with_routes() -> None:
    s = load_settings(EXAMPLES / "full.yaml")
    router = s.topics.router()
    assert router.route("self_describing", "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0",
                        "shop").topic == "snowplow.orders"
    assert router.route("struct", None, "fc-ams").topic == "snowplow.fulfilment"
    assert s.transactional_id == "conveyor-snowplow-collector-0"
    assert s.iglu_repositories == [EXAMPLES / "iglu"]
    assert s.cookie.to_config().expiration_s == 365 * 86400


def test_environment_beats_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_SNOWPLOW__HTTP__PORT", "9191")
    monkeypatch.setenv("CONVEYOR_SNOWPLOW__KAFKA__BOOTSTRAP_SERVERS", "kafka:29092")
    s = load_settings(EXAMPLES / "full.yaml")
    assert (s.http.port, s.kafka.bootstrap_servers) == (9191, "kafka:29092")
    assert s.http.max_body_bytes == 1048576     # the rest of the file still applies


@pytest.mark.parametrize("raw,needle", [
    ({"kafka": {"client": {"sasl.password": "x"}}}, "environment"),
    ({"topics": {"routes": [{"kind": "pageview", "topic": "t"}]}}, "unknown kind"),
    ({"topics": {"routes": [{"topic": "t"}]}}, "give kind, schema or app_id"),
    ({"topics": {"default": "bad topic"}}, "topics.default"),
    ({"http": {"paths": {"/x": "/nowhere"}}}, "target must be"),
    ({"http": {"max_body_bytes": 10_000, "hard_max_body_bytes": 5_000}}, "hard_max"),
    ({"commit": {"max_wait_ms": -1}}, "commit.max_wait_ms"),
    ({"cookie": {"same_site": "Sometimes"}}, "cookie.same_site"),
    ({"nope": 1}, "nope"),
])
def test_mistakes_are_named(raw: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        settings_from_dict(raw)


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("http: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)


def test_instance_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_INSTANCE_ID", "pod-3")
    assert settings_from_dict({}).transactional_id == "conveyor-snowplow-pod-3"
