"""The healer's backoff and give-up policy with an injected clock, and its service step over
Connect's REST API answered in process (httpx.MockTransport: nothing is started)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest

from connectors.heal import (
    Action,
    HealClient,
    Healer,
    HealSettings,
    Policy,
    Track,
    observe,
    parse_statuses,
    reason_class,
)

POLICY = Policy(initial_delay=120, multiplier=2, max_delay=3600, max_restarts=3,
                healthy_after=600)

TRACE = """org.apache.kafka.connect.errors.ConnectException: Exiting WorkerSinkTask due to \
unrecoverable exception.
\tat org.apache.kafka.connect.runtime.WorkerSinkTask.deliverMessages(WorkerSinkTask.java:658)
Caused by: org.apache.kafka.connect.errors.ConnectException: Error while checking and applying
\tat io.debezium.connector.jdbc.JdbcChangeEventSink.lambda$getOrCreateBuffer$0(X.java:176)
Caused by: org.postgresql.util.PSQLException: ERROR: column "c1" of relation "t" already exists
\tat org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2733)
\t... 12 more
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delays_double_from_the_initial_one_up_to_the_cap() -> None:
    assert [POLICY.delay(n) for n in range(7)] == [120, 240, 480, 960, 1920, 3600, 3600]
    assert Policy(initial_delay=0).delay(5) == 0
    assert Policy(initial_delay=1, multiplier=10, max_delay=50).delay(10_000) == 50


def test_a_failure_waits_its_delay_then_restarts() -> None:
    t = Track()
    assert observe(POLICY, t, "FAILED", 0) is Action.NONE
    assert t.due_at == 120
    assert observe(POLICY, t, "FAILED", 119.9) is Action.NONE
    assert observe(POLICY, t, "FAILED", 120) is Action.RESTART
    assert t.restarts == 1
    # It fails again at once: the next wait is twice as long, from when that is seen.
    assert observe(POLICY, t, "FAILED", 125) is Action.NONE
    assert t.due_at == 125 + 240


def test_gives_up_after_the_budget_and_says_so_once() -> None:
    t, now, actions = Track(), 0.0, []
    for _ in range(40):
        actions.append(observe(POLICY, t, "FAILED", now))
        now += 500
    assert actions.count(Action.RESTART) == 3
    assert actions.count(Action.GIVE_UP) == 1
    assert t.gave_up and actions[-1] is Action.NONE


def test_running_long_enough_resets_the_budget_and_shorter_does_not() -> None:
    t = Track(restarts=2)
    assert observe(POLICY, t, "RUNNING", 0) is Action.NONE
    assert observe(POLICY, t, "RUNNING", 599) is Action.NONE
    assert t.restarts == 2
    assert observe(POLICY, t, "FAILED", 600) is Action.NONE   # a blip: the run starts anew
    assert t.delay == POLICY.delay(2)
    observe(POLICY, t, "RUNNING", 700)
    assert observe(POLICY, t, "RUNNING", 1300) is Action.RECOVERED
    assert t.restarts == 0


def test_an_operator_restart_after_giving_up_clears_the_flag_not_the_budget() -> None:
    t = Track(restarts=3)
    assert observe(POLICY, t, "FAILED", 0) is Action.GIVE_UP
    assert observe(POLICY, t, "RUNNING", 10) is Action.NONE
    assert not t.gave_up and t.restarts == 3
    assert observe(POLICY, t, "FAILED", 20) is Action.GIVE_UP


def test_paused_or_unassigned_is_neither_a_failure_nor_a_recovery() -> None:
    t = Track(restarts=1)
    observe(POLICY, t, "RUNNING", 0)
    observe(POLICY, t, "PAUSED", 300)
    assert observe(POLICY, t, "RUNNING", 700) is Action.NONE   # the run restarted at 700
    assert t.restarts == 1


def test_no_budget_means_no_restart() -> None:
    t = Track()
    assert observe(Policy(max_restarts=0), t, "FAILED", 0) is Action.GIVE_UP


looks = st.lists(st.tuples(st.sampled_from(["FAILED", "RUNNING", "PAUSED", "UNASSIGNED"]),
                           st.floats(min_value=0, max_value=2000, allow_nan=False)),
                 max_size=200)
