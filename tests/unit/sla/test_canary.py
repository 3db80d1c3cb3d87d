"""Canaries without a broker or a database: the schedule, the ids, what each check decides
(with an injected clock), the publishers' bodies against the bridges' own validation, and
the metrics a scrape renders."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.snowplow.iglu import Resolver
from sidecar.snowplow.pipeline import CollectorCore, RawRequest
from sidecar.snowplow.settings import load_settings as snowplow_settings
from sla import settings as settings_mod
from sla.canaries import Canaries, PublishFailed, SnowplowPublisher, render_payload
from sla.canary import (
    APP_ID,
    ID_PREFIX,
    PathBook,
    canary_id,
    next_due,
    snowplow_event_id,
)
from sla.exporter import SlaCollector
from sla.kafka import SourceDown
from sla.settings import SlaSecrets, SlaSettings

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_800_000_000.0


# -- schedule ---------------------------------------------------------------------------

def test_the_schedule_is_fixed_rate_and_skips_missed_slots() -> None:
    assert next_due(100.0, 15.0, 101.0) == 115.0          # no drift from publish time
    assert next_due(100.0, 15.0, 114.999) == 115.0
    assert next_due(100.0, 15.0, 115.0) == 130.0          # the slot at "now" is gone
    assert next_due(100.0, 15.0, 161.0) == 175.0          # stuck a minute: no burst
    with pytest.raises(ValueError):
        next_due(0.0, 0.0, 1.0)


@given(st.floats(0, 1e6), st.floats(0.01, 3600), st.floats(0, 1e5))
def test_the_next_slot_is_in_the_future_and_within_one_interval(
        previous: float, interval: float, ahead: float) -> None:
    now = previous + ahead
    due = next_due(previous, interval, now)
    assert due > now
    assert due <= max(now, previous) + interval + 1e-6 * max(1.0, now)


# -- ids ----------------------------------------------------------------------------------

def test_ids_name_path_run_and_sequence() -> None:
    readable = canary_id("rabbitmq", "a1b2c3d4", 7)
    assert readable == "canary-rabbitmq-a1b2c3d4-7" and readable.startswith(ID_PREFIX)
    eid = snowplow_event_id(canary_id("snowplow", "a1b2c3d4", 7))
    assert str(uuid.UUID(eid)) == eid                    # the tracker protocol wants a UUID
    assert eid == snowplow_event_id("canary-snowplow-a1b2c3d4-7")
    assert eid != snowplow_event_id("canary-snowplow-a1b2c3d4-8")


# -- what a check decides -------------------------------------------------------------------

def _book(deadline: float = 60.0, **kw: Any) -> PathBook:
    return PathBook("rabbitmq", deadline, T0, **kw)


def test_a_canary_found_is_seen_once_with_its_latency() -> None:
    b = _book()
    b.published("c1", T0 + 1)
    b.published("c2", T0 + 6)
    d = b.observe(T0 + 10, {"c1": T0 + 3.5})
    assert d.seen == {"c1": 2.5} and d.lost == []
    assert (b.sent, b.seen, b.lost, b.looking_for()) == (2, 1, 0, ["c2"])
    assert b.latency.counts[b.latency.buckets.index(3)] == 1
    # Found again (it stays in the table): not counted twice. Another exporter's id: ignored.
    d = b.observe(T0 + 20, {"c1": T0 + 3.5, "canary-other": T0 + 4})
    assert d.seen == {} and b.seen == 1


def test_a_canary_not_found_by_its_deadline_is_lost_and_then_never_seen() -> None:
    b = _book(deadline=60)
    b.published("c1", T0)
    assert b.observe(T0 + 59.9, {}).lost == []           # not yet
    assert b.observe(T0 + 60, {}).lost == ["c1"]
    assert b.observe(T0 + 70, {"c1": T0 + 65}).seen == {}  # landed too late: stays lost
    assert (b.seen, b.lost, b.latency.counts[-1]) == (0, 1, 0)
    # Found only after its deadline (no check in between), landed after it: lost too.
    b.published("c2", T0 + 100)
    d = b.observe(T0 + 200, {"c2": T0 + 161})
    assert (d.seen, d.lost, b.lost) == ({}, ["c2"], 2)


def test_a_sink_clock_behind_ours_gives_zero_not_negative_latency() -> None:
    b = _book()
    b.published("c1", T0 + 10)
    assert b.observe(T0 + 11, {"c1": T0 + 9.99}).seen == {"c1": 0.0}


def test_age_is_since_the_newest_seen_canary_was_published() -> None:
    b = _book()
    assert b.age(T0 + 30) == 30                          # none seen: since canarying began
    b.published("c1", T0 + 5)
    b.published("c2", T0 + 10)
    b.observe(T0 + 12, {"c2": T0 + 11})
    b.observe(T0 + 13, {"c1": T0 + 12})                  # an older one seen later
    assert b.age(T0 + 40) == 30


def test_failures_are_counted_by_reason_and_put_nothing_on_its_way() -> None:
    b = _book()
    b.failed("connection")
    b.failed("connection")
    b.failed("unroutable")
    assert b.failures == {"connection": 2, "unroutable": 1} and b.sent == 0
    assert b.looking_for() == []


def test_pending_is_bounded_and_what_falls_off_counts_lost() -> None:
    b = _book(max_pending=3)
    for i in range(5):
        b.published(f"c{i}", T0 + i)
    assert b.looking_for() == ["c2", "c3", "c4"] and b.lost == 2 and b.sent == 5


@st.composite
def _histories(draw: st.DrawFn) -> tuple[float, list[tuple[float, float | None]], list[float]]:
    deadline = draw(st.floats(1, 1000))
    n = draw(st.integers(0, 30))
    canaries = [(draw(st.floats(0, 500)),                       # published at
                 draw(st.none() | st.floats(0, 2000)))          # visible after, or never
                for _ in range(n)]
    checks = sorted(draw(st.lists(st.floats(0, 3000), max_size=20)))
    return deadline, canaries, checks


@settings(max_examples=300, deadline=None)
@given(_histories(), st.integers(1, 40))
def test_every_canary_is_seen_or_lost_exactly_once_after_its_deadline(
        history: tuple[float, list[tuple[float, float | None]], list[float]],
        max_pending: int) -> None:
    """Whatever the publish times, landing delays, check times (failed checks are simply
    no checks) and the pending bound: after a check past every deadline, each canary is
    counted once, as seen or as lost, never both, never neither; and the seen ones are
    those that landed within their deadline, with the latency they landed with."""
    deadline, canaries, checks = history
    b = PathBook("p", deadline, 0.0, max_pending=max_pending)
    published = sorted((at, i) for i, (at, _) in enumerate(canaries))
    seen: dict[str, int] = {}
    lost: dict[str, int] = {}
    events = [(at, 0, i) for at, i in published] + [(t, 1, -1) for t in checks]
    # The last check comes after every deadline (by a second: float sums round).
    events.append((max((at for at, _ in published), default=0.0) + deadline + 1, 1, -1))
    for at, kind, i in sorted(events):
        if kind == 0:
            b.published(f"c{i}", at)      # beyond max_pending the oldest is counted lost
            continue
        visible = {f"c{j}": canaries[j][0] + (canaries[j][1] or 0.0)
                   for j in range(len(canaries))
                   if canaries[j][1] is not None and canaries[j][0] <= at
                   and canaries[j][0] + canaries[j][1] <= at}
        d = b.observe(at, visible)
        for eid, latency in d.seen.items():
            seen[eid] = seen.get(eid, 0) + 1
            j = int(eid[1:])
            assert latency == pytest.approx(canaries[j][1]) and latency <= deadline
        for eid in d.lost:
            lost[eid] = lost.get(eid, 0) + 1
    assert all(n == 1 for n in seen.values()) and all(n == 1 for n in lost.values())
    assert not set(seen) & set(lost)
    evicted = b.lost - len(lost)
    assert len(seen) + len(lost) + evicted == len(canaries) == b.sent
    assert b.looking_for() == [] and b.seen == len(seen)
    assert b.latency.counts[-1] == len(seen)


# -- publishers' bodies, checked by the bridges' own code ------------------------------------

def test_render_payload_fills_placeholders_in_strings_only() -> None:
    out = render_payload({"id": "{event_id}", "n": 3, "ms": "{published_ms}",
                          "l": ["x-{run}"]},
                         {"event_id": "canary-a", "published_ms": "1700", "run": "r1"})
    assert out == {"id": "canary-a", "n": 3, "ms": 1700, "l": ["x-r1"]}


def test_the_compose_rabbitmq_canary_fits_the_robots_route_schema() -> None:
    s = settings_mod.load(ROOT / "sla" / "examples" / "compose.yaml")
    schema = json.loads((ROOT / "sidecar" / "rabbitmq" / "schemas" /
                         "robot_telemetry.avsc").read_text())
    body = render_payload(s.canary.rabbitmq.payload, {
        "event_id": "canary-rabbitmq-r-1", "published_at": "2026-12-02T10:00:00.000+00:00",
        "published_ms": "1", "run": "r"})
    assert fastavro.validation.validate(body, fastavro.parse_schema(schema))
    assert body["ts"] == "2026-12-02T10:00:00.000+00:00"
    assert s.canary.rabbitmq.routing_key.startswith("robot.telemetry.")


def test_the_snowplow_canary_is_a_good_struct_event_marked_and_timed() -> None:
    """Through the collector's own pipeline: one good event, no bad row; event_id the
    derived UUID, app_id the marker, occurred_at the publish time (ttm)."""
    sp = snowplow_settings(ROOT / "sidecar" / "snowplow" / "examples" / "compose.yaml")
    core = CollectorCore(Resolver(), sp.topics.router(), sp.topics.bad)
    published = T0 + 0.123
    body = SnowplowPublisher.body("canary-snowplow-r-1", "r", published)
    processed = core.process(RawRequest(
        "POST", "/com.snowplowanalytics.snowplow/tp2", "",
        {"content-type": "application/json", "sp-anonymous": "*"},
        json.dumps(body).encode(), int(published * 1000) + 40, "10.0.0.1"))
    assert processed.bad == 0 and processed.good == 1
    (event,) = processed.events
    assert event.event_id == snowplow_event_id("canary-snowplow-r-1")
    assert event.kind == "struct" and event.occurred_at_ms == int(published * 1000)
    assert event.attributes()["app_id"] == APP_ID
    assert event.payload()["se_label"] == "canary-snowplow-r-1"
    assert event.user_ipaddress is None                  # anonymous: no IP recorded


# -- the runner and the scrape, with fakes --------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FakePublisher:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.fail: Exception | None = None

    def publish(self, readable_id: str, run: str, published_s: float) -> str:
        if self.fail is not None:
            raise self.fail
        self.sent.append(readable_id)
        return readable_id

    def close(self) -> None: ...


class FakeFinder:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, float]] = {}
        self.down = False
        self.asked: list[tuple[str, list[str]]] = []

    def find(self, table: str, event_ids: list[str]) -> dict[str, float]:
        if self.down:
            raise SourceDown("PostgreSQL: connection refused")
        self.asked.append((table, event_ids))
        return {e: t for e, t in self.rows.get(table, {}).items() if e in event_ids}


def _canary_settings(**rmq: Any) -> SlaSettings:
    rabbitmq = {"enabled": True, "interval_seconds": 5, "deadline_seconds": 30,
                "missing_after_seconds": 15, **rmq}
    return SlaSettings(canary={"rabbitmq": rabbitmq})  # type: ignore[arg-type]


def test_a_publish_that_fails_or_raises_is_counted_and_never_escapes() -> None:
    clock, pub = Clock(), FakePublisher()
    c = Canaries(_canary_settings(), {"rabbitmq": pub}, clock=clock, run="r1")
    assert c.publish_once("rabbitmq", 1)
    pub.fail = PublishFailed("unroutable", "robot.telemetry.canary")
    assert not c.publish_once("rabbitmq", 2)
    pub.fail = RuntimeError("a bug in a publisher")
    assert not c.publish_once("rabbitmq", 3)
    (v,) = c.views()
    assert (v.sent, v.failures) == (1, {"unroutable": 1, "internal": 1})
    assert pub.sent == ["canary-rabbitmq-r1-1"]


def _scrape(collector: SlaCollector) -> dict[str, list[Any]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    out: dict[str, list[Any]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


class Warehouse(FakeFinder):
    """The collector's warehouse side: no tables to measure, only canaries to find."""

    def tables(self) -> list[Any]:
        if self.down:
            raise SourceDown("PostgreSQL: connection refused")
        return []

    def read(self, table: Any, since_s: float | None) -> Any:
        raise AssertionError("no tables")

    def forget_tables(self) -> None: ...


