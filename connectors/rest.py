"""A small client for the Kafka Connect REST API: the calls our tooling and tests need.

Errors come back as ``ConnectError`` with Connect's own message (and, for failed tasks,
the task trace), never as a bare HTTP status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

DEFAULT_TIMEOUT_S = 30.0
# 409 Conflict is Connect saying "not now": a rebalance is in progress, or this worker's view
# of the configs is stale after a concurrent change. Both pass within seconds; every request
# we send is safe to repeat (PUT and DELETE are idempotent, a restart twice is a restart).
CONFLICT_RETRIES = 8
CONFLICT_BACKOFF_S = 0.5
CONFLICT_BACKOFF_MAX_S = 5.0


class ConnectError(Exception):
    """Connect refused a request, or a connector/task failed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ConnectUnreachable(ConnectError):
    """No Connect worker answered at the URL (wrong URL, worker down or starting)."""


@dataclass(frozen=True)
class ConnectorState:
    name: str
    state: str
    tasks: list[dict[str, Any]]
    worker_id: str | None = None

    @property
    def running(self) -> bool:
        return (self.state == "RUNNING" and bool(self.tasks)
                and all(t["state"] == "RUNNING" for t in self.tasks))

    @property
    def failures(self) -> list[str]:
        out = []
        if self.state == "FAILED":
            out.append(f"connector {self.name} FAILED")
        for task in self.tasks:
            if task["state"] == "FAILED":
                out.append(f"task {task['id']} FAILED:\n{task.get('trace', '(no trace)')}")
        return out


class ConnectClient:
    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)
        self._sleep = sleep

    def close(self) -> None:
        self._http.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        pause = CONFLICT_BACKOFF_S
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                resp = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise ConnectUnreachable(
                    f"{method} {self.url}{path}: {exc or type(exc).__name__}") from exc
            if resp.status_code != 409 or attempt == CONFLICT_RETRIES:
                break
            self._sleep(pause)
            pause = min(pause * 2, CONFLICT_BACKOFF_MAX_S)
        if resp.status_code >= 400:
            try:
                message = resp.json().get("message", resp.text)
            except ValueError:
                message = resp.text
            raise ConnectError(f"{method} {path}: {resp.status_code} {message}",
                               resp.status_code)
        return resp.json() if resp.content else None

    def plugins(self, connectors_only: bool = False) -> list[dict[str, Any]]:
        params = {"connectorsOnly": str(connectors_only).lower()}
        return self._request("GET", "/connector-plugins", params=params)

    def validate(self, config: dict[str, str]) -> dict[str, Any]:
        cls = config["connector.class"].rsplit(".", 1)[-1]
        return self._request(
            "PUT", f"/connector-plugins/{cls}/config/validate", json=config)

    def connectors(self) -> list[str]:
        return self._request("GET", "/connectors")

    def config(self, name: str) -> dict[str, str] | None:
        try:
            return self._request("GET", f"/connectors/{name}/config")
        except ConnectError as exc:
            if exc.status == 404:
                return None
            raise

    def put(self, name: str, config: dict[str, str]) -> None:
        """Create or update (PUT is idempotent in Connect)."""
        self._request("PUT", f"/connectors/{name}/config", json=config)

    def tasks(self, name: str) -> list[dict[str, Any]]:
        """Task configs as the herder last generated them (``[{id, config}]``)."""
        return self._request("GET", f"/connectors/{name}/tasks")

    def restart(self, name: str, only_failed: bool = True) -> None:
        """Restart the connector and its (failed) tasks."""
        params = {"includeTasks": "true", "onlyFailed": str(only_failed).lower()}
        self._request("POST", f"/connectors/{name}/restart", params=params)

    def status(self, name: str) -> ConnectorState:
        doc = self._request("GET", f"/connectors/{name}/status")
        return ConnectorState(name, doc["connector"]["state"], doc.get("tasks", []),
                              doc["connector"].get("worker_id"))

    def delete(self, name: str) -> bool:
        try:
            self._request("DELETE", f"/connectors/{name}")
            return True
        except ConnectError as exc:
            if exc.status == 404:
                return False
            raise

    # -- KIP-875: stop, read and alter a connector's offsets, resume -----------------------

    def stop(self, name: str) -> None:
        """Stop the connector and its tasks, keeping its config (unlike pause, no task
        is left running: the state offsets may only be altered in)."""
        self._request("PUT", f"/connectors/{name}/stop")

    def pause(self, name: str) -> None:
        """Pause the connector's tasks: they stay assigned and stop polling."""
        self._request("PUT", f"/connectors/{name}/pause")

    def resume(self, name: str) -> None:
        self._request("PUT", f"/connectors/{name}/resume")

    def offsets(self, name: str) -> dict[tuple[str, int], int]:
        """A sink connector's committed offsets: (topic, partition) -> next offset."""
        doc = self._request("GET", f"/connectors/{name}/offsets")
        return {(o["partition"]["kafka_topic"], int(o["partition"]["kafka_partition"])):
                int(o["offset"]["kafka_offset"])
                for o in doc.get("offsets", []) if o.get("offset")}

    def alter_offsets(self, name: str, offsets: dict[tuple[str, int], int]) -> None:
        """Set a stopped sink connector's offsets (its consumer group's)."""
        body = {"offsets": [{"partition": {"kafka_topic": t, "kafka_partition": p},
                             "offset": {"kafka_offset": o}}
                            for (t, p), o in sorted(offsets.items())]}
        self._request("PATCH", f"/connectors/{name}/offsets", json=body)

    def wait_running(self, name: str, timeout: float = 120.0) -> ConnectorState:
        """Poll until the connector and all its tasks run; raise with the traces if one fails."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                state = self.status(name)
            except ConnectError:
                state = None  # not registered with the herder yet
            if state is not None:
                if state.failures:
                    raise ConnectError("\n".join(state.failures))
                if state.running:
                    return state
            if time.monotonic() > deadline:
                raise ConnectError(f"{name} not RUNNING within {timeout:.0f}s: {state}")
            time.sleep(1.0)
