"""The healer: restarts FAILED connectors and tasks with a bounded backoff, as Strimzi's
connector auto-restart does, and says in metrics what it did and when it gave up.

Kafka Connect never restarts a failed task by itself: a sink whose task died on a passing
cause (a database that was away, a lock timeout, a row that an operator has since fixed)
stays dead until someone asks. The healer asks, through the REST API every deployment has
(``POST /connectors/{name}/restart?includeTasks=true&onlyFailed=true``, KIP-745), which
restarts the connector if it failed and only its failed tasks, on whichever workers they
are assigned to.

**Policy** (``Policy``, pure, tested with an injected clock): per connector, the n-th restart
in a row comes ``initial * multiplier**(n-1)`` seconds (at most ``max_delay``) after its
failure was first seen: 2, 4, 8, ... minutes by default. After ``max_restarts`` restarts
that did not hold, the healer gives up on that connector, logs it and exports
``conveyor_connect_healer_gave_up{connector} 1``; it touches it no more. A connector that then
stays RUNNING (its connector and every task) for ``healthy_after`` seconds has recovered:
its budget starts again from zero. Budgets are kept in memory: a restarted healer starts
every connector afresh, which at worst means another ``max_restarts`` tries.

Why per connector, not per task: the restart call restarts every failed task of the
connector at once, so that is the unit a restart is counted and delayed by (as Strimzi's
``autoRestart`` counts). The metrics still say which tasks were restarted.
"""

from __future__ import annotations

import fnmatch
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from sidecar.common import logs
from sidecar.common.config import FileSettings, load_settings
from sidecar.common.errors import ConfigError
from sidecar.common.ops import OpsServer

from .rest import ConnectClient, ConnectError, ConnectUnreachable

# Named, not __name__: run as `python -m connectors.heal` it would log as "__main__".
log = logging.getLogger("connectors.heal")

Clock = Callable[[], float]


# -- settings ------------------------------------------------------------------------------

class HealSettings(FileSettings):
    """A YAML file (``--config``), overridden by ``CONVEYOR_HEAL__<KEY>`` variables."""

    # Any worker of the Connect group; several, comma-separated, are tried in turn.
    connect_url: str = "http://localhost:8083"
    # Globs over connector names; only matching connectors are healed.
    connectors: list[str] = Field(default_factory=lambda: ["*"])
    # Globs of connectors left alone even when they match: one under investigation, or one
    # that fails on purpose.
    exclude: list[str] = Field(default_factory=list)
    host: str = "0.0.0.0"
    port: int = 9000
    # How often Connect's statuses are read (one GET /connectors?expand=status).
    poll_interval_seconds: float = Field(default=15.0, gt=0)
    # Strimzi's schedule: the first restart 2 minutes after the failure, then 4, 8, ...
    initial_delay_seconds: float = Field(default=120.0, ge=0)
    multiplier: float = Field(default=2.0, ge=1.0)
    max_delay_seconds: float = Field(default=3600.0, ge=0)
    # Restarts in a row (without a recovery between them) before the healer gives up.
    max_restarts: int = Field(default=7, ge=0)
    # RUNNING this long without a failure: recovered, the budget starts again.
    healthy_after_seconds: float = Field(default=600.0, ge=0)
    timeout_seconds: float = Field(default=10.0, gt=0)
    log_level: str = "INFO"

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_HEAL__", env_nested_delimiter="__",
                                      extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> HealSettings:
        if self.max_delay_seconds < self.initial_delay_seconds:
            raise ValueError("max_delay_seconds must not be below initial_delay_seconds")
        return self

    def policy(self) -> Policy:
        return Policy(self.initial_delay_seconds, self.multiplier, self.max_delay_seconds,
                      self.max_restarts, self.healthy_after_seconds)


def load(path: str | Path | None) -> HealSettings:
    """The file's settings (plus environment), or the defaults (plus environment)."""
    return load_settings(HealSettings, path) if path is not None else HealSettings()


# -- the pure policy -----------------------------------------------------------------------

class Action(Enum):
    NONE = "none"          # nothing to do (running, waiting for the delay, or given up)
    RESTART = "restart"    # restart it now
    GIVE_UP = "give_up"    # the budget is spent: say so, once
    RECOVERED = "recovered"  # healthy long enough after restarts: the budget is reset


