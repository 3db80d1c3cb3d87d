"""Session fixtures: the real stack in containers (docker/compose.yml), via pytest-docker.

- `compose up -d` runs first in any case (retried: see stack.up): it starts what is
  missing and recreates any container whose image `make images` just rebuilt, and is a
  no-op otherwise, so tests never run against stale code.
- A stack that was (even partly) running before is left running at the end; one the tests
  started from nothing is stopped (its volumes stay).
- With CONVEYOR_STACK=external the endpoint variables of devstack/stack.py point at
  a stack started elsewhere, and compose is not touched at all.
- Without a container engine the tests skip locally but fail under CI=true.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from connectors import deploy
from connectors.configs import ConnectorFile
from connectors.rest import ConnectClient
from devstack.stack import (
    COMPOSE_FILE,
    PROJECT,
    READY_TIMEOUT_S,
    Stack,
    StackError,
    compose,
    compose_command,
    diagnose,
    up,
)

from .landing import Run
from .warehouse import Warehouse

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def _stack_config() -> Stack:
    return Stack.from_env()


def _external() -> bool:
    return os.environ.get("CONVEYOR_STACK") == "external"


@pytest.fixture(scope="session")
def _stack_was_running() -> bool:
    """Any of the stack's containers already running: someone else's stack, keep it up."""
    if _external():
        return True
    running = compose("ps", "--services", "--filter", "status=running", check=False).stdout
    return bool(running.split())


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    return " ".join(compose_command())


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(COMPOSE_FILE)


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return PROJECT


@pytest.fixture(scope="session")
def docker_setup() -> list[str] | bool:
    return False  # the `stack` fixture brings it up, with retries pytest-docker lacks


@pytest.fixture(scope="session")
def docker_cleanup(_stack_was_running: bool) -> list[str] | bool:
    return False if _stack_was_running else ["down"]


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, _stack_config: Stack) -> Iterator[Stack]:
    if not _external() and not _engine_answers():
        message = "no container engine: run `make itest` (it bootstraps one)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    request.getfixturevalue("docker_services")  # registers the `down` at the end
    if not _external():
        try:
            up()
        except StackError as exc:
            pytest.fail(str(exc), pytrace=False)
    try:
        _stack_config.wait(timeout=READY_TIMEOUT_S)  # names the service that does not answer
    except TimeoutError as exc:
        pytest.fail(f"{exc}\n\n{diagnose()}", pytrace=False)
    yield _stack_config


def _engine_answers() -> bool:
    import subprocess

    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Per-test names for topics, queues, groups and tables: ``unique("orders")``."""
    token = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{token}"


# -- landing in the warehouse: the real Connect worker, per-test connector copies ------

@pytest.fixture(scope="session")
def connect(stack: Stack) -> Iterator[ConnectClient]:
    client = ConnectClient(stack.connect_url)
    yield client
    client.close()


@pytest.fixture
def run() -> Run:
    return Run()


@pytest.fixture
def warehouse(stack: Stack, run: Run) -> Iterator[Warehouse]:
    wh = Warehouse(stack.postgres_dsn)
    yield wh
    wh.drop(*wh.tables(f"{run.prefix}_"))
    wh.close()


@pytest.fixture
def deployed(connect: ConnectClient) -> Iterator[Callable[[ConnectorFile], deploy.Applied]]:
    """``deployed(connector)``: apply it through our deploy code; deleted after the test."""
    names: list[str] = []

    def apply(c: ConnectorFile) -> deploy.Applied:
        names.append(c.name)
        return deploy.apply(connect, c, timeout=120)

    yield apply
    for name in names:
        connect.delete(name)
