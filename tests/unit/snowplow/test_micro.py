"""The Micro store and API: filters as Snowplow Micro's, the window with an injected clock,
and answers (never an exception) for any query or any record."""

from __future__ import annotations

import json
from typing import Any

import httpx
from hypothesis import given
from hypothesis import strategies as st

from sidecar.snowplow.micro import BadRow, GoodEvent, Store, Tail, answer, serve

ORDER = "iglu:com.acme/order/jsonschema/1-0-0"
USER = "iglu:com.acme/user/jsonschema/1-0-0"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def envelope(eid: str, kind: str, app: str, unstruct: Any = None,
             contexts: Any = None) -> dict[str, Any]:
    return {"event_id": eid, "event_type": kind, "source": "snowplow",
            "payload": {"app_id": app, "unstruct_event": unstruct, "contexts": contexts}}


def sde(schema: str) -> str:
    return json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/"
                                 "jsonschema/1-0-0", "data": {"schema": schema, "data": {}}})


def ctx(*schemas: str) -> str:
    return json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
                       "data": [{"schema": s, "data": {}} for s in schemas]})


def filled(clock: Clock) -> Store:
    store = Store(window_s=60, clock=clock)
    store.add_good(GoodEvent.from_envelope(envelope("a", "page_view", "shop"), "t", clock()))
    store.add_good(GoodEvent.from_envelope(
        envelope("b", "com.acme/order", "shop", sde(ORDER), ctx(USER)), "t", clock()))
    store.add_good(GoodEvent.from_envelope(
        envelope("c", "com.acme/order", "app2", sde(ORDER)), "t", clock()))
    store.add_bad(BadRow.from_doc({"schema": "iglu:x", "data": {
        "check": "schema", "reason": "schema_not_found", "message": "no such schema",
        "original": {"encoding": "utf-8", "data": json.dumps({"aid": "shop", "e": "ue"})}}},
        clock()))
    return store


def test_filters_as_micro_has_them_newest_first() -> None:
    store = filled(Clock())
    assert [e.event_id for e in store.good_events()] == ["c", "b", "a"]
    assert [e.event_id for e in store.good_events(schema=ORDER)] == ["c", "b"]
    assert [e.event_id for e in store.good_events(schema="iglu:com.acme/")] == ["c", "b"]
    assert [e.event_id for e in store.good_events(app_id="shop")] == ["b", "a"]
    assert [e.event_id for e in store.good_events(event_type="page_view")] == ["a"]
    assert [e.event_id for e in store.good_events(contexts="iglu:com.acme/user")] == ["b"]
    assert [e.event_id for e in store.good_events(limit=1)] == ["c"]
    (bad,) = store.bad_rows(app_id="shop")
    assert bad.reason == "schema_not_found"
    assert store.bad_rows(reason="schema_violation") == []


def test_the_window_forgets_old_events_and_reset_forgets_all() -> None:
    clock = Clock()
    store = filled(clock)
    assert store.counts() == {"total": 4, "good": 3, "bad": 1}
    clock.now += 61
    store.add_good(GoodEvent.from_envelope(envelope("d", "page_view", "shop"), "t", clock()))
    assert store.counts() == {"total": 1, "good": 1, "bad": 0}
    store.reset()
    assert store.counts() == {"total": 0, "good": 0, "bad": 0}


def test_at_most_max_items_are_kept() -> None:
    store = Store(window_s=60, max_items=2, clock=Clock())
    for i in range(5):
        store.add_good(GoodEvent.from_envelope(envelope(f"e{i}", "page_view", "s"), "t", 1000))
    assert [e.event_id for e in store.good_events()] == ["e4", "e3"]


def test_api_answers_like_micro_and_refuses_a_bad_limit() -> None:
    store = filled(Clock())
    assert answer(store, "/micro/all") == (200, {"total": 4, "good": 3, "bad": 1})
    status, good = answer(store, f"/micro/good?schema={ORDER}&app_id=shop")
    assert status == 200 and [e["event_id"] for e in good] == ["b"]
    assert good[0]["contexts"] == [USER]
    status, bad = answer(store, "/micro/bad?reason=schema_not_found")
    assert status == 200 and bad[0]["data"]["check"] == "schema"
    assert answer(store, "/micro/good?limit=lots")[0] == 400
    assert answer(store, "/nowhere")[0] == 404
    assert answer(store, "/micro/reset") == (200, {"total": 0, "good": 0, "bad": 0})


def test_served_over_http() -> None:
    server = serve(filled(Clock()), "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert httpx.get(f"{base}/micro/all").json()["good"] == 3
        assert httpx.get(f"{base}/micro/good", params={"app_id": "app2"}).json()[0][
            "event_id"] == "c"
        assert httpx.get(f"{base}/micro/good", params={"limit": "-1"}).status_code == 400
    finally:
        server.shutdown()


@given(st.text(max_size=80))
def test_any_query_gets_an_answer(url: str) -> None:
    status, body = answer(filled(Clock()), "/micro/good?" + url)
    assert status in (200, 400)
    json.dumps(body, default=str)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                       lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.sampled_from(["payload", "data", "schema",
                                                          "app_id", "original", "aid",
                                                          "unstruct_event", "contexts",
                                                          "event_id", "reason"]),
                                         inner, max_size=4), max_leaves=12)


@given(JSONISH, st.booleans())
def test_no_record_stops_the_tail(doc: Any, bad: bool) -> None:
    store = Store(window_s=60, clock=Clock())
    tail = Tail(store, {}, ["good"], "bad", None)
    tail._take("bad" if bad else "good", json.dumps(doc).encode(), lambda _t, v: json.loads(v))
    counts = store.counts()
    assert counts["total"] + tail.unreadable == 1
    for e in store.good_events():
        json.dumps(e.as_json(), default=str)