@dataclass(frozen=True)
class Policy:
    initial_delay: float = 120.0
    multiplier: float = 2.0
    max_delay: float = 3600.0
    max_restarts: int = 7
    healthy_after: float = 600.0

    def delay(self, restarts: int) -> float:
        """The wait before restart number ``restarts + 1`` of a row."""
        if self.initial_delay == 0:
            return 0.0
        # Exponent capped so a long row cannot overflow a float on its way to max_delay.
        return min(self.initial_delay * self.multiplier ** min(restarts, 64), self.max_delay)


@dataclass
class Track:
    """What the healer knows about one connector between two looks."""

    restarts: int = 0                # restarts in the current row (since the last recovery)
    due_at: float | None = None      # when the failure now seen gets its restart
    delay: float | None = None       # the wait that due_at was set with
    running_since: float | None = None
    gave_up: bool = False


def observe(policy: Policy, track: Track, state: str, now: float) -> Action:
    """One look at a connector: ``state`` is ``FAILED`` (it or a task failed), ``RUNNING``
    (it and every task run), or anything else (paused, stopped, unassigned, restarting).
    Changes ``track`` and says what to do."""
    if state == "FAILED":
        track.running_since = None
        if track.gave_up:
            return Action.NONE
        if track.restarts >= policy.max_restarts:
            track.gave_up, track.due_at, track.delay = True, None, None
            return Action.GIVE_UP
        if track.due_at is None:
            track.delay = policy.delay(track.restarts)
            track.due_at = now + track.delay
        if now >= track.due_at:
            track.restarts += 1
            track.due_at = None
            return Action.RESTART
        return Action.NONE
    if state == "RUNNING":
        # An operator may have restarted one the healer gave up on: it is no longer given
        # up, but its budget comes back only once it has run healthy_after.
        track.due_at, track.delay, track.gave_up = None, None, False
        if track.running_since is None:
            track.running_since = now
        if track.restarts and now - track.running_since >= policy.healthy_after:
            track.restarts = 0
            return Action.RECOVERED
        return Action.NONE
    track.running_since = None
    return Action.NONE


# -- reading Connect's statuses ------------------------------------------------------------

@dataclass(frozen=True)
class Status:
    """One connector as Connect reports it: its own state and each task's, with traces."""

    name: str
    state: str
    tasks: Mapping[int, str]
    traces: Mapping[str, str] = field(default_factory=dict)  # "connector" or task id -> trace

    @property
    def failed(self) -> list[str]:
        """What failed: ``connector`` and/or the task ids, as metric labels."""
        out = ["connector"] if self.state == "FAILED" else []
        return out + [str(i) for i, s in sorted(self.tasks.items()) if s == "FAILED"]

    @property
    def summary(self) -> str:
        """FAILED if anything failed; else RUNNING only if the connector and every task
        run; else the first state that is not RUNNING (UNASSIGNED, PAUSED, ...)."""
        if self.failed:
            return "FAILED"
        if self.state != "RUNNING":
            return self.state
        return next((s for _, s in sorted(self.tasks.items()) if s != "RUNNING"), "RUNNING")


_CAUSE = re.compile(r"^(?:Caused by: )?([A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+)(?::|$)")


def reason_class(trace: str | None) -> str:
    """The innermost exception class of a Java stack trace (the database's or the network's
    exception, not Connect's wrapper), or ``unknown``."""
    found = "unknown"
    for line in (trace or "").splitlines():
        m = _CAUSE.match(line.strip())
        if m and (line.startswith("Caused by: ") or found == "unknown"):
            found = m.group(1)
    return found


def parse_statuses(doc: Mapping[str, Any]) -> list[Status]:
    """``GET /connectors?expand=status`` as Status values (connectors without one skipped)."""
    out = []
    for name, entry in sorted(doc.items()):
        st = (entry or {}).get("status") or {}
        conn = st.get("connector") or {}
        if "state" not in conn:
            continue
        tasks: dict[int, str] = {}
        traces: dict[str, str] = {}
        if conn.get("trace"):
            traces["connector"] = conn["trace"]
        for t in st.get("tasks") or []:
            tasks[int(t["id"])] = t["state"]
            if t.get("trace"):
                traces[str(t["id"])] = t["trace"]
        out.append(Status(name, conn["state"], tasks, traces))
    return out


class _StatusClient(ConnectClient):
    def statuses(self) -> list[Status]:
        return parse_statuses(self._request("GET", "/connectors",
                                            params={"expand": "status"}) or {})


