"""The SLA exporter against the real stack, as on-call would rely on it:

- a sink paused (Connect's pause API) while events keep arriving raises ConveyorSinkLagging
  and ConveyorTableStale in Prometheus, and both resolve after resume;
- a lagging group behind a topic whose log start moves past it counts the records it lost,
  once, however often it is scraped;
- the exporter's freshness of a table agrees with a PostgreSQL query of its rows.

The stack's exporter gives this test's connectors (``sla-*``) and tables (``sla*``) short
thresholds (sla/examples/compose.yaml), so the alerts fire within a minute; every wait polls
an API to a deadline derived from those settings and monitoring/'s own files.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from connectors import deploy
from connectors.configs import ConnectorFile
from connectors.rest import ConnectClient
from devstack.stack import ROOT, Stack
from tests.integration.connectors.bridges import RabbitMQWriter, order
from tests.integration.landing import Run, for_test
from tests.integration.monitoring.test_monitoring import _rules, _seconds, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SETTINGS = yaml.safe_load((ROOT / "sla" / "examples" / "compose.yaml").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())


def _alert_window(alert: str, threshold: float) -> float:
    """Worst case from the moment lag starts growing to the alert firing: the threshold
    itself, one scrape, one evaluation to go pending, the rule's `for:`, one more."""
    scrape = next(s for s in PROMETHEUS["scrape_configs"] if s["job_name"] == "sla-exporter")
    evaluation = _seconds(PROMETHEUS["global"]["evaluation_interval"])
    rule = next(r for r in _rules() if r.get("alert") == alert)
    return (threshold + _seconds(scrape["scrape_interval"]) + 2 * evaluation
            + _seconds(rule.get("for", "0s")) + SETTINGS["metadata_ttl_seconds"])


def _override(kind: str, name: str) -> float:
    import fnmatch
    for pattern, seconds in SETTINGS["thresholds"][f"{kind}_overrides"].items():
        if fnmatch.fnmatchcase(name, pattern):
            return float(seconds)
    pytest.fail(f"no {kind} override in sla/examples/compose.yaml matches {name}")


def exporter_samples(stack: Stack, name: str, **labels: str) -> list[float]:
    text = httpx.get(f"{stack.sla_exporter_url}/metrics", timeout=30).text
    return [s.value for fam in text_string_to_metric_families(text) for s in fam.samples
            if s.name == name and labels.items() <= s.labels.items()]


def firing(prometheus: httpx.Client, alert: str, **labels: str) -> list[dict[str, Any]]:
    alerts = prometheus.get("/api/v1/alerts").json()["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("alertname") == alert
            and a["state"] == "firing" and labels.items() <= a["labels"].items()]


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _scraped(client: httpx.Client) -> bool:
    targets = client.get("/api/v1/targets", params={"state": "active"}).json()
    return any(t["labels"]["job"] == "sla-exporter" and t["health"] == "up"
               for t in targets["data"]["activeTargets"])


@pytest.fixture(scope="module")
def prometheus(stack: Stack) -> Iterator[httpx.Client]:
    """Prometheus, once it scrapes the exporter (which answers /health)."""
    with httpx.Client(base_url=stack.prometheus_url, timeout=5) as client:
        wait_for("the SLA exporter to answer /health",
                 lambda: _answers(f"{stack.sla_exporter_url}/health"), 120)
        wait_for("Prometheus to scrape the SLA exporter", lambda: _scraped(client), 60)
        yield client


@pytest.fixture
def writer(stack: Stack, run: Run, tmp_path: Path) -> Iterator[RabbitMQWriter]:
    w = RabbitMQWriter(stack, f"{run.prefix}.events", tmp_path)
    yield w
    w.close()


