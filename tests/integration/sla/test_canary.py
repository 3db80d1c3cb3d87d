"""The stack's canaries (sla/examples/compose.yaml: one through each bridge every 5 s), as
on-call relies on them:

- with the stack idle, the publish-to-row latencies the exporter counted agree with a
  PostgreSQL query of the same canary rows: the same count in every bucket, the same sum
  (to the millisecond the rows keep), and the query's p99 in the bucket the exporter's
  p99 falls in;
- the RabbitMQ bridge stopped, ConveyorCanaryMissing fires in Prometheus for that path
  (and only that one), and resolves once the bridge is back.

Latency is the row's ``landed_at`` minus the publish time. The canary carries its publish
time into the row as ``occurred_at`` (the robots route's ``ts``, Snowplow's ``ttm``), so the
query computes ``landed_at - occurred_at`` from the rows alone. ``landed_at - accepted_at``
would leave out the time a canary waits in RabbitMQ for the bridge, which is what a stopped
bridge adds; and the moment a row became visible is not recorded anywhere (see
sla/README.md), while ``landed_at`` precedes it by one batch's write.

The canaries land through the local connector profile's sinks, applied here as `make demo`
applies them and left running, so the stack's canaries keep landing after the test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from connectors import deploy
from connectors.configs import load_profile
from connectors.rest import ConnectClient
from devstack.stack import ROOT, Stack, compose
from tests.integration.monitoring.test_monitoring import _rules, _seconds, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SETTINGS = yaml.safe_load((ROOT / "sla" / "examples" / "compose.yaml").read_text())
PROMETHEUS = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
SINKS = ("warehouse-rabbitmq-events", "warehouse-snowplow-events")
BRIDGE = "rabbitmq-bridge"


@dataclass(frozen=True)
class Path:
    name: str
    table: str
    id_column: str     # the column holding the readable canary-<path>-<run>-<seq>


PATHS = (Path("rabbitmq", SETTINGS["canary"]["rabbitmq"]["table"], "event_id"),
         Path("snowplow", SETTINGS["canary"]["snowplow"]["table"], "se_label"))


def _metrics(stack: Stack) -> list[Any]:
    text = httpx.get(f"{stack.sla_exporter_url}/metrics", timeout=30).text
    return [s for fam in text_string_to_metric_families(text) for s in fam.samples]


def _value(samples: list[Any], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
    assert len(found) == 1, (name, labels, found)
    return float(found[0])


def _buckets(samples: list[Any], path: str) -> dict[str, float]:
    return {s.labels["le"]: s.value for s in samples
            if s.name == "conveyor_sla_canary_latency_seconds_bucket"
            and s.labels["path"] == path}


def _run(samples: list[Any]) -> str:
    runs = {s.labels["run"] for s in samples if s.name == "conveyor_sla_canary_info"}
    assert len(runs) == 1, runs
    return runs.pop()


def firing(prometheus: httpx.Client, alert: str, **labels: str) -> list[dict[str, Any]]:
    alerts = prometheus.get("/api/v1/alerts").json()["data"]["alerts"]
    return [a for a in alerts if a["labels"].get("alertname") == alert
            and a["state"] == "firing" and labels.items() <= a["labels"].items()]


@pytest.fixture(scope="module")
def canaries(stack: Stack) -> Iterator[str]:
    """The local profile's sinks running, and a canary seen on each path; the run id of the
    exporter's canaries (``canary-<path>-<run>-<seq>``)."""
    client = ConnectClient(stack.connect_url)
    try:
        for connector in load_profile("local"):
            if connector.name in SINKS:
                deploy.apply(client, connector, timeout=120)
    finally:
        client.close()
    wait_for("the SLA exporter to answer", lambda: _answers(stack), 120)
    start = _metrics(stack)

    def seen_on_every_path() -> bool:
        now = _metrics(stack)
        return all(_value(now, "conveyor_sla_canary_seen_total", path=p.name)
                   > _value(start, "conveyor_sla_canary_seen_total", path=p.name)
                   for p in PATHS)

    wait_for("a canary seen on every path", seen_on_every_path, 90, pause=2)
    yield _run(start)


