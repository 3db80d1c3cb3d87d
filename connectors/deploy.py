"""What the CLI does, as library calls: validate, apply, status, delete.

``apply`` is idempotent: it compares the file with the config the worker holds and only
PUTs when something differs, so applying the same files twice restarts nothing. It always
validates first (the worker's ``/connector-plugins/{plugin}/config/validate``) so a config
with a mistake never reaches the cluster, and it only returns once the connector and every
task run the config it asked for; a failed task comes back with its stack trace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .configs import ConnectorFile, diff
from .rest import ConnectClient, ConnectError, ConnectorState

WAIT_TIMEOUT_S = 120.0
POLL_S = 0.5
# Keys Connect adds to each task's config; everything else mirrors the connector config.
_TASK_ONLY_KEYS = frozenset({"task.class", "task.id"})


@dataclass(frozen=True)
class ConfigProblem:
    key: str
    message: str


class InvalidConfig(ConnectError):
    """The worker's validate endpoint reported errors for one or more keys."""

    def __init__(self, name: str, problems: list[ConfigProblem]) -> None:
        super().__init__(f"{name}: {len(problems)} config error(s)")
        self.name = name
        self.problems = problems


class NotRunning(ConnectError):
    """The connector or a task FAILED, or did not reach RUNNING in time."""

    def __init__(self, message: str, state: ConnectorState | None) -> None:
        super().__init__(message)
        self.state = state


@dataclass(frozen=True)
class Applied:
    name: str
    action: str  # "created" | "updated" | "unchanged"
    changes: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    state: ConnectorState | None = None


def validate(client: ConnectClient, connector: ConnectorFile) -> list[ConfigProblem]:
    """Every error the worker reports, per key (empty: valid)."""
    doc = client.validate(connector.body())
    problems: list[ConfigProblem] = []
    for item in doc.get("configs", []):
        value = item.get("value", {})
        for message in value.get("errors") or []:
            problems.append(ConfigProblem(value.get("name", "?"), message))
    if doc.get("error_count", 0) and not problems:
        problems.append(ConfigProblem("(config)", f"{doc['error_count']} error(s) reported"))
    return problems


def apply(client: ConnectClient, connector: ConnectorFile, timeout: float = WAIT_TIMEOUT_S,
          on_wait: Callable[[ConnectorState | None], None] | None = None) -> Applied:
    """Create or update ``connector`` and wait until it runs; raise InvalidConfig/NotRunning."""
    problems = validate(client, connector)
    if problems:
        raise InvalidConfig(connector.name, problems)
    desired = connector.body()
    current = client.config(connector.name)
    changes = diff(desired, current)
    if changes:
        client.put(connector.name, desired)
    action = "unchanged" if not changes else ("created" if current is None else "updated")
    state = wait_running(client, connector.name, desired, timeout, on_wait)
    return Applied(connector.name, action, {} if current is None else changes, state)


def wait_running(client: ConnectClient, name: str, desired: dict[str, str],
                 timeout: float = WAIT_TIMEOUT_S,
                 on_wait: Callable[[ConnectorState | None], None] | None = None
                 ) -> ConnectorState:
    """Poll until the tasks carry ``desired`` and the connector and all tasks are RUNNING.

    Checking the task configs first keeps a status left over from the previous config (old
    tasks still RUNNING while the new ones are generated) from counting as success.
    """
    deadline = time.monotonic() + timeout
    state: ConnectorState | None = None
    while True:
        try:
            state = client.status(name)
        except ConnectError as exc:
            if exc.status != 404:
                raise
            state = None  # not registered with the herder yet
        if state is not None and state.failures:
            raise NotRunning("\n".join(state.failures), state)
        if state is not None and state.running and _tasks_current(client, name, desired):
            return state
        if on_wait is not None:
            on_wait(state)
        if time.monotonic() > deadline:
            what = state.state if state else "not registered"
            tasks = ", ".join(f"{t['id']}={t['state']}" for t in state.tasks) if state else ""
            raise NotRunning(f"{name} not RUNNING within {timeout:.0f}s "
                             f"(connector {what}; tasks: {tasks or 'none'})", state)
        time.sleep(POLL_S)


def _tasks_current(client: ConnectClient, name: str, desired: dict[str, str]) -> bool:
    try:
        tasks = client.tasks(name)
    except ConnectError as exc:
        if exc.status in (404, 409):  # 409: a rebalance is in progress
            return False
        raise
    return bool(tasks) and all(_task_matches(t.get("config", {}), desired) for t in tasks)


def _task_matches(task_config: dict[str, Any], desired: dict[str, str]) -> bool:
    # Most sinks (Debezium's JDBC sink among them) hand each task the whole connector
    # config: then every key must match, added keys included. Connectors that hand their
    # tasks only part of it can only be checked on the keys they do pass on.
    mirrors = "connector.class" in task_config
    return all(task_config.get(k) == v for k, v in desired.items()
               if k not in _TASK_ONLY_KEYS and (mirrors or k in task_config))


def status(client: ConnectClient, name: str) -> ConnectorState | None:
    """The connector's state, or None when the worker does not know it.

    The config topic decides whether a connector exists, not the status topic: a task that
    stops just after a DELETE can still write its status, and the worker then reports a
    state for a connector that no longer exists. Seen in the CLI test: status answered 404,
    then UNASSIGNED again a moment later.
    """
    try:
        state = client.status(name)
    except ConnectError as exc:
        if exc.status == 404:
            return None
        raise
    return state if client.config(name) is not None else None


def delete(client: ConnectClient, name: str, timeout: float = WAIT_TIMEOUT_S) -> bool:
    """True when it existed and is gone; False when there was nothing to delete.

    Connect answers the DELETE before the herder has stopped the tasks; this returns only
    once the worker no longer knows the connector, so "deleted" means deleted.
    """
    if not client.delete(name):
        return False
    deadline = time.monotonic() + timeout
    while status(client, name) is not None:
        if time.monotonic() > deadline:
            raise NotRunning(f"{name} still listed {timeout:.0f}s after DELETE", None)
        time.sleep(POLL_S)
    return True
