"""The RabbitMQ bridge needs only Kafka, the schema registry and RabbitMQ of the stack."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.stack import Stack

NEEDED = ("kafka", "schema-registry", "rabbitmq")


@pytest.fixture(scope="session")
def rmq_stack(request: pytest.FixtureRequest) -> Any:
    """The stack, once the services this bridge talks to answer.

    When they already answer (stack up, maybe still starting Connect) they are used as they
    are; otherwise the shared ``stack`` fixture starts (or skips/fails) the whole stack.
    """
    config = Stack.from_env()
    probes = config.probes()
    if all(probes[name]() for name in NEEDED):
        return config
    return request.getfixturevalue("stack")
