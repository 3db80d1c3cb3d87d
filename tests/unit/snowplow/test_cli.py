"""The command line, through click's runner: help that teaches, named exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from sidecar.__main__ import main as bridge
from sidecar.snowplow.cli import Exit


@pytest.fixture(autouse=True)
def _keep_test_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    # The entry point configures root logging; in a test run that would drop pytest's
    # capture handler for every test after this one.
    monkeypatch.setattr("sidecar.common.logs.configure", lambda level="INFO": None)


def test_help_lists_routes_overrides_and_exit_codes() -> None:
    result = CliRunner().invoke(bridge, ["snowplow", "--help"])
    assert result.exit_code == 0
    for needle in ("/com.snowplowanalytics.snowplow/tp2", "CONVEYOR_SNOWPLOW__HTTP__PORT",
                   "--check", "examples/", "4 check_failed"):
        assert needle in result.output


def test_bad_config_exits_with_config_code(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("topics:\n  routes:\n    - {kind: pageview, topic: t}\n")
    result = CliRunner().invoke(bridge, ["snowplow", "--config", str(cfg)])
    assert result.exit_code == Exit.CONFIG
    assert "unknown kind 'pageview'" in result.output


def test_config_is_required() -> None:
    assert CliRunner().invoke(bridge, ["snowplow"]).exit_code == Exit.USAGE


def test_check_reports_broken_schemas_before_touching_kafka(tmp_path: Path) -> None:
    broken = tmp_path / "iglu" / "schemas" / "com.acme" / "x" / "jsonschema" / "1-0-0"
    broken.parent.mkdir(parents=True)
    broken.write_text("{not json")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("iglu: {repositories: [iglu]}\nkafka: {bootstrap_servers: 'nowhere:1'}\n")
    result = CliRunner().invoke(bridge, ["snowplow", "--config", str(cfg), "--check"])
    assert result.exit_code == Exit.CONFIG
    assert "FAIL iglu:com.acme/x/jsonschema/1-0-0" in result.output
