"""The command line's own parsing (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner

from reconcile.cli import ExitCode, _pairs, main
from reconcile.times import parse_duration, parse_time

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_times_and_durations() -> None:
    assert parse_time("-24h", NOW) == NOW - timedelta(days=1)
    assert parse_time("now", NOW) == NOW
    assert parse_time("2026-11-30T00:00Z", NOW) == datetime(2026, 11, 30, tzinfo=UTC)
    assert parse_time("2026-11-30T01:00", NOW).tzinfo == UTC   # no zone: UTC
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    for bad in ("15", "m", "1w", "-5m"):
        with pytest.raises(click.BadParameter):
            parse_duration(bad)
    with pytest.raises(click.BadParameter):
        parse_time("yesterday", NOW)


def test_compared_columns_pair_by_name_or_explicitly() -> None:
    assert _pairs(("total=amount", "currency")) == (("total", "currency"),
                                                     ("amount", "currency"))
    with pytest.raises(click.BadParameter):
        _pairs(("=amount",))


def test_without_a_dsn_it_says_which_variable_to_set() -> None:
    result = CliRunner().invoke(main, ["--old", "a", "--new", "b", "--since", "-1h"],
                                env={"POSTGRES_DSN": ""})
    assert result.exit_code == ExitCode.USAGE
    assert "POSTGRES_DSN" in result.output


def test_an_empty_window_is_refused() -> None:
    result = CliRunner().invoke(main, ["--old", "a", "--new", "b", "--since", "now",
                                       "--until", "-1h"], env={"POSTGRES_DSN": "x"})
    assert result.exit_code == ExitCode.USAGE and "--since must be before" in result.output


def test_the_old_side_is_a_table_or_a_topic_never_both() -> None:
    env = {"POSTGRES_DSN": "x"}
    for args in ([], ["--old", "a", "--old-topic", "t"]):
        result = CliRunner().invoke(main, ["--new", "b", "--since", "-1h", *args], env=env)
        assert result.exit_code == ExitCode.USAGE and "--old-topic" in result.output
    result = CliRunner().invoke(main, ["--old-topic", "t", "--new", "b", "--since", "-1h",
                                       "--old-where", "true"], env=env)
    assert result.exit_code == ExitCode.USAGE and "--topic-exclude" in result.output
    result = CliRunner().invoke(main, ["--old-topic", "t", "--new", "b", "--since", "-1h",
                                       "--topic-exclude", "canary"], env=env)
    assert result.exit_code == ExitCode.USAGE and "FIELD=VALUE" in result.output


def test_help_teaches_the_topic_mode_and_names_every_exit_code() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "--old-topic" in result.output and "canary" in result.output.lower()
    for code in ExitCode:
        assert f"{code.value}  {code.name}" in result.output


def test_unreadable_topic_records_are_shown_and_are_a_no_go() -> None:
    from collections import Counter

    from reconcile.cli import render
    from reconcile.core import Report
    from reconcile.topic import TopicStats

    report = Report(NOW - timedelta(hours=1), NOW, timedelta(hours=1), [])
    stats = TopicStats(records=3, excluded=1, skipped=Counter({"no event_id": 2}))
    text = render(report, "topic t", "table", {}, count_late=False, stats=stats)
    assert "3 records read, 1 excluded" in text and "unreadable (2): no event_id" in text
    assert text.endswith("DIFFERENCES: see above")
    assert render(report, "topic t", "table", {}, count_late=False,
                  stats=TopicStats(records=3)).endswith("CLEAN: nothing missing, twice or "
                                                        "different")


def test_canaries_are_left_out_by_default_and_can_be_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The SLA exporter's RabbitMQ canaries (ids canary-...) are on Conveyor's side only:
    by default both sides leave them out, in SQL and in a topic's records; '' keeps them."""
    from reconcile import cli as cli_mod
    from reconcile.core import Report
    from reconcile.postgres import Side
    from reconcile.records import RecordSpec, to_record
    from reconcile.topic import TopicSide
    from sla.canary import ID_PREFIX

    assert cli_mod.CANARY_ID_PREFIX == ID_PREFIX
    sides: list[tuple[object, Side]] = []

    def fake_run(old: object, new: Side, lo: datetime, hi: datetime, *a: object,
                 **k: object) -> tuple[Report, None]:
        sides.append((old, new))
        return Report(lo, hi, timedelta(hours=1), []), None

    monkeypatch.setattr(cli_mod, "run", fake_run)
    env = {"POSTGRES_DSN": "postgresql://x"}
    base = ["--new", "rabbitmq_order_placed", "--since", "-1h"]
    for old in (["--old", "legacy.orders"], ["--old-topic", "events.orders.placed"]):
        assert CliRunner().invoke(main, [*old, *base], env=env).exit_code == ExitCode.CLEAN
    assert CliRunner().invoke(main, ["--old", "legacy.orders", *base,
                                     "--exclude-id-prefix", ""], env=env).exit_code == 0
    (table_old, new), (topic_old, _), (kept_old, kept_new) = sides
    assert isinstance(table_old, Side) and isinstance(topic_old, TopicSide)
    assert new.exclude_id_prefix == table_old.exclude_id_prefix == "canary-"
    assert "starts_with" in new.summary_query().as_string(None)
    spec = topic_old.spec
    assert isinstance(spec, RecordSpec)
    canary = {"event_id": "canary-rabbitmq-a1b2c3d4-1", "accepted_at": 1_800_000_000_000}
    assert to_record(canary, spec, None) is None                       # left out
    assert to_record({**canary, "event_id": "e-1"}, spec, None) is not None
    assert not kept_new.exclude_id_prefix and not kept_old.exclude_id_prefix  # type: ignore[attr-defined]
    assert "starts_with" not in kept_new.summary_query().as_string(None)