def test_a_scrape_decides_and_exports_each_path() -> None:
    clock, pub, wh = Clock(), FakePublisher(), Warehouse()
    s = _canary_settings(table="robots")
    c = Canaries(s, {"rabbitmq": pub}, clock=clock, run="r1")
    collector = SlaCollector(s, None, wh, canaries=c)
    c.publish_once("rabbitmq", 1)
    clock.now += 5
    c.publish_once("rabbitmq", 2)
    wh.rows["robots"] = {"canary-rabbitmq-r1-1": T0 + 1.5}
    clock.now += 1
    m = _scrape(collector)
    assert wh.asked[-1] == ("robots", ["canary-rabbitmq-r1-1", "canary-rabbitmq-r1-2"])
    value = {s.name: s.value for samples in m.values() for s in samples
             if not s.name.endswith("_bucket")}
    assert value["conveyor_sla_canary_sent_total"] == 2
    assert value["conveyor_sla_canary_seen_total"] == 1
    assert value["conveyor_sla_canary_lost_total"] == 0
    assert value["conveyor_sla_canary_pending"] == 1
    assert value["conveyor_sla_canary_last_seen_age_seconds"] == pytest.approx(6.0)
    assert value["conveyor_sla_canary_latency_seconds_sum"] == pytest.approx(1.5)
    assert value["conveyor_sla_canary_missing_threshold_seconds"] == 15
    (info,) = m["conveyor_sla_canary_info"]
    assert info.labels == {"path": "rabbitmq", "table": "robots", "run": "r1"}
    le2 = [x for x in m["conveyor_sla_canary_latency_seconds_bucket"] if x.labels["le"] == "2"]
    assert le2[0].value == 1

    # The warehouse away: nothing is decided, however late it gets; then the first check
    # that works decides.
    wh.down = True
    clock.now += 120
    m = _scrape(collector)
    up = {s.labels["source"]: s.value for s in m["conveyor_sla_source_up"]}
    assert up["postgres"] == 0
    assert [s.value for s in m["conveyor_sla_canary_lost_total"]] == [0]
    wh.down = False
    m = _scrape(collector)
    assert [s.value for s in m["conveyor_sla_canary_lost_total"]] == [1]
    assert [s.value for s in m["conveyor_sla_canary_pending"]] == [0]