class HealClient:
    """Connect's REST API through any of several workers (``a,b,...``): the first that
    answers is used, and kept until it stops answering, so the healer goes on while the
    worker it was talking to is down (any worker of the group serves status and restart)."""

    def __init__(self, urls: str, timeout: float = 10.0,
                 transport: Any = None) -> None:
        self._clients = [_StatusClient(u.strip(), timeout, transport)
                         for u in urls.split(",") if u.strip()]
        if not self._clients:
            raise ValueError("no Connect URL")

    def _each(self, call: Callable[[_StatusClient], Any]) -> Any:
        last: ConnectUnreachable | None = None
        for i, client in enumerate(list(self._clients)):
            try:
                result = call(client)
            except ConnectUnreachable as exc:
                last = exc
                continue
            if i:
                self._clients.insert(0, self._clients.pop(i))
            return result
        assert last is not None
        raise last

    def statuses(self) -> list[Status]:
        result: list[Status] = self._each(lambda c: c.statuses())
        return result

    def restart(self, name: str, only_failed: bool = True) -> None:
        self._each(lambda c: c.restart(name, only_failed))

    def close(self) -> None:
        for c in self._clients:
            c.close()


# -- the service ---------------------------------------------------------------------------

class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        p = "conveyor_connect_healer"
        self.restarts = Counter(f"{p}_restarts", "Restarts the healer asked for, per "
                                "connector and what was restarted (task id, or connector)",
                                ["connector", "task"], registry=registry)
        self.restart_errors = Counter(f"{p}_restart_errors", "Restart requests Connect refused "
                                      "or did not answer", ["connector"], registry=registry)
        self.gave_up = Gauge(f"{p}_gave_up", "1 while the healer has given up on a connector "
                             "(its restart budget is spent)", ["connector"], registry=registry)
        self.failed = Gauge(f"{p}_failed", "1 for each connector or task now FAILED",
                            ["connector", "task"], registry=registry)
        self.budget_used = Gauge(f"{p}_restarts_in_row", "Restarts since the connector last "
                                 "recovered", ["connector"], registry=registry)
        self.next_restart = Gauge(f"{p}_next_restart_seconds", "Seconds until the scheduled "
                                  "restart of a failed connector", ["connector"],
                                  registry=registry)
        self.last_failure = Gauge(f"{p}_last_failure_info", "The exception class of the last "
                                  "failure seen (innermost cause), value 1",
                                  ["connector", "reason"], registry=registry)
        self.polls = Counter(f"{p}_polls", "Looks at Connect's statuses", registry=registry)
        self.poll_errors = Counter(f"{p}_poll_errors", "Looks that failed (Connect away)",
                                   registry=registry)
        self.last_poll = Gauge(f"{p}_last_poll_timestamp_seconds", "When statuses were last "
                               "read", registry=registry)


