"""Times and durations as operators type them: ISO 8601, ``now``, ``-24h``; ``15m``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    m = DURATION.match(text.strip())
    if not m:
        raise click.BadParameter(f"{text!r}: a number and s, m, h or d, e.g. 15m")
    return timedelta(seconds=float(m.group(1)) * UNITS[m.group(2)])


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (a time without zone is UTC), ``now``, or ``-<duration>`` before now."""
    now = now or datetime.now(UTC)
    t = text.strip()
    if t == "now":
        return now
    if t.startswith("-"):
        return now - parse_duration(t[1:])
    try:
        value = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: ISO 8601, 'now' or e.g. -24h") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)