def test_canary_settings_validate_and_take_credentials_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert SlaSettings().canary.paths() == {}            # off unless enabled
    with pytest.raises(ValueError, match="deadline_seconds"):
        SlaSettings(canary={"snowplow": {"enabled": True, "interval_seconds": 60,  # type: ignore[arg-type]
                                         "deadline_seconds": 30}})
    with pytest.raises(ValueError, match="environment"):
        SlaSettings(canary={"rabbitmq": {"url": "amqp://u:pw@mq:5672/%2F"}})  # type: ignore[arg-type]
    monkeypatch.setenv("CONVEYOR_RABBITMQ_USER", "sla")
    monkeypatch.setenv("CONVEYOR_RABBITMQ_PASSWORD", "p@ss/word")
    monkeypatch.setenv("CONVEYOR_SLA__CANARY__RABBITMQ__ENABLED", "true")
    s = settings_mod.load(None)
    assert list(s.canary.paths()) == ["rabbitmq"]
    url = SlaSecrets().amqp_url(s.canary.rabbitmq)
    assert url == "amqp://sla:p%40ss%2Fword@localhost:5672/%2F"
    assert "p@ss" not in repr(SlaSecrets())


def test_full_yaml_lists_the_canary_defaults() -> None:
    full = settings_mod.load(ROOT / "sla" / "examples" / "full.yaml")
    assert full.canary == SlaSettings().canary


