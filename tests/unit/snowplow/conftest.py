"""Fixtures for the collector's unit tests: real tracker payloads, no network, no process.

Payloads come from the real ``snowplow-tracker`` library with an emitter that captures
instead of sending, so the tests parse exactly what the Python tracker puts on the wire.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from snowplow_tracker import Tracker
from snowplow_tracker.emitters import PAYLOAD_DATA_SCHEMA

from sidecar.snowplow.iglu import Resolver
from sidecar.snowplow.pipeline import CollectorCore, RawRequest
from sidecar.snowplow.protocol import TP2_PATH
from sidecar.snowplow.routing import Route, Router

ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0"
BASKET = "iglu:com.conveyor.grocer/basket_item/jsonschema/1-0-0"
DEVICE = "iglu:com.conveyor.grocer/device/jsonschema/1-0-0"
BAD_ROW = "iglu:com.conveyor.snowplow/bad_row/jsonschema/1-0-1"


class CaptureEmitter:
    """An emitter that keeps payloads the way the POST emitter would send them."""

    def __init__(self, method: str = "post") -> None:
        self.method = method
        self.events: list[dict[str, Any]] = []

    def input(self, payload: dict[str, Any]) -> None:
        if self.method == "post":
            payload = {k: str(v) for k, v in payload.items()}
            payload["stm"] = str(int(time.time() * 1000))
        self.events.append(dict(payload))

    def flush(self) -> None: ...
    def sync_flush(self) -> None: ...
    def async_flush(self) -> None: ...


@pytest.fixture(scope="session")
def resolver() -> Resolver:
    return Resolver()


@pytest.fixture
def capture() -> Callable[..., tuple[Tracker, CaptureEmitter]]:
    def make(method: str = "post", encode_base64: bool = True,
             app_id: str = "shop") -> tuple[Tracker, CaptureEmitter]:
        em = CaptureEmitter(method)
        return Tracker("test", em, app_id=app_id, encode_base64=encode_base64), em
    return make


def tp2_body(events: list[dict[str, Any]], schema: str = PAYLOAD_DATA_SCHEMA) -> bytes:
    return json.dumps({"schema": schema, "data": events}).encode()


@pytest.fixture
def core(resolver: Resolver) -> CollectorCore:
    router = Router([Route("orders", schemas=("iglu:com.conveyor.grocer/order_placed/*",)),
                     Route("views", kinds=("page_view",))], "events")
    return CollectorCore(resolver, router, "bad")


def post(body: bytes, headers: dict[str, str] | None = None, query: str = "",
         **kw: Any) -> RawRequest:
    h = {"content-type": "application/json; charset=utf-8", "user-agent": "test-agent"}
    h.update(headers or {})
    return RawRequest("POST", TP2_PATH, query, h, body, 1_700_000_000_000, "10.0.0.1", **kw)


def get(query: str, headers: dict[str, str] | None = None) -> RawRequest:
    return RawRequest("GET", "/i", query, {"user-agent": "test-agent", **(headers or {})},
                      None, 1_700_000_000_000, "10.0.0.1")
