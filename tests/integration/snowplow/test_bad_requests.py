"""Bad requests land as the right bad rows, with the original, and are answered durably."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson

from sidecar.snowplow.iglu import Resolver, SchemaKey

from .conftest import CollectorProcess
from .helpers import flush_all, good_events, landed, make_tracker

pytestmark = pytest.mark.integration

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
BAD_ROW = SchemaKey.parse("iglu:com.conveyor.snowplow/bad_row/jsonschema/1-0-1")
JSON = {"Content-Type": "application/json; charset=utf-8"}


def _payload(tracker_events: list[dict[str, Any]]) -> str:
    return json.dumps({"schema": PAYLOAD_DATA,
                       "data": [{k: str(v) for k, v in e.items()} for e in tracker_events]})


def test_each_kind_of_bad_request(collector: Callable[..., CollectorProcess],
                                  kafka_bootstrap: str) -> None:
    c = collector(http={"max_body_bytes": 8192})
    tracker, emitter, _ = make_tracker(c.endpoint, batch_size=100)
    tracker.track(PageView(page_url="https://shop.example/ok"))                       # good
    tracker.track(PageView(page_url="https://shop.example/b64"))                      # base64
    tracker.track(SelfDescribing(SelfDescribingJson(
        "iglu:com.conveyor.grocer/no_such_event/jsonschema/1-0-0", {"a": 1})))        # unknown
    tracker.track(SelfDescribing(SelfDescribingJson(
        "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0",
        {"order_id": "o-1", "total": -3, "currency": "EUR", "items": 1})))            # violation
    events = emitter.event_store.get_events_batch()
    events[1]["e"], events[1]["ue_px"] = "ue", "eyJzY2hlbWEiOi%%"
    sent = {
        "mixed batch": (_payload(events), JSON),
        "not json": ('{"schema": "iglu:com.snowplowanalytics.snowplow/payload_data', JSON),
        "form body": ("e=pv&tv=js&p=web", {"Content-Type": "application/x-www-form-urlencoded"}),
        "oversize": ("x" * 20_000, JSON),
    }
    with httpx.Client(base_url=c.url) as client:
        for name, (body, headers) in sent.items():
            r = client.post(TP2, content=body, headers=headers)
            # Durable as bad rows: a retry could never do better, so the tracker gets 200.
            assert r.status_code == 200, name

    found = landed(kafka_bootstrap, c.topics)
    assert [e["event_id"] for e in good_events(found)] == [events[0]["eid"]]
    resolver = Resolver()
    rows = {}
    for doc in found["bad"]:
        assert resolver.validate(BAD_ROW, doc["data"]) == []
        d = doc["data"]
        rows[(d["check"], d["reason"])] = d
    assert set(rows) == {("protocol", "base64"), ("schema", "schema_not_found"),
                         ("schema", "schema_violation"), ("protocol", "json"),
                         ("protocol", "content_type"), ("size", "request_too_large")}
    assert len(found["bad"]) == 6

    b64 = rows[("protocol", "base64")]
    assert (b64["event_id"], b64["event_index"]) == (events[1]["eid"], 1)
    assert json.loads(b64["original"]["data"])["ue_px"] == "eyJzY2hlbWEiOi%%"
    assert rows[("schema", "schema_not_found")]["event_index"] == 2
    violation = rows[("schema", "schema_violation")]
    assert violation["violations"][0]["path"] == "$.ue.data.data.total"
    assert violation["violations"][0]["schema"].endswith("order_placed/jsonschema/1-0-0")
    assert rows[("protocol", "json")]["original"]["data"] == sent["not json"][0]
    form = rows[("protocol", "content_type")]
    assert form["original"]["data"] == "e=pv&tv=js&p=web"
    assert form["request"]["content_type"] == "application/x-www-form-urlencoded"
    big = rows[("size", "request_too_large")]
    assert big["original"]["size"] == 20_000 and big["original"]["data"] == "x" * 20_000
    assert big["request"]["ip"] == "127.0.0.1"


def test_binary_body_and_hard_limit(collector: Callable[..., CollectorProcess],
                                    kafka_bootstrap: str) -> None:
    c = collector(http={"max_body_bytes": 4096, "hard_max_body_bytes": 16384})
    with httpx.Client(base_url=c.url) as client:
        assert client.post(TP2, content=b"\x00\xff" * 100, headers=JSON).status_code == 200
        assert client.post(TP2, content=b"y" * 50_000, headers=JSON).status_code == 413
    rows = sorted((d["data"] for d in landed(kafka_bootstrap, c.topics)["bad"]),
                  key=lambda r: r["check"])   # two partitions: no order between them
    assert [(r["check"], r["reason"]) for r in rows] == [("protocol", "encoding"),
                                                         ("size", "request_too_large")]
    assert base64.b64decode(rows[0]["original"]["data"]) == b"\x00\xff" * 100
    assert rows[1]["original"]["size"] > 16384


def test_records_fit_the_raw_topic_and_events_kafka_refuses_are_bad_rows(
        collector: Callable[..., CollectorProcess], kafka_bootstrap: str) -> None:
    """The raw topic takes at most 8 KB per record, the default topic 2 KB.

    The collector sizes its records to the raw topic's limit, so a request with an event
    too large for it is split and the event kept as a sample: 200 and a ``size`` bad row,
    never a 503 Kafka would answer for ever. An event whose raw record fits but whose
    envelope is too large for the default topic becomes a ``size/rejected_by_kafka`` bad
    row in enrich, and the events beside it land."""
    from confluent_kafka.admin import AdminClient, NewTopic

    c = collector(start=False, limits={"max_event_bytes": 100_000})
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for role, limit in (("raw", "8192"), ("default", "2048")):
        admin.create_topics([NewTopic(c.topics[role], 1, -1,
                                      config={"max.message.bytes": limit})])[
            c.topics[role]].result(30)
    c.start()
    import snowplow_tracker

    tracker, emitter, outcomes = make_tracker(c.endpoint, batch_size=1)
    too_big = tracker.track(snowplow_tracker.StructuredEvent(category="c", action="a",
                                                             label="z" * 20_000))
    small = tracker.track(PageView(page_url="https://shop.example/"))
    refused = tracker.track(snowplow_tracker.StructuredEvent(category="c", action="a",
                                                             label="y" * 3000))
    flush_all(emitter)
    assert sorted(outcomes.ok) == sorted([too_big, small, refused]) and not outcomes.failed
    assert httpx.get(f"{c.url}/sink-health").status_code == 200
    found = landed(kafka_bootstrap, c.topics)
    assert [e["event_id"] for e in good_events(found)] == [small]
    rows = sorted((d["data"]["check"], d["data"]["reason"]) for d in found["bad"])
    assert rows == [("size", "event_too_large"), ("size", "rejected_by_kafka")]
    [rejected] = [d["data"] for d in found["bad"] if d["data"]["reason"] == "rejected_by_kafka"]
    assert rejected["event_id"] == refused


def test_check_against_the_real_kafka(kafka_bootstrap: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    from .conftest import ROOT

    def check(bootstrap: str, command: str) -> subprocess.CompletedProcess[str]:
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"kafka: {{bootstrap_servers: '{bootstrap}'}}\n")
        return subprocess.run([sys.executable, "-m", "sidecar", command, "--config",
                               str(cfg), "--check"], cwd=ROOT, capture_output=True, text=True,
                              timeout=120)

    import re
    for command in ("snowplow", "snowplow-enrich"):
        ok = check(kafka_bootstrap, command)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert re.search(r"iglu: (\d+)/\1 schema\(s\) compile", ok.stdout), ok.stdout
        assert "kafka: ok" in ok.stdout and "conveyor.raw.snowplow" in ok.stdout
        down = check("127.0.0.1:1", command)
        assert down.returncode == 4 and "kafka: FAIL" in down.stdout
