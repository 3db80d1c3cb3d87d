"""Connect answers 409 while it rebalances or its config view is stale: the client waits
and asks again, a bounded number of times, then reports Connect's own message."""
from __future__ import annotations

import json

import httpx
import pytest

from connectors import rest
from connectors.rest import ConnectClient, ConnectError

REBALANCING = {"error_code": 409, "message": "Cannot complete request because of a "
               "conflicting operation (e.g. worker rebalance)"}


def _client(codes: list[int], sleeps: list[float]) -> tuple[ConnectClient, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        code = codes.pop(0) if codes else 200
        body = REBALANCING if code == 409 else {"ok": True}
        return httpx.Response(code, content=json.dumps(body).encode())
    return (ConnectClient("http://connect.test", transport=httpx.MockTransport(handle),
                          sleep=sleeps.append), seen)


def test_a_conflict_that_passes_is_not_an_error() -> None:
    sleeps: list[float] = []
    client, seen = _client([409, 409], sleeps)
    client.put("c", {"connector.class": "x"})
    assert seen == ["PUT /connectors/c/config"] * 3
    assert sleeps == [rest.CONFLICT_BACKOFF_S, rest.CONFLICT_BACKOFF_S * 2]


def test_a_conflict_that_lasts_is_reported_with_connects_message() -> None:
    sleeps: list[float] = []
    client, seen = _client([409] * 100, sleeps)
    with pytest.raises(ConnectError, match="conflicting operation") as info:
        client.delete("c")
    assert info.value.status == 409
    assert len(seen) == rest.CONFLICT_RETRIES + 1
    assert max(sleeps) == rest.CONFLICT_BACKOFF_MAX_S
    assert sum(sleeps) < 40, "bounded: a stuck cluster is reported, not waited on forever"


def test_other_errors_are_not_retried() -> None:
    sleeps: list[float] = []
    client, seen = _client([400], sleeps)
    with pytest.raises(ConnectError):
        client.put("c", {})
    assert len(seen) == 1 and sleeps == []
