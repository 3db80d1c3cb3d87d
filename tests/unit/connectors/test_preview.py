"""The preview's front end: the container command (secrets by name only), parsing the Java
program's output (never a traceback on junk), golden-file comparison, and the CLI's exit
codes. The program itself runs in tests/integration/connectors/test_preview.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from connectors import preview
from connectors.cli import ExitCode, main
from connectors.configs import ConnectorFile, load_profile


def record(offset: int, outcome: str = "row", **row: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"input": {"topic": "events.x", "partition": 0, "offset": offset},
                         "outcome": outcome}
    if outcome == "row":
        r["table"] = "rabbitmq_x"
        r["columns"] = [{"name": k, "sql_type": "text", "optional": True} for k in row]
        r["row"] = dict(row)
    if outcome == "dead_letter":
        r["dead_letter"] = {"stage": "VALUE_CONVERTER", "class_name": "C",
                            "exception_class_name": "E", "exception_message": "bad"}
    return r


def output(*records: dict[str, Any], summary: dict[str, Any] | None = None) -> str:
    lines = [json.dumps(r) for r in records]
    lines.append(json.dumps({"summary": summary or {"connector": "c",
                                                    "records": len(records)}}))
    return "\n".join(lines)


def test_secrets_reach_the_container_by_name_never_by_value() -> None:
    (c,) = [f for f in load_profile("local") if f.name == "warehouse-rabbitmq-events"]
    cmd = preview.command(preview.Runner(), c, preview.Options(records=3))
    names = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-e"]
    assert names == ["CONVEYOR_POSTGRES_PASSWORD", "CONVEYOR_POSTGRES_USER"]
    assert not any("=" in n for n in names)
    assert cmd[cmd.index("--network") + 1] == preview.DEFAULT_NETWORK
    assert cmd[cmd.index("--bootstrap") + 1] == preview.DEFAULT_BOOTSTRAP
    assert cmd[cmd.index("--from") + 1] == "earliest"


def test_a_time_replaces_the_start_and_inputs_are_mounted_read_only(tmp_path: Path) -> None:
    saved = tmp_path / "golden.jsonl"
    saved.write_text("")
    c = ConnectorFile("c", {"connector.class": "x", "topics": "t"})
    cmd = preview.command(preview.Runner.from_env({"CONVEYOR_PREVIEW_NETWORK": "host",
                                                   "CONVEYOR_PREVIEW_BOOTSTRAP": "b:9092"}),
                          c, preview.Options(since_ms=5, input=saved, overrides={"a": "b=c"}))
    assert "--from" not in cmd and cmd[cmd.index("--since-ms") + 1] == "5"
    assert f"{saved.resolve()}:{preview.IN_CONTAINER_INPUT}:ro" in cmd
    assert cmd[cmd.index("--set") + 1] == "a=b=c"
    assert cmd[cmd.index("--network") + 1] == "host"
    assert cmd[cmd.index("--bootstrap") + 1] == "b:9092"
    remote = preview.Runner.from_env({"CONVEYOR_PREVIEW_NETWORK": "host",
                                      "KAFKA_BOOTSTRAP": "prod:9092"})
    assert remote.bootstrap == "prod:9092"
    assert preview.Runner.from_env({"KAFKA_BOOTSTRAP": "prod:9092"}).bootstrap == \
        preview.DEFAULT_BOOTSTRAP  # on the stack's network, Kafka's name there


def test_parse_keeps_records_and_summary_and_skips_log_lines() -> None:
    text = "[2026] WARN plugin scan\n" + output(record(1, x="a"), record(2, "dead_letter"))
    result = preview.parse(text)
    assert [r["outcome"] for r in result.records] == ["row", "dead_letter"]
    assert result.summary["records"] == 2
    assert len(result.by_outcome("dead_letter")) == 1


def test_the_programs_error_line_becomes_a_named_failure() -> None:
    with pytest.raises(preview.PreviewFailed) as info:
        preview.parse('{"error": {"kind": "source", "message": "no partition to read"}}')
    assert info.value.kind == "source" and "no partition" in info.value.message
    with pytest.raises(preview.PreviewFailed) as cut:
        preview.parse(json.dumps(record(1, x="a")))  # cut off before its summary
    assert cut.value.kind == "runner"


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(["error", "summary", "outcome", "kind",
                                                          "row", "x"]), inner, max_size=3),
                       max_leaves=8)


@given(st.lists(st.text() | JSONISH.map(json.dumps)).map("\n".join))
def test_parse_never_raises_anything_but_preview_failed(text: str) -> None:
    try:
        result = preview.parse(text)
    except preview.PreviewFailed as exc:
        assert exc.kind
    else:
        assert all(r["outcome"] in preview.OUTCOMES for r in result.records)


def test_compare_finds_every_kind_of_difference_and_ignores_landed_at() -> None:
    saved = [record(1, event_id="a", total="1", landed_at="t1"), record(2, "dead_letter"),
             record(3, event_id="c")]
    same = [record(1, event_id="a", total="1", landed_at="t2"), record(2, "dead_letter"),
            record(3, event_id="c")]
    assert preview.compare(saved, same) == []
    changed = [record(1, event_id="a", total="2", landed_at="t2"), record(2, event_id="b"),
               record(4, event_id="d")]
    problems = preview.compare(saved, changed)
    assert any("total was '1', now '2'" in p for p in problems)
    assert any("@2: outcome was 'dead_letter', now 'row'" in p for p in problems)
    assert any("@3: not previewed this time" in p for p in problems)
    assert any("@4: new in this run" in p for p in problems)
    retyped = [dict(record(1, event_id="a", total="1", landed_at="t2"))]
    retyped[0]["columns"][1]["sql_type"] = "bigint"
    assert any("column total" in p for p in preview.compare(saved[:1], retyped))


def test_render_says_what_happens_to_each_record() -> None:
    tf = {"input": {"topic": "t", "partition": 0, "offset": 9}, "outcome": "task_failure",
          "task_failure": {"task_error": "ConnectException (Tolerance exceeded)"}}
    text = preview.render(preview.Result(
        [record(1, event_id="a"), record(2, "dead_letter"), tf,
         {"input": {"topic": "t", "partition": 0, "offset": 3}, "outcome": "filtered"}],
        {"connector": "c", "records": 4, "outcomes": {"row": 1, "dead_letter": 1,
                                                      "task_failure": 1, "filtered": 1}}))
    assert "-> table rabbitmq_x" in text and "event_id" in text
    assert "stage VALUE_CONVERTER in C" in text and "E: bad" in text
    assert "would FAIL" in text and "Tolerance exceeded" in text
    assert "dropped it" in text
    assert text.splitlines()[-1].startswith("c: 4 records previewed")


def _cli(monkeypatch: pytest.MonkeyPatch, out: str, *args: str) -> Any:
    monkeypatch.setattr(preview, "run", lambda c, o, r=None: preview.parse(out))
    file = Path(__file__).resolve().parents[3] / "connectors/configs/local/rabbitmq-events.json"
    return CliRunner().invoke(main, ["preview", str(file), *args])


def test_cli_strict_exits_would_fail_on_a_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    out = output(record(1, event_id="a"), record(2, "dead_letter"))
    assert _cli(monkeypatch, out).exit_code == 0
    assert _cli(monkeypatch, out, "--strict").exit_code == ExitCode.WOULD_FAIL


def test_cli_check_exits_differs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    golden = tmp_path / "g.jsonl"
    golden.write_text(output(record(1, event_id="a", total="1")))
    assert _cli(monkeypatch, output(record(1, event_id="a", total="1")),
                "--check", str(golden)).exit_code == 0
    result = _cli(monkeypatch, output(record(1, event_id="a", total="9")), "--check", str(golden))
    assert result.exit_code == ExitCode.DIFFERS, result.output


def test_cli_maps_failures_to_named_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = '{"error": {"kind": "config", "message": "transforms.x.type: not found"}}'
    result = _cli(monkeypatch, bad)
    assert result.exit_code == ExitCode.INVALID_CONFIG and "not found" in result.output
    down = '{"error": {"kind": "source", "message": "Timeout"}}'
    assert _cli(monkeypatch, down).exit_code == ExitCode.UNREACHABLE
    assert _cli(monkeypatch, down, "--from", "soon").exit_code == ExitCode.USAGE


def test_cli_saves_what_check_reads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = output(record(1, event_id="a"), record(2, "dead_letter"))
    golden = tmp_path / "g.jsonl"
    assert _cli(monkeypatch, out, "--save", str(golden), "--json").exit_code == 0
    assert [r["outcome"] for r in preview.load_saved(golden)] == ["row", "dead_letter"]
    assert _cli(monkeypatch, out, "--check", str(golden)).exit_code == 0