@pytest.fixture
def sla_sink(run: Run, connect: ConnectClient, stack: Stack,
             deployed: Callable[[ConnectorFile], deploy.Applied]
             ) -> Iterator[Callable[..., tuple[str, str]]]:
    """``sla_sink(**changes)`` deploys the RabbitMQ sink as ``sla-<token>`` landing in
    ``sla<token>_rabbitmq_*``; returns (connector, orders table). Tables dropped after."""
    made: list[str] = []

    def make(suffix: str = "", topic: str | None = None) -> tuple[str, str]:
        base = for_test("rabbitmq-events.json", run, **{
            "transforms.route.topic.format": f"sla{run.token}{suffix}_rabbitmq_${{value}}"})
        config = dict(base.config)
        if topic is not None:
            del config["topics.regex"]
            config["topics"] = topic
        name = f"sla-{run.token}{suffix}"
        deployed(ConnectorFile(name, config, base.path, base.notes))
        made.append(f"sla{run.token}{suffix}_rabbitmq_order_placed")
        return name, made[-1]

    yield make
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        for table in made:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')


def _newest_in_postgres(stack: Stack, table: str) -> tuple[float, float]:
    with psycopg.connect(stack.postgres_dsn) as conn:
        row = conn.execute(
            f'SELECT extract(epoch FROM max(accepted_at))::float8, '
            f'extract(epoch FROM now() - max(accepted_at))::float8 FROM "{table}"').fetchone()
    assert row is not None and row[0] is not None
    return float(row[0]), float(row[1])


def _rows(stack: Stack, table: str) -> int:
    with psycopg.connect(stack.postgres_dsn) as conn:
        try:
            row = conn.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
    return int(row[0]) if row else 0


def test_paused_sink_alerts_and_resolves_and_freshness_agrees(
        stack: Stack, run: Run, connect: ConnectClient, prometheus: httpx.Client,
        writer: RabbitMQWriter, sla_sink: Callable[..., tuple[str, str]]) -> None:
    writer.publish([order(i, run.token) for i in range(5)])
    name, table = sla_sink()
    wait_for(f"5 rows in {table}", lambda: _rows(stack, table) >= 5, 90)

    # Idle: the exporter's newest accepted_at is the table's, and its freshness is
    # now - max(accepted_at) as PostgreSQL computes it (scrape and query a moment apart).
    seen = wait_for(f"{table} in the exporter", lambda: exporter_samples(
        stack, "conveyor_sla_table_newest_accepted_timestamp_seconds", table=table), 30)
    newest, fresh_sql = _newest_in_postgres(stack, table)
    assert seen == [pytest.approx(newest, abs=0.001)]
    fresh = exporter_samples(stack, "conveyor_sla_table_freshness_seconds", table=table)
    assert fresh and abs(fresh[0] - fresh_sql) < 3.0, (fresh, fresh_sql)

    # Events keep coming while the sink is paused.
    stop = threading.Event()

    def publish() -> None:
        i = 100
        while not stop.wait(0.5):
            writer.publish([order(i, run.token)])
            i += 1

    flow = threading.Thread(target=publish, daemon=True)
    flow.start()
    try:
        wait_for(f"{name} caught up (lag alerts start quiet)", lambda: not firing(
            prometheus, "ConveyorSinkLagging", connector=name), 60)
        httpx.put(f"{stack.connect_url}/connectors/{name}/pause", timeout=10
                  ).raise_for_status()
        lag_window = _alert_window("ConveyorSinkLagging", _override("sink_lag", name))
        stale_window = _alert_window("ConveyorTableStale", _override("table_stale", table))
        wait_for(f"ConveyorSinkLagging for paused {name}", lambda: firing(
            prometheus, "ConveyorSinkLagging", connector=name), lag_window)
        wait_for(f"ConveyorTableStale for {table}", lambda: firing(
            prometheus, "ConveyorTableStale", table=table), stale_window)
        assert max(exporter_samples(stack, "conveyor_sla_sink_lag_seconds",
                                    connector=name)) > _override("sink_lag", name)

        connect.resume(name)
        connect.wait_running(name, 60)
        # Resolved: one scrape sees it caught up, one evaluation clears it.
        resolve = _seconds("10s") * 3 + SETTINGS["metadata_ttl_seconds"]
        wait_for(f"ConveyorSinkLagging for {name} to resolve", lambda: not firing(
            prometheus, "ConveyorSinkLagging", connector=name), resolve + 30)
        wait_for(f"ConveyorTableStale for {table} to resolve", lambda: not firing(
            prometheus, "ConveyorTableStale", table=table), resolve + 30)
    finally:
        stop.set()
        flow.join(10)