policies = st.builds(Policy, initial_delay=st.floats(0, 300), multiplier=st.floats(1, 4),
                     max_delay=st.floats(300, 5000), max_restarts=st.integers(0, 8),
                     healthy_after=st.floats(0, 1000))


@settings(max_examples=300, deadline=None)
@given(policies, looks)
def test_never_more_restarts_than_the_budget_and_delays_never_shrink(
        policy: Policy, seq: list[tuple[str, float]]) -> None:
    """Between two recoveries: at most max_restarts restarts, each scheduled delay at least
    the one before, and never a restart before its delay has passed since the failure was
    first seen."""
    t, now = Track(), 0.0
    restarts_in_row = 0
    delays: list[float] = []
    failure_seen_at: float | None = None
    for state, dt in seq:
        now += dt
        before_due = t.due_at
        action = observe(policy, t, state, now)
        if before_due is None and (t.due_at is not None or action is Action.RESTART):
            failure_seen_at = now  # a failure newly seen: its restart scheduled
            assert t.delay is not None
            delays.append(t.delay)
        if action is Action.RECOVERED:
            restarts_in_row, delays = 0, []
        elif action is Action.RESTART:
            restarts_in_row += 1
            assert restarts_in_row <= policy.max_restarts
            assert failure_seen_at is not None
            assert now >= failure_seen_at + policy.delay(restarts_in_row - 1)
        assert delays == sorted(delays)
        assert t.restarts == restarts_in_row
        assert 0 <= t.restarts <= policy.max_restarts


def test_the_reason_is_the_innermost_exception_class() -> None:
    assert reason_class(TRACE) == "org.postgresql.util.PSQLException"
    assert reason_class("java.lang.IllegalStateException: boom\n\tat x.Y.z(Y.java:1)") \
        == "java.lang.IllegalStateException"
    assert reason_class(None) == "unknown"
    assert reason_class("something odd") == "unknown"


@given(st.text())
def test_reading_a_reason_never_raises(trace: str) -> None:
    assert reason_class(trace)


# -- the service step, over an in-process Connect -------------------------------------------

class FakeConnect:
    """Connect's two endpoints the healer calls, answered in process."""

    def __init__(self) -> None:
        self.status: dict[str, Any] = {}
        self.restarts: list[str] = []
        self.down = False

    def set(self, name: str, connector: str, *tasks: str) -> None:
        self.status[name] = {"status": {
            "name": name, "type": "sink",
            "connector": {"state": connector, "worker_id": "connect:8083",
                          **({"trace": "java.lang.RuntimeException: start failed"}
                             if connector == "FAILED" else {})},
            "tasks": [{"id": i, "state": s, "worker_id": "connect:8083",
                       **({"trace": TRACE} if s == "FAILED" else {})}
                      for i, s in enumerate(tasks)]}}

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused")
        if request.method == "GET" and request.url.path == "/connectors":
            assert request.url.params["expand"] == "status"
            return httpx.Response(200, json=self.status)
        if request.method == "POST" and request.url.path.endswith("/restart"):
            assert request.url.params["includeTasks"] == "true"
            assert request.url.params["onlyFailed"] == "true"
            name = request.url.path.split("/")[2]
            self.restarts.append(name)
            return httpx.Response(202, json={})
        return httpx.Response(404, json={"message": "no"})


def healer(fake: FakeConnect, clock: Clock, patterns: tuple[str, ...] = ("*",)) -> Healer:
    client = HealClient("http://connect:8083", transport=httpx.MockTransport(fake.handler))
    return Healer(client, POLICY, patterns, clock=clock, wall=clock)


def metric(h: Healer, name: str, **labels: str) -> float | None:
    value = h.registry.get_sample_value(name, labels)
    return value