class Healer:
    """Looks at every matching connector each ``step()`` and restarts what is due."""

    def __init__(self, client: HealClient, policy: Policy, patterns: Iterable[str] = ("*",),
                 registry: CollectorRegistry | None = None, clock: Clock = time.monotonic,
                 wall: Clock = time.time, exclude: Iterable[str] = ()) -> None:
        self.client = client
        self.policy = policy
        self.patterns = list(patterns)
        self.exclude = list(exclude)
        self.registry = registry or CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.clock = clock
        self.wall = wall
        self.tracks: dict[str, Track] = {}
        self._failed_labels: set[tuple[str, str]] = set()
        self._reasons: dict[str, str] = {}
        self.last_poll: float | None = None

    def step(self) -> dict[str, Action]:
        """One look and its restarts; returns what was done per connector."""
        self.metrics.polls.inc()
        try:
            statuses = [s for s in self.client.statuses() if self.heals(s.name)]
        except ConnectError as exc:
            self.metrics.poll_errors.inc()
            log.warning("heal.poll_failed", extra={"error": str(exc)})
            return {}
        now = self.clock()
        self.last_poll = now
        self.metrics.last_poll.set(self.wall())
        done = {s.name: self._one(s, now) for s in statuses}
        self._forget(set(done))
        return done

    def heals(self, name: str) -> bool:
        return (any(fnmatch.fnmatchcase(name, p) for p in self.patterns)
                and not any(fnmatch.fnmatchcase(name, p) for p in self.exclude))

    def _one(self, status: Status, now: float) -> Action:
        track = self.tracks.setdefault(status.name, Track())
        failed = status.failed
        self._set_failed(status.name, failed)
        if failed:
            self._set_reason(status.name, reason_class(status.traces.get(failed[0])))
        action = observe(self.policy, track, status.summary, now)
        name = status.name
        if action is Action.RESTART:
            try:
                self.client.restart(name, only_failed=True)
            except ConnectError as exc:
                # Counted as a try all the same: a restart Connect cannot take now must not
                # become a tight loop; the next one waits its (longer) delay.
                self.metrics.restart_errors.labels(name).inc()
                log.warning("heal.restart_failed", extra={"connector": name, "error": str(exc)})
            else:
                for what in failed:
                    self.metrics.restarts.labels(name, what).inc()
                log.warning("heal.restarted", extra={
                    "connector": name, "restarted": failed, "restart": track.restarts,
                    "of": self.policy.max_restarts, "reason": self._reasons.get(name)})
        elif action is Action.GIVE_UP:
            log.error("heal.gave_up", extra={
                "connector": name, "restarts": track.restarts, "failed": failed,
                "reason": self._reasons.get(name)})
        elif action is Action.RECOVERED:
            log.info("heal.recovered", extra={"connector": name})
        self.metrics.gave_up.labels(name).set(1 if track.gave_up else 0)
        self.metrics.budget_used.labels(name).set(track.restarts)
        self.metrics.next_restart.labels(name).set(
            max(0.0, track.due_at - now) if track.due_at is not None else 0.0)
        return action

    def _set_failed(self, name: str, failed: list[str]) -> None:
        now_failed = {(name, w) for w in failed}
        for labels in {x for x in self._failed_labels if x[0] == name} - now_failed:
            self.metrics.failed.remove(*labels)
        for labels in now_failed:
            self.metrics.failed.labels(*labels).set(1)
        self._failed_labels = {x for x in self._failed_labels if x[0] != name} | now_failed

    def _set_reason(self, name: str, reason: str) -> None:
        old = self._reasons.get(name)
        if old is not None and old != reason:
            self.metrics.last_failure.remove(name, old)
        self._reasons[name] = reason
        self.metrics.last_failure.labels(name, reason).set(1)

    def _forget(self, present: set[str]) -> None:
        """A deleted connector's gauges go; its restart counters stay (they are history)."""
        for name in set(self.tracks) - present:
            del self.tracks[name]
            for g in (self.metrics.gave_up, self.metrics.budget_used,
                      self.metrics.next_restart):
                g.remove(name)
            if name in self._reasons:
                self.metrics.last_failure.remove(name, self._reasons.pop(name))
            self._set_failed(name, [])

    def readiness(self, poll_interval: float) -> dict[str, object]:
        """Healthy while Connect's statuses were read within three poll intervals."""
        age = None if self.last_poll is None else self.clock() - self.last_poll
        return {"connect": age is not None and age <= 3 * poll_interval + 5,
                "last_poll_age_seconds": None if age is None else round(age, 1),
                "gave_up": sorted(n for n, t in self.tracks.items() if t.gave_up)}


def run(settings: HealSettings) -> None:
    """The service as an entry point runs it: logging configured, SIGTERM (compose stop) and
    Ctrl-C end it after the current look."""
    logs.configure(settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a GET per look is not news
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serve(settings, stop)


def serve(settings: HealSettings, stop: threading.Event | None = None) -> None:
    """Run until ``stop`` is set (or forever): a look every poll interval, /metrics and
    /health on ``settings.port``."""
    stop = stop or threading.Event()
    client = HealClient(settings.connect_url, timeout=settings.timeout_seconds)
    healer = Healer(client, settings.policy(), settings.connectors, exclude=settings.exclude)
    ops = OpsServer(settings.host, settings.port,
                    lambda: healer.readiness(settings.poll_interval_seconds),
                    registry=healer.registry).start()
    log.info("heal.started", extra={"connect_url": settings.connect_url,
                                    "connectors": settings.connectors,
                                    "exclude": settings.exclude,
                                    "policy": str(settings.policy())})
    try:
        while not stop.is_set():
            healer.step()
            stop.wait(settings.poll_interval_seconds)
    finally:
        ops.stop()
        client.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m connectors.heal [--config FILE]``: the service alone, settings from the
    file and ``CONVEYOR_HEAL__*`` variables; what the compose service runs, since it needs
    none of the rest of ``conveyor-connectors`` (``conveyor-connectors heal`` is the same
    service with options)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m connectors.heal",
        description="Restart FAILED Kafka Connect connectors and tasks with a bounded backoff; "
                    "settings from --config and CONVEYOR_HEAL__<KEY> variables "
                    "(`conveyor-connectors heal --help` explains them).")
    parser.add_argument("--config", default=None, help="YAML settings (HealSettings' keys)")
    args = parser.parse_args(argv)
    try:
        settings = load(args.config)
    except ConfigError as exc:
        print(f"connectors.heal: {exc}", file=sys.stderr)
        return 2
    run(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