def test_retention_loss_of_a_lagging_group_is_counted_once(
        stack: Stack, run: Run, connect: ConnectClient, prometheus: httpx.Client,
        writer: RabbitMQWriter, sla_sink: Callable[..., tuple[str, str]]) -> None:
    topic = writer.topics["order_placed"]
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    # One partition and a tiny retention. Kafka only deletes closed segments, at its
    # retention check (every 5 minutes): the deletion is forced with DeleteRecords, which
    # moves the log start exactly as retention does, at a known offset.
    created = admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "1000"})])
    created[topic].result(timeout=30)
    writer.publish([order(i, run.token) for i in range(5)])
    name, table = sla_sink("r", topic=topic)
    wait_for(f"5 rows in {table}", lambda: _rows(stack, table) >= 5, 90)
    group = f"connect-{name}"
    connect.stop(name)
    wait_for(f"{name} stopped", lambda: connect.status(name).state == "STOPPED", 30)
    committed = connect.offsets(name)[(topic, 0)]

    writer.publish([order(i, run.token) for i in range(100, 120)])
    # The bridge forwards them after RabbitMQ confirms: wait until all 20 are in the log
    # (read straight after publishing, the end had not moved yet in one run).
    end = wait_for("the 20 records in Kafka", lambda: (
        e if (e := admin_watermarks(stack, topic)[1]) >= committed + 20 else 0), 60)
    cut = end - 5                       # the log now starts past 15 records the group lacks
    futures = admin.delete_records([TopicPartition(topic, 0, cut)])
    for f in futures.values():
        f.result(timeout=30)
    expected = cut - committed
    assert expected > 10

    def counted() -> list[float]:
        got = exporter_samples(stack, "conveyor_sla_retention_lost_records_total",
                               group=group, topic=topic)
        return got if got and got[0] == expected else []

    wait_for(f"{expected} lost records counted for {group}", counted,
             3 * SETTINGS["metadata_ttl_seconds"] + 15,
             explain=lambda: str(exporter_samples(
                 stack, "conveyor_sla_retention_lost_records_total", group=group)))
    for _ in range(3):   # scraped again and again, the same loss
        assert exporter_samples(stack, "conveyor_sla_retention_lost_records_total",
                                group=group, topic=topic) == [expected]
    wait_for(f"ConveyorRetentionLoss for {group}", lambda: firing(
        prometheus, "ConveyorRetentionLoss", group=group), 45)


def admin_watermarks(stack: Stack, topic: str) -> tuple[int, int]:
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": "sla-itest-probe"})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(low), int(high)
    finally:
        c.close()


def test_a_failed_sink_task_is_exported_as_failed(
        stack: Stack, run: Run, connect: ConnectClient) -> None:
    """A sink whose task cannot start (its warehouse password is not there) is what Connect
    calls FAILED: the exporter says so per connector, which ConveyorSinkTaskFailed pages on
    (its firing and resolving are promtool cases in monitoring/tests/sla.yml)."""
    base = for_test("snowplow-bad-rows.json", run, **{
        "connection.password": "${env:CONVEYOR_NO_SUCH_VARIABLE}"})
    name = f"sla-{run.token}-failing"
    connect.put(name, base.config)
    try:
        def failed_tasks() -> float:
            return sum(exporter_samples(stack, "conveyor_sla_sink_tasks",
                                        connector=name, state="FAILED"))
        wait_for(f"{name}'s task FAILED in the exporter", lambda: failed_tasks() >= 1, 90)
        assert connect.status(name).failures, "Connect itself reports the failed task"
        assert exporter_samples(stack, "conveyor_sla_sink_tasks",
                                connector=name, state="RUNNING") == [0.0]
    finally:
        connect.delete(name)