def test_a_failed_task_is_restarted_when_due_and_counted_per_task() -> None:
    fake, clock = FakeConnect(), Clock()
    fake.set("sink-a", "RUNNING", "RUNNING", "FAILED")
    fake.set("sink-b", "RUNNING", "RUNNING")
    h = healer(fake, clock)
    assert h.step() == {"sink-a": Action.NONE, "sink-b": Action.NONE}
    assert metric(h, "conveyor_connect_healer_failed", connector="sink-a", task="1") == 1
    assert metric(h, "conveyor_connect_healer_next_restart_seconds", connector="sink-a") == 120
    assert metric(h, "conveyor_connect_healer_last_failure_info", connector="sink-a",
                  reason="org.postgresql.util.PSQLException") == 1
    clock.now += 120
    assert h.step()["sink-a"] is Action.RESTART
    assert fake.restarts == ["sink-a"]
    assert metric(h, "conveyor_connect_healer_restarts_total", connector="sink-a",
                  task="1") == 1
    assert metric(h, "conveyor_connect_healer_restarts_total", connector="sink-a",
                  task="0") is None
    fake.set("sink-a", "RUNNING", "RUNNING", "RUNNING")
    h.step()
    assert metric(h, "conveyor_connect_healer_failed", connector="sink-a", task="1") is None
    assert metric(h, "conveyor_connect_healer_restarts_in_row", connector="sink-a") == 1


def test_giving_up_is_exported_and_nothing_more_is_restarted() -> None:
    fake, clock = FakeConnect(), Clock()
    fake.set("sink-a", "FAILED", "FAILED")
    h = healer(fake, clock)
    for _ in range(30):
        h.step()
        clock.now += 1000
    assert fake.restarts == ["sink-a"] * POLICY.max_restarts
    assert metric(h, "conveyor_connect_healer_gave_up", connector="sink-a") == 1
    assert metric(h, "conveyor_connect_healer_restarts_total", connector="sink-a",
                  task="connector") == POLICY.max_restarts
    assert h.readiness(15)["gave_up"] == ["sink-a"]
    assert b"conveyor_connect_healer_gave_up" in generate_latest(h.registry)


def test_only_matching_connectors_and_a_deleted_one_is_forgotten() -> None:
    fake, clock = FakeConnect(), Clock()
    fake.set("warehouse-x", "FAILED")
    fake.set("warehouse-x-investigated", "FAILED")
    fake.set("lake-x", "FAILED")
    h = healer(fake, clock, ("warehouse-*",))
    h.exclude = ["*-investigated"]
    assert set(h.step()) == {"warehouse-x"}
    del fake.status["warehouse-x"]
    h.step()
    assert h.tracks == {}
    assert metric(h, "conveyor_connect_healer_gave_up", connector="warehouse-x") is None


def test_connect_away_is_counted_and_makes_it_unhealthy() -> None:
    fake, clock = FakeConnect(), Clock()
    fake.set("sink-a", "RUNNING", "RUNNING")
    h = healer(fake, clock)
    h.step()
    assert h.readiness(15)["connect"] is True
    fake.down = True
    clock.now += 100
    assert h.step() == {}
    assert metric(h, "conveyor_connect_healer_poll_errors_total") == 1
    assert h.readiness(15)["connect"] is False


def test_statuses_without_a_state_are_skipped_and_summaries() -> None:
    doc = json.loads('{"a": {"status": {"connector": {}}}, "b": {}, '
                     '"c": {"status": {"connector": {"state": "RUNNING"}, "tasks": ['
                     '{"id": 0, "state": "RUNNING"}, {"id": 1, "state": "UNASSIGNED"}]}}}')
    (c,) = parse_statuses(doc)
    assert c.name == "c" and c.summary == "UNASSIGNED" and c.failed == []


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        HealSettings(initial_delay_seconds=100, max_delay_seconds=10)
    monkeypatch.setenv("CONVEYOR_HEAL__INITIAL_DELAY_SECONDS", "5")
    monkeypatch.setenv("CONVEYOR_HEAL__MAX_RESTARTS", "2")
    s = HealSettings()
    assert s.policy() == Policy(5, 2.0, 3600.0, 2, 600.0)


def test_another_worker_answers_while_the_first_is_down() -> None:
    up = FakeConnect()
    up.set("sink-a", "RUNNING", "FAILED")

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.host == "connect":
            raise httpx.ConnectError("connection refused")
        return up.handler(request)

    client = HealClient("http://connect:8083, http://connect-2:8083",
                        transport=httpx.MockTransport(handler))
    assert [s.name for s in client.statuses()] == ["sink-a"]
    client.restart("sink-a")
    assert up.restarts == ["sink-a"]
