"""What every bridge's command shares: its ``--config`` and ``--check`` options, and how a
bad config ends it (one line on stderr and the CONFIG exit code, before anything connects)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])
S = TypeVar("S")


def config_and_check_options(check_help: str) -> Callable[[F], F]:
    """``--config FILE`` (required) and the ``--check`` flag, whose help names what it tries."""
    def decorate(command: F) -> F:
        command = click.option("--check", is_flag=True, help=check_help)(command)
        return click.option("--config", "config_path", required=True, metavar="FILE",
                            type=click.Path(dir_okay=False, path_type=Path),
                            help="YAML settings file (see examples/full.yaml for every key).",
                            )(command)
    return decorate


def load_or_exit(load: Callable[[Path], S], config_path: Path, exit_code: int) -> S:
    """``load(config_path)``; a ConfigError is printed as ``error: ...`` and exits."""
    try:
        return load(config_path)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exit_code)
