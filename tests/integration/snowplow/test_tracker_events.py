"""The real Python tracker against the collector: every event lands once, fields intact."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from snowplow_tracker import (
    EmitterConfiguration,
    PageView,
    SelfDescribing,
    SelfDescribingJson,
    Snowplow,
    StructuredEvent,
    Subject,
)

from .conftest import CollectorProcess
from .helpers import duplicates, flush_all, good_events, landed, make_tracker

pytestmark = pytest.mark.integration

ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0"
BASKET = "iglu:com.conveyor.grocer/basket_item/jsonschema/1-0-0"
DEVICE = "iglu:com.conveyor.grocer/device/jsonschema/1-0-0"
ANONYMOUS_NUID = "00000000-0000-0000-0000-000000000000"


def _track_everything(tracker, n: int = 5) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """Page views, structured and self-describing events with contexts; expected by eid."""
    sent: dict[str, dict] = {}
    for i in range(n):
        eid = tracker.track(PageView(page_url=f"https://shop.example/p/{i}",
                                     page_title=f"Product {i}", referrer="https://s.example/"))
        sent[eid] = {"kind": "page_view", "page_url": f"https://shop.example/p/{i}",
                     "page_title": f"Product {i}"}
        eid = tracker.track(StructuredEvent(category="basket", action="add", label=f"sku-{i}",
                                            property_="fruit", value=i + 0.5))
        sent[eid] = {"kind": "struct", "se_label": f"sku-{i}", "se_value": i + 0.5}
        order = {"order_id": f"o-{i}", "total": 10.0 + i, "currency": "EUR", "items": i + 1}
        ctx = [SelfDescribingJson(BASKET, {"sku": f"sku-{i}", "quantity": i + 1}),
               SelfDescribingJson(DEVICE, {"device_id": "phone-1", "kind": "phone"})]
        eid = tracker.track(SelfDescribing(SelfDescribingJson(ORDER, order), context=ctx))
        sent[eid] = {"kind": "self_describing", "unstruct": {"schema": ORDER, "data": order},
                     "contexts": [c.to_json() for c in ctx]}
    return sent


def _check_landed(sent: dict[str, dict], events: list[dict], topics: dict[str, str],
                  found: dict[str, list[dict]]) -> None:
    ids = [e["event_id"] for e in events]
    assert duplicates(ids) == {}
    assert set(ids) == set(sent)
    by_id = {e["event_id"]: e for e in events}
    for eid, want in sent.items():
        env = by_id[eid]
        p = env["payload"]
        assert env["source"] == "snowplow" and env["accepted_at"] and env["occurred_at"]
        assert p["event"] == want["kind"]
        if want["kind"] == "page_view":
            assert (p["page_url"], p["page_title"]) == (want["page_url"], want["page_title"])
            assert env in found["views"]
        elif want["kind"] == "struct":
            assert (p["se_category"], p["se_action"]) == ("basket", "add")
            assert (p["se_label"], p["se_value"]) == (want["se_label"], want["se_value"])
            assert env in found["default"]
        else:
            assert p["unstruct_event"] == want["unstruct"]
            assert p["contexts"] == want["contexts"]
            assert env["event_type"] == "com.conveyor.grocer/order_placed"
            assert env in found["orders"]
    assert found["bad"] == []


@pytest.mark.parametrize("method,batch_size,encode_base64", [
    ("post", 10, True), ("post", 1, False), ("get", 1, True)],
    ids=["post-batches-base64", "post-single-plain-json", "get-pixel"])
def test_every_event_lands_once_with_its_fields(
        collector: Callable[..., CollectorProcess], kafka_bootstrap: str,
        method: str, batch_size: int, encode_base64: bool) -> None:
    c = collector()
    tracker, emitter, outcomes = make_tracker(c.endpoint, method, batch_size=batch_size,
                                              encode_base64=encode_base64)
    tracker.set_subject(Subject().set_user_id("user-7").set_lang("nl"))
    sent = _track_everything(tracker)
    flush_all(emitter)
    assert sorted(outcomes.ok) == sorted(sent) and outcomes.failed == []
    found = landed(kafka_bootstrap, c.topics)
    events = good_events(found)
    _check_landed(sent, events, c.topics, found)
    for env in events:
        assert env["payload"]["user_id"] == "user-7"
        assert env["payload"]["params"]["lang"] == "nl"
        assert env["payload"]["user_ipaddress"] == "127.0.0.1"
        assert env["payload"]["network_userid"] not in (None, ANONYMOUS_NUID)


def test_create_tracker_and_sp_anonymous(collector: Callable[..., CollectorProcess],
                                         kafka_bootstrap: str) -> None:
    import requests

    c = collector()
    session = requests.Session()
    session.headers["SP-Anonymous"] = "*"
    ok: list[dict] = []
    tracker = Snowplow.create_tracker(
        namespace=f"anon-{c.port}", endpoint=f"http://{c.endpoint}", app_id="kiosk",
        emitter_config=EmitterConfiguration(batch_size=3, session=session,
                                            on_success=ok.extend))
    try:
        eids = [tracker.track(PageView(page_url=f"https://kiosk.example/{i}"))
                for i in range(3)]
        flush_all(tracker.emitters[0])  # type: ignore[arg-type]
    finally:
        Snowplow.remove_tracker(tracker)
    assert len(ok) == 3
    events = good_events(landed(kafka_bootstrap, c.topics))
    assert sorted(e["event_id"] for e in events) == sorted(eids)
    for env in events:
        assert env["payload"]["user_ipaddress"] is None
        assert env["payload"]["network_userid"] == ANONYMOUS_NUID
        assert env["payload"]["anonymous"] is True
        assert env["attributes"]["app_id"] == "kiosk"


def test_network_user_id_cookie_round_trip(collector: Callable[..., CollectorProcess],
                                           kafka_bootstrap: str) -> None:
    c = collector(cookie={"name": "grocer_nuid"})
    with httpx.Client(base_url=c.url) as client:
        first = client.get("/i", params={"e": "pv", "tv": "js-3", "p": "web",
                                         "eid": "a1f3c6e2-0b7d-4c59-8a11-2f0e3d4c5b6a"})
        assert first.status_code == 200
        nuid = first.cookies["grocer_nuid"]
        second = client.get("/i", params={"e": "pv", "tv": "js-3", "p": "web",
                                          "eid": "b2f3c6e2-0b7d-4c59-8a11-2f0e3d4c5b6a"})
        assert second.cookies.get("grocer_nuid", nuid) == nuid
        anon = client.get("/i", headers={"SP-Anonymous": "*"},
                          params={"e": "pv", "tv": "js-3", "p": "web",
                                  "eid": "c3f3c6e2-0b7d-4c59-8a11-2f0e3d4c5b6a"})
        assert "set-cookie" not in anon.headers
    events = {e["event_id"][:2]: e for e in good_events(landed(kafka_bootstrap, c.topics))}
    assert events["a1"]["payload"]["network_userid"] == nuid
    assert events["b2"]["payload"]["network_userid"] == nuid
    assert events["c3"]["payload"]["network_userid"] == ANONYMOUS_NUID


def test_tracker_retries_are_not_duplicated(collector: Callable[..., CollectorProcess],
                                            kafka_bootstrap: str) -> None:
    """The same batch posted three times (as a tracker does after a lost 200) lands once."""
    import json

    c = collector()
    tracker, emitter, _ = make_tracker(c.endpoint, batch_size=100)
    for i in range(5):
        tracker.track(PageView(page_url=f"https://shop.example/{i}"))
    events = [{k: str(v) for k, v in e.items()} for e in emitter.event_store.get_events_batch()]
    body = json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/"
                                 "1-0-4", "data": events})
    with httpx.Client(base_url=c.url) as client:
        for _ in range(3):
            r = client.post("/com.snowplowanalytics.snowplow/tp2", content=body,
                            headers={"Content-Type": "application/json; charset=utf-8"})
            assert r.status_code == 200
    c.wait_enriched()
    c.terminate()
    c.terminate_enrich()
    c.start()   # enrich's restart reads the ledger back: the retry is still recognised
    with httpx.Client(base_url=c.url) as client:
        r = client.post("/com.snowplowanalytics.snowplow/tp2", content=body,
                        headers={"Content-Type": "application/json"})
        assert r.status_code == 200
    landed_ids = [e["event_id"] for e in good_events(landed(kafka_bootstrap, c.topics))]
    assert sorted(landed_ids) == sorted(e["eid"] for e in events)
    metrics = httpx.get(f"{c.enrich_url}/metrics").text
    assert 'conveyor_snowplow_enrich_events_total{outcome="duplicate"} 5.0' in metrics
