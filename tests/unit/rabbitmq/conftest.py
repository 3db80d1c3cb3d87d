"""Unit tests of the RabbitMQ bridge see no CONVEYOR_* variables from the shell."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CONVEYOR_"):
            monkeypatch.delenv(name)

