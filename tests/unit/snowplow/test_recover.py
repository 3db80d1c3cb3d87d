"""Recovery's pure side: bad rows of every shape back into raw records, filters, refusals,
the dry-run report, and that no bad-row document, however malformed, raises."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson

from sidecar.__main__ import main as bridge
from sidecar.snowplow.badrows import BadRow, RequestInfo
from sidecar.snowplow.enrich.core import Enricher
from sidecar.snowplow.enrich.runner import build_enricher
from sidecar.snowplow.iglu import IgluError, Resolver, SchemaKey
from sidecar.snowplow.recover import Exit
from sidecar.snowplow.recovery.report import RECOVERED_HEADER, Report, replay
from sidecar.snowplow.recovery.rows import Candidate, Refused, plan_row
from sidecar.snowplow.settings import settings_from_dict

from .conftest import tp2_body

TP2 = "/com.snowplowanalytics.snowplow/tp2"
CHECKOUT = "iglu:com.acme/checkout/jsonschema/1-0-0"
SCHEMA = {
    "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/"
               "jsonschema/1-0-0#",
    "self": {"vendor": "com.acme", "name": "checkout", "format": "jsonschema",
             "version": "1-0-0"},
    "type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"],
    "additionalProperties": False,
}


def _enricher(repo: Path) -> Enricher:
    return build_enricher(settings_from_dict({
        "topics": {"default": "events", "bad": "bad"}, "dedup": {"ledger_topic": ""},
        "kafka": {"create_topics": False}, "iglu": {"repositories": [str(repo)]},
        "enrich": {"instance_id": "t"}}))


def _add_schema(repo: Path) -> None:
    path = repo / "schemas/com.acme/checkout/jsonschema/1-0-0"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(SCHEMA))


def _bad_rows(enricher: Enricher, headers: list[tuple[str, bytes]], body: bytes
              ) -> tuple[list[bytes], int]:
    outputs = enricher.enrich(headers, body).outputs
    return [o.value for o in outputs if o.outcome == "bad"], \
        sum(o.outcome == "good" for o in outputs)


def _post_headers(query: str = "", content_type: str = "application/json") -> list[
        tuple[str, bytes]]:
    return [("sp-v", b"1"), ("sp-id", b"r1"), ("sp-m", b"POST"), ("sp-p", TP2.encode()),
            ("sp-q", query.encode()), ("sp-t", b"1700000000000"), ("sp-nuid", b"nuid-1"),
            ("sp-ct", content_type.encode()), ("sp-ua", b"agent/1"), ("sp-ip", b"10.1.2.3")]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return tmp_path / "iglu"


def _checkouts(capture: Any, n: int, method: str = "post") -> list[dict[str, Any]]:
    tracker, em = capture(method=method)
    for i in range(n):
        tracker.track(SelfDescribing(SelfDescribingJson(CHECKOUT, {"total": i + 0.5})))
    tracker.track(PageView(page_url="https://shop.example/"))
    return em.events


def test_unknown_schema_rows_recover_once_the_schema_is_added(capture: Any, repo: Path
                                                              ) -> None:
    enricher = _enricher(repo)
    events = _checkouts(capture, 3)
    rows, good = _bad_rows(enricher, _post_headers("uid=from-query"), tp2_body(events))
    assert (len(rows), good) == (3, 1)
    planned = [plan_row(r) for r in rows]
    assert all(isinstance(p, Candidate) for p in planned)
    cands = [p for p in planned if isinstance(p, Candidate)]
    c = cands[1]
    assert (c.check, c.reason, c.raw.method, c.raw.path) == (
        "schema", "schema_not_found", "POST", TP2)
    assert (c.raw.received_at_ms, c.raw.network_userid, c.raw.ip, c.raw.useragent) == (
        1_700_000_000_000, "nuid-1", "10.1.2.3", "agent/1")
    assert c.raw.query_string == "uid=from-query"
    assert json.loads(c.raw.body)["data"] == [events[1]]

    before = Report(dry_run=True)
    assert replay(cands, enricher, before) == []
    assert before.still_failing["schema/schema_not_found"].count == 3

    _add_schema(repo)   # the same enricher: a miss is looked up again, a hit is cached
    report = Report(dry_run=True)
    good_out = replay(cands, enricher, report)
    assert [json.loads(o.value)["event_id"] for o in good_out] == [e["eid"] for e in events[:3]]
    assert [o.dedup_id for o in good_out] == [e["eid"] for e in events[:3]]
    assert all((RECOVERED_HEADER, c.bad_row_id.encode()) in o.headers
               for o, c in zip(good_out, cands, strict=True))
    env = json.loads(good_out[0].value)
    assert env["accepted_at"].startswith("2023-11-14T22:13:20")
    assert "from-query" in json.dumps(env["payload"])
    assert (report.candidates, report.good, report.still_failing) == (3, 3, {})


def test_a_get_row_becomes_the_same_get(capture: Any, repo: Path) -> None:
    enricher = _enricher(repo)
    events = _checkouts(capture, 1, method="get")
    query = urlencode(events[0])
    headers = [("sp-v", b"1"), ("sp-m", b"GET"), ("sp-p", b"/i"), ("sp-q", query.encode()),
               ("sp-t", b"1700000000000"), ("sp-nuid", b"n"), ("sp-anon", b"1")]
    rows, _ = _bad_rows(enricher, headers, b"")
    (planned,) = [plan_row(r) for r in rows]
    assert isinstance(planned, Candidate)
    assert (planned.raw.method, planned.raw.query_string, planned.raw.body) == ("GET", query, b"")
    assert planned.raw.anonymous and planned.raw.ip is None
    _add_schema(repo)
    assert len(replay([planned], enricher, Report(dry_run=True))) == 1


def test_a_whole_request_row_replays_its_body_as_received(capture: Any, repo: Path) -> None:
    enricher = _enricher(repo)
    body = tp2_body(_checkouts(capture, 2))
    # A content type enrich refused; recovery replays the body with it, as sent.
    rows, _ = _bad_rows(enricher, _post_headers(content_type="text/html"), body)
    (planned,) = [plan_row(r) for r in rows]
    assert isinstance(planned, Candidate)
    assert (planned.reason, planned.raw.body, planned.raw.content_type) == (
        "content_type", body, "text/html")
    report = Report(dry_run=True)
    assert replay([planned], enricher, report) == []
    assert report.still_failing["protocol/content_type"].count == 1


def test_a_binary_original_is_read_back_from_base64(repo: Path) -> None:
    raw = b"\xff\xfe not utf-8"
    row = BadRow("protocol", "unprocessable", "boom", raw,
                 RequestInfo("POST", TP2, content_type="application/json",
                             network_userid="n"), 1_700_000_000_000, "c").to_json(1000)
    assert json.loads(row)["data"]["original"]["encoding"] == "base64"
    planned = plan_row(row)
    assert isinstance(planned, Candidate) and planned.raw.body == raw


def _row(check: str = "schema", reason: str = "schema_not_found", *, original: bytes = b"{}",
         limit: int = 1000, method: str = "POST", path: str = TP2, **kw: Any) -> bytes:
    return BadRow(check, reason, "m", original, RequestInfo(method, path, network_userid="n"),
                  1_700_000_000_000, "c", event_index=kw.pop("event_index", 0),
                  **kw).to_json(limit)


@pytest.mark.parametrize(("row", "kind"), [
    (_row("size", "event_too_large"), "not_replayable"),
    (_row("size", "request_too_large", event_index=None), "not_replayable"),
    (_row("protocol", "raw_format", method="", path="", event_index=None), "not_replayable"),
    (_row("size", "rejected_by_kafka"), "not_replayable"),
    (_row(original=b'{"e":"pv"}' + b" " * 600, limit=300), "truncated"),
    (_row(method="POST", path="/somewhere/else"), "not_replayable"),
    (b"", "unreadable"), (b"not json", "unreadable"), (b"[1]", "unreadable"),
    (b'{"schema": "iglu:com.acme/other/jsonschema/1-0-0", "data": {}}', "unreadable"),
    (json.dumps({"schema": "iglu:com.conveyor.snowplow/bad_row/jsonschema/1-0-1",
                 "data": {"bad_row_id": "x", "check": "schema", "reason": "r"}}).encode(),
     "unreadable"),
])
def test_rows_that_cannot_recover_are_refused_by_kind(row: bytes, kind: str) -> None:
    planned = plan_row(row)
    assert isinstance(planned, Refused), planned
    assert planned.kind == kind, planned


def test_filters_by_check_and_reason() -> None:
    row = _row("enrichment_failures", "ua_parser")
    assert isinstance(plan_row(row, check="enrichment_failures"), Candidate)
    assert isinstance(plan_row(row, reason="ua_parser"), Candidate)
    for kw in ({"check": "schema"}, {"reason": "schema_not_found"},
               {"check": "enrichment_failures", "reason": "pii"}):
        planned = plan_row(row, **kw)
        assert isinstance(planned, Refused) and planned.kind == "filtered"
    report = Report(dry_run=True)
    report.refuse(Refused("filtered", "x"))
    report.refuse(Refused("truncated", "cut", "b1"))
    report.refuse(Refused("truncated", "cut", "b2"))
    doc = report.as_json()
    assert doc["filtered_out"] == 1
    assert doc["refused"] == {"truncated": {"count": 2, "example": {"bad_row_id": "b1",
                                                                    "message": "cut"}}}
    assert "would_recover" in doc
    assert any("not recoverable (truncated): 2" in line for line in report.lines())


def test_the_new_schema_is_seen_by_a_resolver_that_missed_it(repo: Path) -> None:
    resolver = Resolver([repo])
    key = SchemaKey.parse(CHECKOUT)
    with pytest.raises(IgluError, match="none of the Iglu repositories"):
        resolver.validate(key, {"total": 1})
    _add_schema(repo)
    assert resolver.validate(key, {"total": 1}) == []


def test_help_teaches_and_names_exit_codes() -> None:
    result = CliRunner().invoke(bridge, ["snowplow-recover", "--help"])
    assert result.exit_code == 0
    for word in ("--since", "--until", "--check", "--reason", "--dry-run", "--json",
                 "schema_not_found", "5 retention"):
        assert word in result.output
    assert Exit.RETENTION == 5


def test_until_before_since_is_a_usage_error(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("{}")
    result = CliRunner().invoke(bridge, ["snowplow-recover", "--config", str(cfg),
                                         "--since", "-1h", "--until", "-2h"])
    assert result.exit_code == Exit.USAGE


# -- never raises ---------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20)
_fields = ["bad_row_id", "check", "reason", "event_id", "event_index", "received_at",
           "request", "original"]


@st.composite
def _mangled_rows(draw: st.DrawFn) -> bytes:
    """Real bad rows with fields replaced by anything, or dropped."""
    doc = json.loads(_row(original=draw(st.binary(max_size=40)),
                          event_index=draw(st.none() | st.integers(0, 3)),
                          method=draw(st.sampled_from(["GET", "POST", ""])),
                          path=draw(st.sampled_from([TP2, "/i", "/r/tp2", ""]))))
    data = doc["data"]
    for name in draw(st.lists(st.sampled_from(_fields), max_size=3)):
        if draw(st.booleans()):
            data.pop(name, None)
        else:
            data[name] = draw(_json)
    for part in ("request", "original"):
        if isinstance(data.get(part), dict) and draw(st.booleans()):
            data[part][draw(st.text(max_size=12) | st.sampled_from(list(data[part]) or ["x"]))] = \
                draw(_json)
    return json.dumps(doc).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200) | _mangled_rows()
       | st.builds(lambda d: json.dumps(d).encode(), _json))
def test_no_bad_row_document_raises(value: bytes) -> None:
    planned = plan_row(value)
    assert isinstance(planned, Candidate | Refused)
    if isinstance(planned, Candidate):   # what it rebuilt is a raw record enrich reads
        from sidecar.snowplow.raw import RawPayload
        back = RawPayload.from_record(planned.raw.headers(), planned.raw.body)
        assert back.body == planned.raw.body


def test_base64_that_is_not_base64_is_unreadable() -> None:
    doc = json.loads(_row())
    doc["data"]["original"] = {"encoding": "base64", "data": "!!!", "size": 3,
                               "truncated": False}
    planned = plan_row(json.dumps(doc).encode())
    assert isinstance(planned, Refused) and planned.kind == "unreadable"
    assert base64.b64encode(b"x")  # (the encoding the collector writes, for the reader)


def test_why_recovery_does_not_replay_through_the_raw_topic(capture: Any, repo: Path) -> None:
    """Enrich's ledger takes the event id of a bad row of one event, so the running enrich
    would skip a replayed event as a duplicate: recovery keeps a ledger of its own."""
    from sidecar.snowplow.sink import plan_batch

    enricher = _enricher(repo)
    events = _checkouts(capture, 1)
    outputs = enricher.enrich(_post_headers(), tp2_body(events[:1])).outputs
    _, ledger_ids, _ = plan_batch(outputs, set())
    assert ledger_ids == [events[0]["eid"]]          # the bad row's id is in the ledger
    _add_schema(repo)
    (planned,) = [plan_row(o.value) for o in outputs]
    assert isinstance(planned, Candidate)
    good = replay([planned], enricher, Report(dry_run=False))
    assert [o.dedup_id for o in good] == ledger_ids
    _, _, dups = plan_batch(good, set(ledger_ids))
    assert dups == {0}                                # enrich would skip it
