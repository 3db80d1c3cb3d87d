"""Session fixtures: the real stack in containers (docker/compose.yml), via pytest-docker.

- A stack that already answers (started by `make up`, or elsewhere and pointed at with the
  endpoint variables of tests/integration/stack.py) is used as it is and left running.
- Otherwise the stack is started with compose, waited for, and stopped at the end (its
  volumes stay).
- Without a container engine the tests skip locally but fail under CI=true.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.integration.stack import COMPOSE_FILE, PROJECT, READY_TIMEOUT_S, Stack, compose_command

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def _stack_config() -> Stack:
    return Stack.from_env()


@pytest.fixture(scope="session")
def _stack_was_running(_stack_config: Stack) -> bool:
    return os.environ.get("CONVEYOR_STACK") == "external" or _stack_config.all_ready()


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
def docker_setup(_stack_was_running: bool) -> list[str] | bool:
    return False if _stack_was_running else ["up -d"]


@pytest.fixture(scope="session")
def docker_cleanup(_stack_was_running: bool) -> list[str] | bool:
    return False if _stack_was_running else ["down"]


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest, _stack_config: Stack,
          _stack_was_running: bool) -> Iterator[Stack]:
    if not _stack_was_running and not os.environ.get("DOCKER_HOST") and not _engine_answers():
        message = "no container engine: run `make itest` (it bootstraps one)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    docker_services = request.getfixturevalue("docker_services")
    for name, probe in _stack_config.probes().items():
        docker_services.wait_until_responsive(check=probe, timeout=READY_TIMEOUT_S, pause=1.0)
        assert probe(), f"{name} is not ready"
    yield _stack_config


def _engine_answers() -> bool:
    import subprocess

    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Per-test names for topics, queues, groups and tables: ``unique("orders")``."""
    token = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{token}"
