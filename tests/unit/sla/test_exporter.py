"""A scrape through the collector with fake sources: what Prometheus would read, and that
no missing table, group or unreachable service ever fails a scrape."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sidecar.common.errors import ConfigError
from sla import settings as settings_mod
from sla.cli import EXIT_CONFIG, main
from sla.core import PartitionState
from sla.exporter import SlaCollector, health
from sla.kafka import (
    KafkaUnreachable,
    PartitionReading,
    Sink,
    SourceDown,
    kafka_failure,
    read_partitions,
)
from sla.settings import SlaSecrets, SlaSettings
from sla.warehouse import Table, TableReading

NOW_MS = 1_800_000_000_000
SINK = Sink("warehouse-x", "connect-warehouse-x", {"topics": "events.x"})


def _settings(**raw: object) -> SlaSettings:
    return settings_mod.SlaSettings(**raw)  # type: ignore[arg-type]


class FakeKafka:
    def __init__(self) -> None:
        self.states = {0: PartitionState(100, 0, 100), 1: PartitionState(40, 0, 100)}
        self.stamp_ms = NOW_MS - 30_000
        self.down: str | None = None

    def sinks(self) -> list[Sink]:
        if self.down == "connect":
            raise SourceDown("Connect at http://connect:8083: connection refused")
        return [SINK]

    def partitions(self, sinks: list[Sink]) -> tuple[list[PartitionReading], list[str]]:
        if self.down == "kafka":
            raise SourceDown("Kafka metadata: all brokers down")
        return [PartitionReading(SINK.connector, SINK.group, "events.x", p, st,
                                 None if st.caught_up else self.stamp_ms)
                for p, st in self.states.items()], []

    def dead_letters(self, sinks: list[Sink]) -> dict[str, tuple[str, int]]:
        return {s.connector: (f"dlq.{s.connector}", 3) for s in sinks}


class FakeWarehouse:
    def __init__(self) -> None:
        self.names = ["rabbitmq_a", "rabbitmq_b"]
        self.gone: set[str] = set()
        self.down = False
        self.now = 1_800_000_000.0
        self.windows: list[tuple[str, float | None]] = []
        self.forgotten = 0

    def tables(self) -> list[Table]:
        if self.down:
            raise SourceDown("PostgreSQL: connection refused")
        return [Table(n, "timestamp without time zone", "timestamp without time zone")
                for n in self.names]

    def read(self, table: Table, since_s: float | None) -> TableReading:
        if table.name in self.gone:
            raise LookupError(table.name)
        self.windows.append((table.name, since_s))
        self.now += 10
        rows = 0 if since_s is None else 3
        cum = [min(rows, i) for i in range(12)]
        return TableReading(table.name, self.now - 7.5, self.now, self.now - 5,
                            cum, rows, 4.0 * rows)

    def forget_tables(self) -> None:
        self.forgotten += 1


def _scrape(c: SlaCollector) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(c)
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _one(m: dict[tuple[tuple[str, str], ...], float], **labels: str) -> float:
    hits = [v for k, v in m.items() if set(labels.items()) <= set(k)]
    assert len(hits) == 1, (labels, m)
    return hits[0]


@pytest.fixture
def parts() -> tuple[FakeKafka, FakeWarehouse, SlaCollector]:
    k, w = FakeKafka(), FakeWarehouse()
    s = _settings(thresholds={"sink_lag_overrides": {"warehouse-*": 8}})
    return k, w, SlaCollector(s, k, w, clock_ms=lambda: NOW_MS)


def test_lag_freshness_and_thresholds(parts: tuple[FakeKafka, FakeWarehouse, SlaCollector]
                                      ) -> None:
    _, _, c = parts
    m = _scrape(c)
    lag = m["conveyor_sla_sink_lag_seconds"]
    assert _one(lag, partition="0") == 0.0
    assert _one(lag, partition="1", connector="warehouse-x", group="connect-warehouse-x") == 30
    assert _one(m["conveyor_sla_sink_lag_records"], partition="1") == 60
    assert _one(m["conveyor_sla_sink_lag_threshold_seconds"], connector="warehouse-x") == 8
    assert _one(m["conveyor_sla_table_freshness_seconds"], table="rabbitmq_a") == 7.5
    assert _one(m["conveyor_sla_table_stale_threshold_seconds"], table="rabbitmq_b") == 600
    assert set(m["conveyor_sla_source_up"].values()) == {1.0}


def test_retention_loss_is_counted_once_across_scrapes(
        parts: tuple[FakeKafka, FakeWarehouse, SlaCollector]) -> None:
    k, _, c = parts
    k.states[1] = PartitionState(40, 70, 100)
    for _ in range(3):
        m = _scrape(c)
        assert _one(m["conveyor_sla_retention_lost_records_total"], partition="1") == 30
    k.states[1] = PartitionState(40, 80, 100)
    m = _scrape(c)
    assert _one(m["conveyor_sla_retention_lost_records_total"], partition="1") == 40
    assert _one(m["conveyor_sla_retention_lost_records_total"], partition="0") == 0


def test_landing_histogram_counts_each_window_once(
        parts: tuple[FakeKafka, FakeWarehouse, SlaCollector]) -> None:
    _, w, c = parts
    _scrape(c)                       # the first scrape only sets where the window starts
    m = _scrape(c)
    assert _one(m["conveyor_sla_landing_delay_seconds_count"], table="rabbitmq_a") == 3
    m = _scrape(c)
    assert _one(m["conveyor_sla_landing_delay_seconds_count"], table="rabbitmq_a") == 6
    assert _one(m["conveyor_sla_landing_delay_seconds_sum"], table="rabbitmq_a") == 24
    # Each window starts where the previous one ended (its cutoff): no row in two windows.
    starts = [s for n, s in w.windows if n == "rabbitmq_a"]
    assert starts[0] is None and starts[1] is not None and starts[2] > starts[1]


@pytest.mark.parametrize("down", ["connect", "kafka"])
def test_kafka_side_down_is_a_gauge_not_a_failed_scrape(
        parts: tuple[FakeKafka, FakeWarehouse, SlaCollector], down: str,
        caplog: pytest.LogCaptureFixture) -> None:
    k, _, c = parts
    k.down = down
    m = _scrape(c)
    assert _one(m["conveyor_sla_source_up"], source=down) == 0
    assert _one(m["conveyor_sla_source_up"], source="postgres") == 1
    assert "conveyor_sla_sink_lag_seconds" not in m
    assert "rabbitmq_a" in str(m["conveyor_sla_table_freshness_seconds"])
    assert [r for r in caplog.records if r.getMessage() == "sla.source_down"]
    _scrape(c)    # still down: logged once, not at every scrape
    assert len([r for r in caplog.records if r.getMessage() == "sla.source_down"]) == 1
    k.down = None
    assert _one(_scrape(c)["conveyor_sla_source_up"], source=down) == 1


def test_postgres_down_and_a_dropped_table(
        parts: tuple[FakeKafka, FakeWarehouse, SlaCollector]) -> None:
    _, w, c = parts
    w.down = True
    m = _scrape(c)
    assert _one(m["conveyor_sla_source_up"], source="postgres") == 0
    assert _one(m["conveyor_sla_sink_lag_seconds"], partition="1") == 30
    w.down = False
    w.gone = {"rabbitmq_b"}
    m = _scrape(c)
    assert _one(m["conveyor_sla_source_up"], source="postgres") == 1
    assert "rabbitmq_b" not in str(m["conveyor_sla_table_freshness_seconds"])
    assert w.forgotten == 1


def test_unexpected_errors_never_escape_a_scrape(
        parts: tuple[FakeKafka, FakeWarehouse, SlaCollector]) -> None:
    k, w, c = parts
    k.partitions = lambda sinks: 1 / 0  # type: ignore[assignment,method-assign,misc]
    w.tables = lambda: [][1]            # type: ignore[method-assign,misc]
    m = _scrape(c)
    assert _one(m["conveyor_sla_source_up"], source="kafka") == 0
    assert _one(m["conveyor_sla_source_up"], source="postgres") == 0
    detail = health(c)
    assert detail["serving"] is True and detail["sources"]["kafka"] == "down"


class FakeReader:
    """``read_partitions`` over a fake librdkafka shell."""

    def __init__(self) -> None:
        self.asked: list[dict[tuple[str, int], int]] = []

    def committed(self, group: str, parts: list[TopicPartition]) -> dict[tuple[str, int], int]:
        if group == "connect-missing":
            raise SourceDown("committed offsets of connect-missing: group coordinator")
        return {("events.a", 0): 5, ("events.a", 1): 9} if group == "connect-one" else \
            {("events.a", 0): 2}

    def bounds(self, parts: list[TopicPartition]) -> dict[tuple[str, int], tuple[int, int]]:
        return {(tp.topic, tp.partition): (0, 9) for tp in parts}

    def next_stamps(self, at: dict[tuple[str, int], int],
                    ends: dict[tuple[str, int], int] | None = None
                    ) -> dict[tuple[str, int], int | None]:
        self.asked.append(dict(at))
        # Partition 0 at offset 2 is not read in time: its lag is unknown, not 0.
        return {k: NOW_MS - 1000 * o for k, o in at.items() if o != 2}


def test_read_partitions_per_sink_and_unknown_is_not_zero() -> None:
    reader = FakeReader()
    sinks = [Sink("one", "connect-one", {"topics.regex": r"events\..+"}),
             Sink("two", "connect-two", {"topics": "events.a"}),
             Sink("missing", "connect-missing", {"topics": "events.a"}),
             Sink("none", "connect-none", {})]
    readings, problems = read_partitions(reader, sinks,   # type: ignore[arg-type]
                                         {"events.a": [0, 1], "other": [0]})
    assert len(problems) == 2
    by = {(r.connector, r.partition): r for r in readings}
    assert set(by) == {("one", 0), ("one", 1), ("two", 0), ("two", 1)}
    assert by[("one", 0)].next_record_ms == NOW_MS - 5000 and by[("one", 0)].known
    assert by[("one", 1)].state.caught_up and by[("one", 1)].known
    assert not by[("two", 0)].known
    # No commit on partition 1: the group starts from the log start.
    assert by[("two", 1)].state.position == 0 and by[("two", 1)].next_record_ms == NOW_MS
    # Two sinks on one partition at different offsets: one read each.
    assert sorted(o for a in reader.asked for (_, p), o in a.items() if p == 0) == [2, 5]


class UnreachableReader(FakeReader):
    def __init__(self) -> None:
        super().__init__()
        self.groups: list[str] = []

    def committed(self, group: str, parts: list[TopicPartition]) -> dict[tuple[str, int], int]:
        self.groups.append(group)
        raise KafkaUnreachable(f"committed offsets of {group}: timed out")


def test_kafka_away_is_one_timeout_not_one_per_sink() -> None:
    reader = UnreachableReader()
    sinks = [Sink(n, f"connect-{n}", {"topics": "events.a"}) for n in ("a", "b", "c")]
    with pytest.raises(KafkaUnreachable):
        read_partitions(reader, sinks, {"events.a": [0]})   # type: ignore[arg-type]
    assert reader.groups == ["connect-a"]


@pytest.mark.parametrize(("code", "unreachable"), [
    (KafkaError._TIMED_OUT, True), (KafkaError._TRANSPORT, True),
    (KafkaError._ALL_BROKERS_DOWN, True), (KafkaError.COORDINATOR_NOT_AVAILABLE, True),
    (KafkaError.GROUP_AUTHORIZATION_FAILED, False), (KafkaError._INVALID_ARG, False)])
def test_which_kafka_errors_mean_kafka_is_away(code: int, unreachable: bool) -> None:
    failure = kafka_failure("committed offsets of g", KafkaException(KafkaError(code)))
    assert isinstance(failure, SourceDown)
    assert isinstance(failure, KafkaUnreachable) is unreachable
    # Anything else librdkafka raises is a plain SourceDown of that request.
    assert type(kafka_failure("x", RuntimeError("boom"))) is SourceDown


def test_secrets_only_from_the_environment(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "sla.yaml"
    bad.write_text("postgres:\n  password: hunter2\n")
    with pytest.raises(ConfigError, match=r"postgres\.password"):
        settings_mod.load(bad)
    monkeypatch.setenv("CONVEYOR_POSTGRES_PASSWORD", "s3cret")
    monkeypatch.setenv("CONVEYOR_SLA__POSTGRES__HOST", "db.internal")
    s = settings_mod.load(None)
    info = SlaSecrets().postgres_conninfo(s.postgres)
    assert info["password"] == "s3cret" and info["host"] == "db.internal"
    assert "s3cret" not in repr(SlaSecrets()) and "s3cret" not in repr(s)


def test_example_configs_load() -> None:
    root = Path(settings_mod.__file__).parent / "examples"
    for name in ("compose.yaml", "full.yaml"):
        settings_mod.load(root / name)


def test_cli_refuses_a_bad_config_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "sla.yaml"
    bad.write_text("landing:\n  buckets: [5, 1]\n")
    result = CliRunner().invoke(main, ["--config", str(bad)])
    assert result.exit_code == EXIT_CONFIG
    assert "landing.buckets" in result.output
    assert "CONVEYOR_POSTGRES_PASSWORD" in CliRunner().invoke(main, ["--help"]).output


def test_task_states_per_connector_with_zeros_for_the_rest(
        parts: tuple[FakeKafka, FakeWarehouse, SlaCollector],
        monkeypatch: pytest.MonkeyPatch) -> None:
    k, _, c = parts
    failing = Sink("wh-bad", "connect-wh-bad", {"topics": "events.x"}, "RUNNING",
                   ("RUNNING", "FAILED", "FAILED", "SOMETHING_NEW"))
    monkeypatch.setattr(k, "sinks", lambda: [SINK, failing])
    k.down = "kafka"   # states come from Connect: exported with Kafka away too
    m = _scrape(c)
    tasks = m["conveyor_sla_sink_tasks"]
    assert _one(tasks, connector="wh-bad", state="FAILED") == 2
    assert _one(tasks, connector="wh-bad", state="RUNNING") == 1
    assert _one(tasks, connector="wh-bad", state="SOMETHING_NEW") == 1
    assert _one(tasks, connector="wh-bad", state="PAUSED") == 0
    assert _one(tasks, connector="warehouse-x", state="FAILED") == 0
    assert _one(m["conveyor_sla_sink_connector_state"], connector="wh-bad",
                state="RUNNING") == 1
    assert not [k for k in m["conveyor_sla_sink_connector_state"]
                if ("connector", "warehouse-x") in k]   # Connect gave no status for it


def test_list_sinks_reads_states_from_connects_listing(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    import httpx

    from sla.kafka import list_sinks

    listing = {
        "b-sink": {"info": {"type": "sink", "config": {"topics": "t"}},
                   "status": {"connector": {"state": "RUNNING"},
                              "tasks": [{"id": 1, "state": "FAILED"},
                                        {"id": 0, "state": "RUNNING"}]}},
        "a-source": {"info": {"type": "source", "config": {}},
                     "status": {"connector": {"state": "RUNNING"}, "tasks": []}},
        "c-sink": {"info": {"type": "sink", "config": {"topics": "u"}}},
    }
    seen: list[object] = []

    def fake_get(url: str, params: object, timeout: float) -> httpx.Response:
        seen.append(params)
        return httpx.Response(200, json=listing, request=httpx.Request("GET", url))

    monkeypatch.setattr(httpx, "get", fake_get)
    sinks = list_sinks("http://connect:8083/", ["*"], 5.0)
    assert [s.connector for s in sinks] == ["b-sink", "c-sink"]
    assert sinks[0].state == "RUNNING" and sinks[0].task_states == ("RUNNING", "FAILED")
    assert sinks[1].state == "" and sinks[1].task_states == ()
    assert ("expand", "status") in seen[0]  # type: ignore[operator]


def test_dead_letters_per_sink(parts: tuple[FakeKafka, FakeWarehouse, SlaCollector]) -> None:
    _, _, c = parts
    m = _scrape(c)
    assert _one(m["conveyor_sla_sink_dead_letter_records"], connector="warehouse-x",
                topic="dlq.warehouse-x") == 3


class BoundsReader:
    def __init__(self, ends: dict[tuple[str, int], int]) -> None:
        self.ends = ends
        self.asked: list[list[tuple[str, int]]] = []

    def bounds(self, parts: list[TopicPartition]) -> dict[tuple[str, int], tuple[int, int]]:
        keys = [(tp.topic, tp.partition) for tp in parts]
        self.asked.append(keys)
        return {k: (0, self.ends[k]) for k in keys if k in self.ends}


def test_dead_letter_totals_sum_partitions_and_a_missing_topic_holds_none() -> None:
    from sla.kafka import dead_letter_totals

    sinks = [Sink("a", "connect-a", {"errors.deadletterqueue.topic.name": "dlq.a"}),
             Sink("b", "connect-b", {"errors.deadletterqueue.topic.name": " dlq.b "}),
             Sink("shared", "connect-shared", {"errors.deadletterqueue.topic.name": "dlq.a"}),
             Sink("none", "connect-none", {"topics": "events.x"}),
             Sink("unread", "connect-unread", {"errors.deadletterqueue.topic.name": "dlq.u"})]
    reader = BoundsReader({("dlq.a", 0): 4, ("dlq.a", 1): 6})
    topics = {"dlq.a": [0, 1], "dlq.u": [0], "events.x": [0]}
    totals = dead_letter_totals(reader, sinks, topics)  # type: ignore[arg-type]
    assert totals == {"a": ("dlq.a", 10), "b": ("dlq.b", 0), "shared": ("dlq.a", 10)}
    assert sorted(reader.asked[0]) == [("dlq.a", 0), ("dlq.a", 1), ("dlq.u", 0)]
