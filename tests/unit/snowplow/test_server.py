"""The HTTP shell over an in-memory sink: routes, status codes, headers, durable ack.

What the collector wrote is then run through enrich's core in memory (``enriched``), so
these tests also check that what a request becomes downstream is what it was before the
collector became thin.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from snowplow_tracker import PageView

from sidecar.snowplow.enrich.runner import build_enricher
from sidecar.snowplow.pipeline import Output
from sidecar.snowplow.raw import RawPayload
from sidecar.snowplow.server import PIXEL, SERVER_KWARGS, Collector
from sidecar.snowplow.settings import CollectorSettings, settings_from_dict
from sidecar.snowplow.sink import plan_batch

from .conftest import tp2_body
from .fakes import FakeSink, TransactionAborted

TP2 = "/com.snowplowanalytics.snowplow/tp2"
JSON = {"Content-Type": "application/json; charset=utf-8"}


def _settings(**overrides: Any) -> CollectorSettings:
    raw: dict[str, Any] = {
        "cookie": {"secure": False}, "topics": {"default": "events", "bad": "bad"},
        "http": {"max_body_bytes": 4096, "hard_max_body_bytes": 65536,
                 "paths": {"/com.grocer/t": TP2, "/p.gif": "/i"},
                 "redirect_domains": ["shop.example"]},
        "commit": {"max_wait_ms": 1}}
    for k, v in overrides.items():
        raw.setdefault(k, {}).update(v)
    return settings_from_dict(raw)


def serve(test: Callable[[TestClient, Collector, FakeSink], Awaitable[None]],
          **overrides: Any) -> FakeSink:
    settings = _settings(**overrides)
    sink = FakeSink()
    sink.settings = settings   # for ``enriched``

    async def main() -> None:
        collector = Collector(settings, sink=sink)  # type: ignore[arg-type]
        await collector.start()
        for _ in range(200):
            if collector.ready:
                break
            await asyncio.sleep(0.005)
        server = TestServer(collector.app())
        await server.start_server(**SERVER_KWARGS)
        async with TestClient(server) as client:
            await test(client, collector, sink)
        await collector.stop()

    asyncio.run(main())
    return sink


def enriched(sink: FakeSink) -> list[Output]:
    """What enrich makes of the raw records the collector committed (deduplicated)."""
    enricher = build_enricher(sink.settings)
    outputs = [o for raw in sink.written
               for o in enricher.enrich(raw.headers, raw.value).outputs]
    _, _, dups = plan_batch(outputs, set())
    return [o for i, o in enumerate(outputs) if i not in dups]


def _events(capture, n: int = 2) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    tracker, em = capture()
    for i in range(n):
        tracker.track(PageView(page_url=f"https://shop.example/{i}"))
    return em.events


def _bad(o: Output) -> tuple[str, str]:
    d = json.loads(o.value)["data"]
    return d["check"], d["reason"]


def test_tp2_post_is_one_raw_record_acknowledged_after_commit(capture) -> None:  # type: ignore[no-untyped-def]
    events = _events(capture)
    body = tp2_body(events)

    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        resp = await client.post(TP2, data=body, headers={
            **JSON, "Origin": "https://shop.example", "X-Forwarded-For": "1.2.3.4, 10.0.0.1"})
        assert resp.status == 200 and await resp.text() == "ok"
        assert resp.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Set-Cookie"].startswith("sp=")
        assert len(sink.written) == 1
        raw = RawPayload.from_record(sink.written[0].headers, sink.written[0].value)
        assert raw.body == body and raw.ip == "1.2.3.4" and raw.path == TP2
        assert resp.headers["Set-Cookie"].startswith(f"sp={raw.network_userid};")

    sink = serve(t)
    good = enriched(sink)
    assert [o.outcome for o in good] == ["good", "good"]
    assert json.loads(good[0].value)["payload"]["user_ipaddress"] == "1.2.3.4"


def test_pixel(capture) -> None:  # type: ignore[no-untyped-def]
    params = {k: str(v) for k, v in _events(capture, 1)[0].items()}

    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        for path in ("/i", "/ice.png", "/p.gif"):
            resp = await client.get(path, params={**params, "eid": params["eid"]},
                                    headers={"Cookie": "sp=n-1"})
            assert resp.status == 200 and await resp.read() == PIXEL
            assert resp.headers["Content-Type"] == "image/gif"
            assert "no-store" in resp.headers["Cache-Control"]
            assert "sp=n-1" in resp.headers["Set-Cookie"]
        assert len(sink.written) == 3

    sink = serve(t)
    # Same eid three times: one good event, the two others duplicates.
    good = enriched(sink)
    assert len(good) == 1
    assert json.loads(good[0].value)["payload"]["network_userid"] == "n-1"


def test_path_alias_and_anonymous(capture) -> None:  # type: ignore[no-untyped-def]
    events = _events(capture, 1)

    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        resp = await client.post("/com.grocer/t", data=tp2_body(events),
                                 headers={**JSON, "SP-Anonymous": "*", "Cookie": "sp=abc",
                                          "X-Forwarded-For": "1.2.3.4"})
        assert resp.status == 200 and "Set-Cookie" not in resp.headers
        raw = RawPayload.from_record(sink.written[0].headers, sink.written[0].value)
        assert raw.ip is None and raw.anonymous
        assert not any(b"1.2.3.4" in v or b"127.0.0.1" in v for _, v in sink.written[0].headers)

    sink = serve(t)
    payload = json.loads(enriched(sink)[0].value)["payload"]
    assert payload["user_ipaddress"] is None
    assert payload["network_userid"] == "00000000-0000-0000-0000-000000000000"


def test_redirect_only_to_allowed_hosts(capture) -> None:  # type: ignore[no-untyped-def]
    params = {k: str(v) for k, v in _events(capture, 1)[0].items()}

    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        ok = await client.get("/r/tp2", params={**params, "u": "https://shop.example/x?a=1"},
                              allow_redirects=False)
        assert ok.status == 302 and ok.headers["Location"] == "https://shop.example/x?a=1"
        for target in ("https://evil.example/", "https://evilshop.example/", "javascript:x",
                       ""):
            resp = await client.get("/r/tp2", params={**params, "u": target},
                                    allow_redirects=False)
            assert resp.status == 400, target
        assert len(sink.written) == 1

    sink = serve(t)
    good = enriched(sink)
    assert [o.outcome for o in good] == ["good"]
    # The click is an entity of the event it carried (Snowplow's redirect adapter).
    payload = json.loads(good[0].value)["payload"]
    assert "u" not in payload["params"]
    assert {"schema": "iglu:com.snowplowanalytics.snowplow/uri_redirect/jsonschema/1-0-0",
            "data": {"uri": "https://shop.example/x?a=1"}} in payload["contexts"]


def test_gzip_and_deflate_bodies_are_kept_as_sent_and_land_good(capture) -> None:  # type: ignore[no-untyped-def]
    events = _events(capture, 3)
    body = tp2_body(events)

    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        for enc, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
            resp = await client.post(TP2, data=data,
                                     headers={**JSON, "Content-Encoding": enc})
            assert resp.status == 200
        assert [o.value[:2] for o in sink.written] == [gzip.compress(body)[:2],
                                                        zlib.compress(body)[:2]]

    sink = serve(t)
    good = enriched(sink)   # the second body repeats the first's events: duplicates
    assert [o.outcome for o in good] == ["good"] * 3


def test_kafka_failure_is_503_never_200(capture) -> None:  # type: ignore[no-untyped-def]
    events = _events(capture)

    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        sink.fail_next = [TransactionAborted]
        resp = await client.post(TP2, data=tp2_body(events), headers=JSON)
        assert resp.status == 503
        assert (await client.get("/sink-health")).status == 503
        resp = await client.post(TP2, data=tp2_body(events), headers=JSON)
        assert resp.status == 200
        assert (await client.get("/sink-health")).status == 200

    sink = serve(t)
    assert len(sink.written) == 1


def test_a_record_kafka_refuses_fails_only_its_own_request(capture) -> None:  # type: ignore[no-untyped-def]
    events = _events(capture)

    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        sink.reject_values = {b"poison"}
        results = await asyncio.gather(
            client.post(TP2, data=b"poison", headers=JSON),
            *(client.post(TP2, data=tp2_body(events), headers=JSON) for _ in range(5)))
        assert sorted(r.status for r in results) == [200] * 5 + [503]
        assert results[0].status == 503

    sink = serve(t, commit={"max_wait_ms": 50})
    assert len(sink.written) == 5 and b"poison" not in [o.value for o in sink.written]


def test_bad_requests_are_committed_and_enriched_as_bad_rows() -> None:
    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        resp = await client.post(TP2, data=b"{oops", headers=JSON)
        assert resp.status == 200      # durable; enrich makes it a bad row
        resp = await client.post(TP2, data=b"x" * 5000, headers=JSON)
        assert resp.status == 200
        resp = await client.post(TP2, data=b"x" * 70_000, headers=JSON)
        assert resp.status == 413

    sink = serve(t)
    rows = enriched(sink)
    assert [_bad(o) for o in rows] == [("protocol", "json"), ("size", "request_too_large"),
                                       ("size", "request_too_large")]
    sizes = [json.loads(o.value)["data"]["original"]["size"] for o in rows[1:]]
    assert sizes[0] == 5000 and sizes[1] > 65536


def test_a_post_over_the_limit_is_split_along_event_boundaries(capture) -> None:  # type: ignore[no-untyped-def]
    tracker, em = capture()
    for i in range(60):
        tracker.track(PageView(page_url=f"https://shop.example/{i}", page_title="p" * 40))
    huge = dict(em.events[0], page="z" * 6000)          # alone over the 4 KB limit
    events = [*em.events, huge]
    body = tp2_body(events)
    assert len(body) > 4096 * 3

    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        resp = await client.post(TP2, data=body, headers=JSON)
        assert resp.status == 200
        assert len(sink.written) > 3
        raws = [RawPayload.from_record(o.headers, o.value) for o in sink.written]
        assert all(len(r.body) <= 4096 for r in raws if not r.truncated)
        assert [r.part for r in raws] == [(i, len(raws)) for i in range(len(raws))]

    sink = serve(t)
    out = enriched(sink)
    good = [o for o in out if o.outcome == "good"]
    bad = [o for o in out if o.outcome == "bad"]
    assert sorted(json.loads(o.value)["event_id"] for o in good) == sorted(
        e["eid"] for e in em.events)
    assert [_bad(o) for o in bad] == [("size", "event_too_large")]
    data = json.loads(bad[0].value)["data"]
    assert data["event_index"] == 60 and data["original"]["truncated"] is False


def test_ops_routes() -> None:
    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        assert (await client.get("/health")).status == 200
        assert (await client.get("/sink-health")).status == 200
        robots = await client.get("/robots.txt")
        assert "Disallow: /" in await robots.text()
        pre = await client.options(TP2, headers={"Origin": "https://a.example",
                                                 "Access-Control-Request-Method": "POST"})
        assert pre.status == 200
        assert pre.headers["Access-Control-Allow-Origin"] == "https://a.example"
        assert "SP-Anonymous" in pre.headers["Access-Control-Allow-Headers"]
        await client.post(TP2, data=b"{", headers=JSON)
        text = await (await client.get("/metrics")).text()
        assert 'conveyor_snowplow_requests_total{route="tp2",status="200"} 1.0' in text
        assert 'conveyor_snowplow_events_total{outcome="raw"} 1.0' in text
        assert "conveyor_snowplow_commit_seconds_bucket" in text
        assert "process_cpu_seconds_total" in text
        assert (await client.get("/nope")).status == 404
        collector.draining = True
        assert (await client.get("/health")).status == 503

    serve(t)


def test_not_ready_until_kafka_is() -> None:
    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        collector.ready = False
        resp = await client.post(TP2, data=b"{}", headers=JSON)
        assert resp.status == 503
        assert (await client.get("/sink-health")).status == 503
        assert not sink.batches

    serve(t)
