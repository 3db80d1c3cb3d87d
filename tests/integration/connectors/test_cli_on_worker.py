"""``conveyor-connectors`` against the real worker: validate rejects a bad transform config
through the plugin's validate endpoint, apply is idempotent, status and delete report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from connectors.cli import ExitCode, main
from connectors.configs import load_profile
from connectors.rest import ConnectClient
from devstack.stack import Stack
from tests.integration.landing import Run, for_test

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def cli(stack: Stack) -> Iterator[callable]:  # type: ignore[valid-type]
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, ["--connect-url", stack.connect_url, *args])
    yield invoke


def _write(path: Path, connector) -> Path:  # type: ignore[no-untyped-def]
    path.write_text(json.dumps({"name": connector.name, "config": connector.config}))
    return path


def test_local_profile_is_valid_on_the_worker(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("validate", "--profile", "local")
    assert result.exit_code == ExitCode.OK, result.output
    assert result.output.count(": valid") == len(load_profile("local")), result.output


def test_validate_reports_a_bad_transform_config_per_key(
        cli, run: Run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = for_test("rabbitmq-events.json", run, **{
        "transforms.unwrap.payload.flatten.depth": "-1",    # validator: at least 0
        "transforms.route.topic.format": "events_static",  # must contain ${value}
    })
    result = cli("validate", str(_write(tmp_path / "bad.json", bad)))
    assert result.exit_code == ExitCode.INVALID_CONFIG, result.output
    assert f"{bad.name}: 2 errors" in result.output
    assert "  transforms.unwrap.payload.flatten.depth: Invalid value -1" in result.output
    assert "  transforms.route.topic.format:" in result.output
    assert "${value}" in result.output


def test_apply_is_idempotent_and_waits_for_running(
        cli, run: Run, tmp_path: Path, connect: ConnectClient) -> None:  # type: ignore[no-untyped-def]
    connector = for_test("snowplow-bad-rows.json", run)
    path = _write(tmp_path / "c.json", connector)
    try:
        first = cli("apply", str(path))
        assert first.exit_code == ExitCode.OK, first.output
        assert f"{connector.name}: created" in first.output
        assert "task 0 RUNNING" in first.output
        before = connect.tasks(connector.name)

        again = cli("apply", str(path))
        assert again.exit_code == ExitCode.OK, again.output
        assert f"{connector.name}: unchanged" in again.output
        assert connect.config(connector.name) == connector.body()
        # Nothing reconfigured: the same task configs, every task still running. (Which
        # worker runs a task is not compared: the cluster rebalances when other tests'
        # connectors come and go, or a worker rejoins.)
        assert connect.tasks(connector.name) == before
        assert connect.status(connector.name).running

        _write(path, connector.with_config(**{"batch.size": "500"}))
        changed = cli("apply", str(path))
        assert changed.exit_code == ExitCode.OK, changed.output
        assert f"{connector.name}: updated" in changed.output
        assert "~ batch.size: 2000 -> 500" in changed.output
        assert all(t["config"]["batch.size"] == "500" for t in connect.tasks(connector.name))

        status = cli("status", connector.name)
        assert status.exit_code == ExitCode.OK and "RUNNING" in status.output
    finally:
        deleted = cli("delete", connector.name)
    assert f"{connector.name}: deleted" in deleted.output
    gone = cli("status", connector.name)
    assert gone.exit_code == ExitCode.NOT_FOUND and "NOT FOUND" in gone.output


def test_apply_shows_the_task_trace_when_a_task_fails(
        cli, run: Run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Valid config, wrong password: the worker accepts it, the task fails on start.
    connector = for_test("snowplow-bad-rows.json", run, **{
        "connection.password": "${env:CONVEYOR_NO_SUCH_VARIABLE}"})
    path = _write(tmp_path / "c.json", connector)
    try:
        result = cli("apply", "--timeout", "90", str(path))
    finally:
        cli("delete", connector.name)
    assert result.exit_code == ExitCode.NOT_RUNNING, result.output
    assert f"{connector.name}: NOT RUNNING" in result.output
    assert "FAILED" in result.output and "Exception" in result.output