def _answers(stack: Stack) -> bool:
    try:
        return httpx.get(f"{stack.sla_exporter_url}/health", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


# -- latency: the exporter against the rows --------------------------------------------------

def _rows(stack: Stack, path: Path, run: str) -> dict[str, float]:
    """This run's canary rows of a path that landed within the deadline: id -> latency."""
    deadline = float(SETTINGS["canary"][path.name]["deadline_seconds"])
    query = (f'SELECT "{path.id_column}", extract(epoch FROM landed_at - occurred_at)::float8 '
             f'FROM "{path.table}" WHERE "{path.id_column}" LIKE %s '
             f"AND landed_at - occurred_at <= make_interval(secs => %s)")
    with psycopg.connect(stack.postgres_dsn) as conn:
        rows = conn.execute(query, (f"canary-{path.name}-{run}-%", deadline)).fetchall()
    return {str(i): max(0.0, float(latency)) for i, latency in rows}


def _snapshot(stack: Stack, run: str) -> tuple[list[Any], dict[str, dict[str, float]]]:
    """A scrape bracketed by two queries that agree, so the scrape decided exactly the rows
    both queries returned (a canary landing in between makes it try again)."""
    for _ in range(10):
        before = {p.name: _rows(stack, p, run) for p in PATHS}
        samples = _metrics(stack)
        after = {p.name: _rows(stack, p, run) for p in PATHS}
        if before == after:
            return samples, after
    pytest.fail("canaries kept landing between every query and scrape")


def test_canary_latency_agrees_with_a_query_of_the_rows(stack: Stack, canaries: str) -> None:
    run = canaries
    first, rows_a = _snapshot(stack, run)
    want = 4   # new canaries per path: 20 s at the stack's 5 s interval

    def enough() -> bool:
        now = _metrics(stack)
        return all(_value(now, "conveyor_sla_canary_seen_total", path=p.name)
                   >= _value(first, "conveyor_sla_canary_seen_total", path=p.name) + want
                   for p in PATHS)

    wait_for(f"{want} more canaries seen on every path", enough, 90, pause=2)
    second, rows_b = _snapshot(stack, run)
    for p in PATHS:
        lost = [_value(s, "conveyor_sla_canary_lost_total", path=p.name) for s in (first, second)]
        assert lost[0] == lost[1], f"{p.name}: canaries lost while the stack was idle: {lost}"
        new = {i: v for i, v in rows_b[p.name].items() if i not in rows_a[p.name]}
        seen = (_value(second, "conveyor_sla_canary_seen_total", path=p.name)
                - _value(first, "conveyor_sla_canary_seen_total", path=p.name))
        assert seen == len(new) >= want, (p.name, seen, sorted(new))

        # Every bucket: the exporter's count of new canaries is the rows' count.
        a, b = _buckets(first, p.name), _buckets(second, p.name)
        bounds = sorted(float(le) for le in b if le != "+Inf")
        for le in bounds:
            key = next(k for k in b if k != "+Inf" and float(k) == le)
            in_rows = sum(1 for v in new.values() if v <= le)
            assert b[key] - a[key] == in_rows, (p.name, le, b[key] - a[key], sorted(new.values()))
        total = (_value(second, "conveyor_sla_canary_latency_seconds_sum", path=p.name)
                 - _value(first, "conveyor_sla_canary_latency_seconds_sum", path=p.name))
        # Rows keep occurred_at to the millisecond; the exporter knows the publish time finer.
        assert abs(total - sum(new.values())) <= 0.0011 * len(new), (p.name, total, new)

        # p99: the rank-0.99 latency of the rows lies in the bucket where the exporter's
        # p99 (histogram_quantile over the same canaries) falls.
        ranked = sorted(new.values())
        rows_p99 = ranked[max(0, -(-99 * len(ranked) // 100) - 1)]
        rank = 0.99 * len(new)
        lower = 0.0
        for le in bounds:
            key = next(k for k in b if k != "+Inf" and float(k) == le)
            if b[key] - a[key] >= rank:
                assert lower < rows_p99 <= le or (lower == 0.0 and rows_p99 == 0.0), (
                    p.name, rows_p99, (lower, le))
                break
            lower = le
        else:
            pytest.fail(f"{p.name}: p99 beyond the last bucket: {ranked}")
        print(f"\n{p.name}: {len(new)} canaries, p99 {rows_p99:.3f}s in ({lower}, {le}] "
              f"(exporter), mean {total / len(new):.3f}s")


# -- a stopped bridge ------------------------------------------------------------------------

def _missing_window() -> float:
    """Worst case from the last canary through to the alert firing: the path's threshold,
    one interval, one scrape, one evaluation to go pending, the rule's `for:`, one more."""
    scrape = next(s for s in PROMETHEUS["scrape_configs"] if s["job_name"] == "sla-exporter")
    evaluation = _seconds(PROMETHEUS["global"]["evaluation_interval"])
    rule = next(r for r in _rules() if r.get("alert") == "ConveyorCanaryMissing")
    path = SETTINGS["canary"]["rabbitmq"]
    return (path["missing_after_seconds"] + path["interval_seconds"]
            + _seconds(scrape["scrape_interval"]) + 2 * evaluation
            + _seconds(rule.get("for", "0s")))


@pytest.fixture(scope="module")
def prometheus(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.prometheus_url, timeout=5) as client:
        yield client


def test_a_stopped_rabbitmq_bridge_raises_canary_missing_then_resolves(
        stack: Stack, canaries: str, prometheus: httpx.Client) -> None:
    window = _missing_window()
    alert = "ConveyorCanaryMissing"
    # A test before this one may have stopped the bridge: start from a quiet alert.
    wait_for(f"{alert} quiet for rabbitmq before the bridge stops",
             lambda: not firing(prometheus, alert, path="rabbitmq"), window + 30)
    before = _metrics(stack)
    compose("stop", BRIDGE)
    stopped = time.monotonic()
    try:
        wait_for(f"{alert} for rabbitmq in Prometheus", lambda: firing(
            prometheus, alert, path="rabbitmq"), window + 15)
        fired = time.monotonic() - stopped
        # A canary the bridge had put in Kafka just before it stopped may still land after
        # `before`; by the time the alert fires, nothing has landed for the whole threshold.
        # From then on RabbitMQ still takes the canaries (the bridge's queue holds them):
        # the next one is sent and not seen, and nothing is wrong with the other path.
        fired_at = _metrics(stack)
        sent = _value(fired_at, "conveyor_sla_canary_sent_total", path="rabbitmq")
        assert sent > _value(before, "conveyor_sla_canary_sent_total", path="rabbitmq")
        now = wait_for("one more rabbitmq canary sent while the bridge is stopped", lambda: (
            m if _value(m := _metrics(stack), "conveyor_sla_canary_sent_total",
                        path="rabbitmq") > sent else None), window)
        assert (_value(now, "conveyor_sla_canary_seen_total", path="rabbitmq")
                == _value(fired_at, "conveyor_sla_canary_seen_total", path="rabbitmq"))
        assert not firing(prometheus, alert, path="snowplow")
        (a,) = firing(prometheus, alert, path="rabbitmq")
        assert a["labels"]["severity"] == "page"
        assert a["annotations"]["summary"].startswith("No canary through rabbitmq for ")
    finally:
        compose("start", BRIDGE)
        stack.wait([BRIDGE])
    started = time.monotonic()
    # Back: the bridge drains the queue, one scrape sees a fresh canary, one evaluation
    # clears the alert.
    wait_for(f"{alert} for rabbitmq to resolve", lambda: not firing(
        prometheus, alert, path="rabbitmq"), window)
    print(f"\n{BRIDGE} stopped: {alert} after {fired:.0f}s (window {window:.0f}s); "
          f"resolved {time.monotonic() - started:.0f}s after the start")