class _Channel:
    """A pika channel as the publisher uses it: the first publish finds the connection
    dead (closed by the broker while idle), or the broker returns it unroutable."""

    def __init__(self, outcomes: list[Exception | None]) -> None:
        self.outcomes = outcomes
        self.published: list[tuple[str, str, bytes, Any]] = []
        self.is_open = True

    def basic_publish(self, exchange: str, routing_key: str, body: bytes,
                      properties: Any, mandatory: bool) -> None:
        assert mandatory
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome
        self.published.append((exchange, routing_key, body, properties))


def _publisher(outcomes: list[Exception | None]) -> tuple[Any, _Channel, list[int]]:
    from sla.canaries import RabbitMQPublisher

    channel, opened = _Channel(outcomes), [0]
    s = settings_mod.load(ROOT / "sla" / "examples" / "compose.yaml")
    pub = RabbitMQPublisher(s.canary.rabbitmq, "amqp://localhost:5672/%2F")

    def _open() -> _Channel:
        if pub._channel is None:
            opened[0] += 1
            pub._channel = channel
        return channel

    pub._open = _open   # type: ignore[method-assign]
    return pub, channel, opened


def test_a_dead_idle_connection_is_rebuilt_and_the_canary_published_once_more() -> None:
    from pika import exceptions as px

    pub, channel, opened = _publisher([None, px.StreamLostError("idle"), None])
    assert pub.publish("canary-rabbitmq-r-1", "r", T0) == "canary-rabbitmq-r-1"
    assert pub.publish("canary-rabbitmq-r-2", "r", T0 + 5) == "canary-rabbitmq-r-2"
    assert opened[0] == 2 and len(channel.published) == 2
    exchange, key, body, props = channel.published[1]
    assert (exchange, key) == ("events", "robot.telemetry.canary")
    assert props.message_id == "canary-rabbitmq-r-2" and props.app_id == APP_ID
    assert json.loads(body)["zone"] == "canary-rabbitmq-r-2"


