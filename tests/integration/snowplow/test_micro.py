"""``conveyor-bridge snowplow-micro`` beside a real collector and enrich: what the real
tracker sent shows up on Micro's API, good events as Avro read through the registry and bad
rows as JSON, filtered by schema, app id, event type and entity."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson

from devstack.stack import Stack
from tests.integration import processes

from .conftest import ROOT, CollectorProcess, wait_until
from .helpers import flush_all, make_tracker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0"
DEVICE = "iglu:com.conveyor.grocer/device/jsonschema/1-0-0"


@pytest.fixture
def micro(collector: Callable[..., CollectorProcess], stack: Stack, tmp_path: Any
          ) -> Iterator[tuple[CollectorProcess, str]]:
    c = collector(schema_registry={"url": stack.schema_registry_url},
                  topics={"default_format": "avro"})
    port = processes.free_port()
    log = (tmp_path / "micro.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "sidecar", "snowplow-micro", "--config",
                             str(c.config_path), "--port", str(port)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "micro.log").read_text()[-2000:]
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    try:
        wait_until(up, 30, "snowplow-micro's /health")
        yield c, url
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_trackers_events_show_up_filtered(micro: tuple[CollectorProcess, str]) -> None:
    c, url = micro
    tracker, emitter, outcomes = make_tracker(c.endpoint, batch_size=3, app_id="micro-shop")
    views = [tracker.track(PageView(page_url=f"https://shop.example/{i}", page_title="P"))
             for i in range(3)]
    device = SelfDescribingJson(DEVICE, {"device_id": "phone-1", "kind": "phone"})
    order = tracker.track(SelfDescribing(SelfDescribingJson(ORDER, {
        "order_id": "o-1", "total": 12.5, "currency": "EUR", "items": 2}), context=[device]))
    tracker.track(SelfDescribing(SelfDescribingJson(ORDER, {      # the schema refuses it
        "order_id": "bad", "total": -1, "currency": "euro", "items": 0})))
    flush_all(emitter)
    assert len(outcomes.ok) == 5

    def counts() -> dict[str, int]:
        return dict(httpx.get(f"{url}/micro/all", timeout=5).json())
    wait_until(lambda: counts()["good"] >= 4 and counts()["bad"] >= 1, 90,
               "micro to see 4 good events and a bad row")
    assert counts() == {"total": 5, "good": 4, "bad": 1}

    def good(**params: str) -> list[str]:
        return [e["event_id"] for e in httpx.get(f"{url}/micro/good", params=params,
                                                 timeout=5).json()]
    assert sorted(good(app_id="micro-shop")) == sorted([*views, order])
    assert good(schema=ORDER) == [order]
    assert good(schema="iglu:com.conveyor.grocer/") == [order]
    assert good(contexts=DEVICE) == [order]
    assert sorted(good(event_type="page_view")) == sorted(views)
    assert good(app_id="someone-else") == []
    (bad,) = httpx.get(f"{url}/micro/bad", params={"app_id": "micro-shop"}, timeout=5).json()
    assert bad["data"]["reason"] == "schema_violation"
    assert httpx.get(f"{url}/micro/reset", timeout=5).json()["total"] == 0
