"""Prometheus and Alertmanager of the stack, as an on-call engineer relies on them: the
rules of monitoring/ are loaded and evaluate cleanly, every Conveyor process is scraped,
and a bridge that stops answering reaches Alertmanager as ConveyorTargetDown, on the
`page` route, within the window its rule and the scrape configuration give, then
resolves once the bridge is back.

Every wait polls the HTTP APIs to a deadline; the deadlines come from monitoring/'s own
files, so they follow a changed `for:` or interval.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devstack.stack import Stack, compose

MONITORING = Path(__file__).resolve().parents[3] / "monitoring"
CONVEYOR_JOBS = {"rabbitmq-bridge", "snowplow-collector", "snowplow-enrich"}
# What Prometheus needs to reach every target and evaluate every rule after a (re)start.
SETTLE_S = 60.0


def _seconds(duration: str) -> float:
    """A Prometheus duration (``90s``, ``1m30s``, ``2h``) in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def _rules() -> list[dict[str, Any]]:
    return [rule for path in sorted((MONITORING / "rules").glob("*.yml"))
            for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"]]


def _target_down_window(job: str) -> float:
    """Seconds from a target's last good scrape to its alert reaching Alertmanager, at
    worst: one scrape interval to fail, one evaluation to go pending, the rule's `for:`,
    one more evaluation to fire."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    scrape = next(s for s in config["scrape_configs"] if s["job_name"] == job)
    interval = _seconds(scrape.get("scrape_interval", config["global"]["scrape_interval"]))
    evaluation = _seconds(config["global"]["evaluation_interval"])
    rule = next(r for r in _rules() if r.get("alert") == "ConveyorTargetDown")
    return interval + 2 * evaluation + _seconds(rule.get("for", "0s"))


def wait_for(what: str, check: Callable[[], Any], timeout: float, pause: float = 1.0,
             explain: Callable[[], str] | None = None) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (and what
    ``explain`` says then)."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            detail = f": {explain()}" if explain is not None else ""
            pytest.fail(f"{what} within {timeout:.0f}s{detail}", pytrace=False)
        time.sleep(pause)


@pytest.fixture(scope="module")
def prometheus(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.prometheus_url, timeout=5) as client:
        yield client


@pytest.fixture(scope="module")
def alertmanager(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.alertmanager_url, timeout=5) as client:
        yield client


def _targets(prometheus: httpx.Client) -> dict[str, dict[str, Any]]:
    active = prometheus.get("/api/v1/targets", params={"state": "active"}).json()
    return {t["labels"]["job"]: t for t in active["data"]["activeTargets"]}


def _conveyor_targets_up(prometheus: httpx.Client) -> bool:
    targets = _targets(prometheus)
    return all(targets.get(job, {}).get("health") == "up" for job in CONVEYOR_JOBS)


def _active_alerts(alertmanager: httpx.Client, alertname: str) -> list[dict[str, Any]]:
    return alertmanager.get("/api/v2/alerts", params={
        "filter": f'alertname="{alertname}"', "active": "true"}).json()


def test_prometheus_loaded_every_rule_of_the_repository(prometheus: httpx.Client) -> None:
    expected = {r.get("alert") or r["record"] for r in _rules()}

    def loaded() -> dict[str, dict[str, Any]] | None:
        groups = prometheus.get("/api/v1/rules").json()["data"]["groups"]
        rules = {r["name"]: r for g in groups for r in g["rules"]}
        # "unknown" until a rule's first evaluation.
        return rules if expected <= {n for n, r in rules.items() if r["health"] != "unknown"} \
            else None

    rules = wait_for(f"Prometheus to load and evaluate {sorted(expected)}", loaded, SETTLE_S)
    broken = {n: rules[n].get("lastError") for n in expected if rules[n]["health"] != "ok"}
    assert not broken, f"rules that do not evaluate: {broken}"


def test_every_conveyor_process_is_scraped(prometheus: httpx.Client) -> None:
    def report() -> str:
        targets = _targets(prometheus)
        return "; ".join(f"{job}: {targets.get(job, {}).get('health', 'missing')} "
                         f"{targets.get(job, {}).get('lastError', '')}".strip()
                         for job in sorted(CONVEYOR_JOBS))

    wait_for("every Conveyor target up", lambda: _conveyor_targets_up(prometheus), SETTLE_S,
             explain=report)
    # And Prometheus holds their samples, not only a healthy scrape.
    up = prometheus.get("/api/v1/query", params={"query": "up"}).json()["data"]["result"]
    assert {r["metric"]["job"] for r in up if r["value"][1] == "1"} >= CONVEYOR_JOBS


def _query(prometheus: httpx.Client, promql: str) -> dict[str, float]:
    """An instant query's samples, by instance."""
    result = prometheus.get("/api/v1/query", params={"query": promql}).json()["data"]["result"]
    return {r["metric"].get("instance", ""): float(r["value"][1]) for r in result}


def test_kafka_and_connect_export_their_jmx_metrics(stack: Stack,
                                                    prometheus: httpx.Client) -> None:
    """The JMX exporter agent in the Kafka and Connect images, scraped by Prometheus: the
    broker's partition and controller state and each worker's connector count, agreeing
    with what Kafka and Connect's REST API say."""
    workers = {"connect:9404", "connect-2:9404"}

    def scraped() -> bool:
        up = _query(prometheus, 'up{job=~"kafka|connect"}')
        return up.get("kafka:9404") == 1 and all(up.get(w) == 1 for w in workers)

    wait_for("kafka and both Connect workers scraped", scraped, SETTLE_S,
             explain=lambda: str({j: t.get("lastError") for j, t in _targets(prometheus)
                                  .items() if j in ("kafka", "connect")}))
    assert _query(prometheus, "kafka_controller_kafkacontroller_activecontrollercount") == {
        "kafka:9404": 1.0}
    assert _query(prometheus, "kafka_controller_kafkacontroller_offlinepartitionscount") == {
        "kafka:9404": 0.0}
    partitions = _query(prometheus, "kafka_server_replicamanager_partitioncount")["kafka:9404"]
    assert partitions >= 50  # __consumer_offsets alone has 50
    assert _query(prometheus, 'jvm_memory_used_bytes{job="kafka", area="heap"}')["kafka:9404"] > 0
    assert set(_query(prometheus, 'jvm_memory_used_bytes{job="connect", area="heap"}')) == workers

    # Connectors come and go as other tests run: poll until the exporter's view (summed over
    # both workers, each reporting the connectors it runs) matches the REST API's.
    def connectors_agree() -> bool:
        rest = len(httpx.get(f"{stack.connect_url}/connectors", timeout=5).json())
        jmx = _query(prometheus, 'kafka_connect_worker_connector_count{job="connect"}')
        return set(jmx) == workers and sum(jmx.values()) == rest

    wait_for("the workers' connector counts to match Connect's REST API", connectors_agree,
             SETTLE_S, explain=lambda: str(_query(
                 prometheus, 'kafka_connect_worker_connector_count{job="connect"}')))


def test_a_stopped_bridge_pages_and_resolves(stack: Stack, prometheus: httpx.Client,
                                              alertmanager: httpx.Client) -> None:
    job = "rabbitmq-bridge"
    window = _target_down_window(job)

    def paged() -> list[dict[str, Any]]:
        return [a for a in _active_alerts(alertmanager, "ConveyorTargetDown")
                if a["labels"]["job"] == job]

    wait_for("every Conveyor target to be up", lambda: _conveyor_targets_up(prometheus),
             SETTLE_S)
    # A test before this one may have stopped the bridge: start from a resolved alert.
    wait_for(f"no ConveyorTargetDown for {job} before it stops", lambda: not paged(), window)

    compose("stop", job)
    stopped = time.monotonic()
    try:
        # A little slack over the worst case for Prometheus's notifier and a busy machine.
        alerts = wait_for(f"ConveyorTargetDown for {job} in Alertmanager", paged, window + 15)
        print(f"\n{job} stopped: alert in Alertmanager after {time.monotonic() - stopped:.0f}s "
              f"(window {window:.0f}s)")
        assert [r["name"] for r in alerts[0]["receivers"]] == ["page"]
        assert alerts[0]["labels"]["severity"] == "page"
        assert "does not answer /metrics" in alerts[0]["annotations"]["summary"]
    finally:
        compose("start", job)
        stack.wait([job])
    started = time.monotonic()
    # Back: one scrape to see it, one evaluation to resolve, and the notifier's send.
    wait_for(f"ConveyorTargetDown for {job} to resolve", lambda: not paged(), window)
    print(f"{job} started: resolved after {time.monotonic() - started:.0f}s")
