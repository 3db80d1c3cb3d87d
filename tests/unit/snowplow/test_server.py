"""The HTTP shell over an in-memory sink: routes, status codes, headers, durable ack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from snowplow_tracker import PageView

from sidecar.snowplow.server import PIXEL, Collector
from sidecar.snowplow.settings import settings_from_dict

from .conftest import tp2_body
from .fakes import FakeSink, TransactionAborted

TP2 = "/com.snowplowanalytics.snowplow/tp2"
JSON = {"Content-Type": "application/json; charset=utf-8"}


def serve(test: Callable[[TestClient, Collector, FakeSink], Awaitable[None]],
          **overrides: Any) -> FakeSink:
    raw = {"cookie": {"secure": False}, "topics": {"default": "events", "bad": "bad"},
           "http": {"max_body_bytes": 4096, "hard_max_body_bytes": 65536,
                    "paths": {"/com.grocer/t": TP2, "/p.gif": "/i"}},
           "commit": {"max_wait_ms": 1}}
    for k, v in overrides.items():
        raw.setdefault(k, {}).update(v)
    sink = FakeSink()

    async def main() -> None:
        collector = Collector(settings_from_dict(raw), sink=sink)  # type: ignore[arg-type]
        await collector.start()
        for _ in range(200):
            if collector.ready:
                break
            await asyncio.sleep(0.005)
        async with TestClient(TestServer(collector.app())) as client:
            await test(client, collector, sink)
        await collector.stop()

    asyncio.run(main())
    return sink


def _events(capture, n: int = 2) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    tracker, em = capture()
    for i in range(n):
        tracker.track(PageView(page_url=f"https://shop.example/{i}"))
    return em.events


def test_tp2_post_is_acknowledged_after_commit(capture) -> None:  # type: ignore[no-untyped-def]
    events = _events(capture)

    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        resp = await client.post(TP2, data=tp2_body(events), headers={
            **JSON, "Origin": "https://shop.example"})
        assert resp.status == 200 and await resp.text() == "ok"
        assert resp.headers["Access-Control-Allow-Origin"] == "https://shop.example"
        assert resp.headers["Access-Control-Allow-Credentials"] == "true"
        assert resp.headers["Set-Cookie"].startswith("sp=")
        assert len(sink.written) == 2

    serve(t)


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
        # Same eid three times: written once, the two others were duplicates.
        assert len(sink.written) == 1
        assert json.loads(sink.written[0].value)["payload"]["network_userid"] == "n-1"

    serve(t)


def test_path_alias_and_anonymous(capture) -> None:  # type: ignore[no-untyped-def]
    events = _events(capture, 1)

    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        resp = await client.post("/com.grocer/t", data=tp2_body(events),
                                 headers={**JSON, "SP-Anonymous": "*", "Cookie": "sp=abc"})
        assert resp.status == 200 and "Set-Cookie" not in resp.headers
        payload = json.loads(sink.written[0].value)["payload"]
        assert payload["user_ipaddress"] is None

    serve(t)


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
    assert len(sink.written) == 2


def test_bad_requests_are_committed_as_bad_rows() -> None:
    async def t(client: TestClient, collector: Collector, sink: FakeSink) -> None:
        resp = await client.post(TP2, data=b"{oops", headers=JSON)
        assert resp.status == 200      # durable as a bad row: a retry would not help
        resp = await client.post(TP2, data=b"x" * 5000, headers=JSON)
        assert resp.status == 200
        resp = await client.post(TP2, data=b"x" * 70_000, headers=JSON)
        assert resp.status == 413
        checks = [(json.loads(o.value)["data"]["check"], json.loads(o.value)["data"]["reason"])
                  for o in sink.written]
        assert checks == [("protocol", "json"), ("size", "request_too_large"),
                          ("size", "request_too_large")]
        sizes = [json.loads(o.value)["data"]["original"]["size"] for o in sink.written[1:]]
        assert sizes[0] == 5000 and sizes[1] > 65536

    serve(t)


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
        assert 'conveyor_snowplow_events_total{outcome="bad"} 1.0' in text
        assert 'conveyor_snowplow_bad_rows_total{check="protocol",reason="json"} 1.0' in text
        assert "conveyor_snowplow_commit_seconds_bucket" in text
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
