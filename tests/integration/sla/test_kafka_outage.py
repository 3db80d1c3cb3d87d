"""The SLA exporter through Kafka restarts, as on-call needs it: every scrape answered
within Prometheus' scrape timeout, Kafka reported down while it is, and the process never
dies. librdkafka's AdminClient aborted it (an assertion in ListConsumerGroupOffsets) at four
of five Kafka restarts; the exporter now reads with the consumer API only (sla/kafka.py)."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devstack.stack import ROOT, Stack, compose
from tests.integration.monitoring.test_monitoring import _seconds, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROMETHEUS = yaml.safe_load((ROOT / "monitoring" / "prometheus.yml").read_text())
SCRAPE_TIMEOUT_S = _seconds(next(s for s in PROMETHEUS["scrape_configs"]
                                 if s["job_name"] == "sla-exporter")["scrape_timeout"])
RESTARTS = 2


@dataclass(frozen=True)
class Answer:
    status: int | str
    seconds: float
    kafka_up: float | None


def _process() -> str:
    """The exporter container's restart count and start time: unchanged if it never died."""
    cid = compose("ps", "-q", "sla-exporter").stdout.strip()
    return subprocess.run(["docker", "inspect", "--format",
                           "{{.RestartCount}} {{.State.StartedAt}}", cid],
                          text=True, capture_output=True, check=True).stdout.strip()


def _scrape(url: str) -> Answer:
    started = time.monotonic()
    try:
        r = httpx.get(f"{url}/metrics", timeout=SCRAPE_TIMEOUT_S)
    except httpx.HTTPError as exc:
        return Answer(type(exc).__name__, time.monotonic() - started, None)
    took = time.monotonic() - started
    up = None
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            if s.name == "conveyor_sla_source_up" and s.labels.get("source") == "kafka":
                up = s.value
    return Answer(r.status_code, took, up)


def test_exporter_answers_through_kafka_restarts(stack: Stack) -> None:
    before = _process()
    answers: list[Answer] = []
    done = threading.Event()

    def scrape_all_along() -> None:
        while not done.is_set():
            answers.append(_scrape(stack.sla_exporter_url))
            done.wait(0.5)

    scraper = threading.Thread(target=scrape_all_along, daemon=True)
    scraper.start()
    try:
        for _ in range(RESTARTS):
            stack.restart("kafka", kill=True)
        wait_for("the exporter to see Kafka back",
                 lambda: _scrape(stack.sla_exporter_url).kafka_up == 1, 90)
    finally:
        done.set()
        scraper.join(timeout=SCRAPE_TIMEOUT_S + 5)
    failed = [a for a in answers if a.status != 200]
    assert not failed, f"{len(failed)} of {len(answers)} scrapes not answered: {failed[:5]}"
    assert any(a.kafka_up == 0 for a in answers), "Kafka was never reported down"
    assert _process() == before, "the exporter's process died during the Kafka restarts"
