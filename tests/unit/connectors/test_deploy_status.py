"""``deploy.status`` and ``deploy.delete`` against a scripted Connect REST API (no worker)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from connectors import deploy
from connectors.rest import ConnectClient, ConnectError

NAME = "warehouse-x"
_STATUS = {"name": NAME, "connector": {"state": "UNASSIGNED", "worker_id": "w1"},
           "tasks": [{"id": 0, "state": "UNASSIGNED", "worker_id": "w1"}]}


def _client(answers: dict[str, Iterator[tuple[int, object]]]) -> ConnectClient:
    """Each ``METHOD path`` answers from its own script, in order."""
    def handle(request: httpx.Request) -> httpx.Response:
        code, body = next(answers[f"{request.method} {request.url.path}"])
        return httpx.Response(code, content=json.dumps(body).encode())
    return ConnectClient("http://connect.test", transport=httpx.MockTransport(handle))


def _always(code: int, body: object) -> Iterator[tuple[int, object]]:
    while True:
        yield code, body


def _missing() -> Iterator[tuple[int, object]]:
    return _always(404, {"error_code": 404, "message": f"Connector {NAME} not found"})


def test_a_status_left_behind_after_a_delete_is_not_a_connector() -> None:
    client = _client({f"GET /connectors/{NAME}/status": _always(200, _STATUS),
                      f"GET /connectors/{NAME}/config": _missing()})
    assert deploy.status(client, NAME) is None


def test_a_configured_connector_reports_its_state() -> None:
    client = _client({f"GET /connectors/{NAME}/status": _always(200, _STATUS),
                      f"GET /connectors/{NAME}/config": _always(200, {"connector.class": "x"})})
    state = deploy.status(client, NAME)
    assert state is not None and state.state == "UNASSIGNED" and not state.running


def test_an_unknown_connector_has_no_state() -> None:
    client = _client({f"GET /connectors/{NAME}/status": _missing()})
    assert deploy.status(client, NAME) is None


def test_other_errors_are_not_taken_for_absence() -> None:
    client = _client({f"GET /connectors/{NAME}/status": _always(500, {"message": "boom"})})
    with pytest.raises(ConnectError, match="boom"):
        deploy.status(client, NAME)


def test_delete_returns_once_the_config_is_gone_even_if_a_status_lingers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deploy, "POLL_S", 0.0)
    config = iter([(200, {"connector.class": "x"})] * 2 + [(404, {"message": "gone"})] * 5)
    client = _client({f"DELETE /connectors/{NAME}": _always(204, None),
                      f"GET /connectors/{NAME}/status": _always(200, _STATUS),
                      f"GET /connectors/{NAME}/config": config})
    assert deploy.delete(client, NAME) is True


def test_delete_of_nothing_says_so() -> None:
    client = _client({f"DELETE /connectors/{NAME}": _missing()})
    assert deploy.delete(client, NAME) is False
