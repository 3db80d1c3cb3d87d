"""The CLI through click's runner: help that teaches, named exit codes for bad configs."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from sidecar.__main__ import main
from sidecar.rabbitmq.cli import Exit


def test_help_teaches() -> None:
    result = CliRunner().invoke(main, ["rabbitmq", "--help"])
    assert result.exit_code == 0
    for words in ("--config", "--check", "exactly once", "CONVEYOR_RABBITMQ_PASSWORD",
                  "dead-letter", "Exit codes"):
        assert words in result.output


def test_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["rabbitmq", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == Exit.CONFIG
    assert "cannot read config" in result.output


def test_invalid_route_is_a_config_error_in_check(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stream: s\nrabbitmq: {queues: [q]}\n"
                   "routes: [{routing_key: '#', topic: 'ev.{bogus}'}]\n")
    result = CliRunner().invoke(main, ["rabbitmq", "--config", str(cfg), "--check"])
    assert result.exit_code == Exit.CONFIG
    assert "bogus" in result.output


def test_missing_schema_file_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("stream: s\nrabbitmq: {queues: [q]}\n"
                   "routes: [{topic: t, format: avro, schema: none.avsc}]\n")
    result = CliRunner().invoke(main, ["rabbitmq", "--config", str(cfg), "--check"])
    assert result.exit_code == Exit.CONFIG
    assert "none.avsc" in result.output


def test_bridge_is_listed() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "rabbitmq" in result.output