def test_an_unroutable_canary_fails_without_a_retry() -> None:
    from pika import exceptions as px

    pub, channel, _ = _publisher([None, px.UnroutableError([])])
    pub.publish("canary-rabbitmq-r-1", "r", T0)
    with pytest.raises(PublishFailed) as err:
        pub.publish("canary-rabbitmq-r-2", "r", T0 + 5)
    assert err.value.reason == "unroutable" and channel.outcomes == []


_SETTINGS = _canary_settings()
_ERRORS = st.sampled_from([
    None, PublishFailed("connection", "refused"), PublishFailed("http_503"),
    PublishFailed("unroutable"), RuntimeError("bug"), KeyError("x"), OSError(104, "reset"),
    RecursionError(), UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")])


@settings(max_examples=100, deadline=None)
@given(st.lists(_ERRORS, max_size=30))
def test_publishing_never_raises_and_accounts_for_every_attempt(
        outcomes: list[Exception | None]) -> None:
    """Whatever a publisher raises, publish_once returns, and every attempt is either one
    canary sent (and pending) or one failure counted under a reason."""
    clock, pub = Clock(), FakePublisher()
    c = Canaries(_SETTINGS, {"rabbitmq": pub}, clock=clock, run="r1")
    for seq, outcome in enumerate(outcomes, 1):
        pub.fail = outcome
        assert c.publish_once("rabbitmq", seq) is (outcome is None)
        clock.now += 5
    (v,) = c.views()
    assert v.sent + sum(v.failures.values()) == len(outcomes)
    assert v.pending == v.sent == sum(1 for o in outcomes if o is None)
