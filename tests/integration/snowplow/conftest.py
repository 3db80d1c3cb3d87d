"""Fixtures for the collector's integration tests: real Kafka, collector and enrich processes.

Kafka comes from the lead's session fixture ``stack`` (tests/integration/conftest.py). Until
the whole stack answers locally, a Kafka that already answers on ``KAFKA_BOOTSTRAP`` (default
localhost:9092) is enough for these tests; under ``CI=true`` only ``stack`` is used.

Each test gets its own topics (raw, good, bad), ledger, transactional ids and enrich
consumer group, and its own collector and enrich processes reading one config file, so a
test can SIGKILL either and start it again with the same config. What landed is read once
enrich has committed offsets past every raw record (``wait_enriched``), not after a pause.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from devstack.stack import Stack
from tests.integration import processes
from tests.integration.landing import Run

ROOT = Path(__file__).resolve().parents[3]
READY_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def kafka_bootstrap(request: pytest.FixtureRequest) -> str:
    config = Stack.from_env()
    if os.environ.get("CI") == "true" or config.all_ready():
        stack: Stack = request.getfixturevalue("stack")
        return stack.kafka_bootstrap
    if config.kafka_ready():
        return config.kafka_bootstrap
    pytest.skip(f"Kafka does not answer at {config.kafka_bootstrap}: run `make up`")


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class CollectorProcess:
    """The collector (``proc``) and, beside it, enrich (``enrich_proc``), one config file."""

    config_path: Path
    log_path: Path
    port: int
    topics: dict[str, str]
    enrich_port: int = 0
    group: str = ""
    bootstrap: str = ""
    proc: subprocess.Popen[bytes] | None = None
    enrich_proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    enrich_starts: int = 0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def enrich_url(self) -> str:
        return f"http://127.0.0.1:{self.enrich_port}"

    @property
    def enrich_log_path(self) -> Path:
        return self.log_path.with_suffix(".enrich.log")

    def start_enrich(self, wait: bool = True) -> CollectorProcess:
        log = self.enrich_log_path.open("ab")
        self.enrich_proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "snowplow-enrich", "--config",
             str(self.config_path)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        self.enrich_starts += 1
        if wait:
            self.wait_enrich_ready()
        return self

    def wait_enrich_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        def ready() -> bool:
            assert self.enrich_proc is not None
            if self.enrich_proc.poll() is not None:
                raise AssertionError(f"enrich exited with {self.enrich_proc.returncode}:\n"
                                     + self.enrich_log_path.read_text()[-3000:])
            try:
                return httpx.get(f"{self.enrich_url}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(ready, timeout, "enrich's /health")

    def kill_enrich(self) -> None:
        assert self.enrich_proc is not None
        processes.kill(self.enrich_proc)

    def terminate_enrich(self, timeout: float = 30) -> int:
        assert self.enrich_proc is not None
        return processes.terminate(self.enrich_proc, timeout)

    def enrich_running(self) -> bool:
        return self.enrich_proc is not None and self.enrich_proc.poll() is None

    def wait_enriched(self, timeout: float = 120) -> None:
        """Until enrich has committed offsets past every committed raw record."""
        wait_enriched(self.bootstrap, self.topics["raw"], self.group, timeout)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> CollectorProcess:
        """The collector, and enrich too unless it is running already."""
        if not self.enrich_running():
            self.start_enrich(wait=wait)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "snowplow", "--config", str(self.config_path)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        self.starts += 1
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        def ready() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"collector exited with {self.proc.returncode}:\n"
                                     + self.log_path.read_text()[-3000:])
            try:
                return httpx.get(f"{self.url}/sink-health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False
        wait_until(ready, timeout, "the collector's /sink-health")

    def kill(self) -> None:
        assert self.proc is not None
        processes.kill(self.proc)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return processes.terminate(self.proc, timeout)

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture
def collector(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., CollectorProcess]]:
    """``collector(**overrides)``: a started collector with per-test topics."""
    started: list[CollectorProcess] = []

    def make(start: bool = True, landing: Run | None = None,
             **overrides: Any) -> CollectorProcess:
        """``landing``: good events as Avro and bad rows on the topics the local connector
        files read (renamed for that run by ``for_test``), so the test can deploy them and
        check the warehouse tables."""
        token = uuid.uuid4().hex[:8]
        topics = {"default": f"sp-events-{token}", "bad": f"sp-bad-{token}",
                  "views": f"sp-views-{token}", "orders": f"sp-orders-{token}",
                  "ledger": f"sp-ledger-{token}", "raw": f"sp-raw-{token}"}
        if landing is not None:
            p = landing.prefix
            topics.update({"default": f"{p}.snowplow.events", "bad": f"{p}.snowplow.bad",
                           "views": f"{p}.snowplow.page_views",
                           "orders": f"{p}.snowplow.orders"})
        port = processes.free_port()
        enrich_port = processes.free_port()
        cfg: dict[str, Any] = {
            "instance_id": f"itest-{token}",
            "raw": {"topic": topics["raw"]},
            "enrich": {"instance_id": f"itest-{token}", "group_id": f"itest-enrich-{token}",
                       "host": "127.0.0.1", "port": enrich_port},
            "http": {"host": "127.0.0.1", "port": port},
            "cookie": {"secure": False, "same_site": "Lax"},
            "kafka": {"bootstrap_servers": kafka_bootstrap, "topic_partitions": 2},
            "topics": {"default": topics["default"], "bad": topics["bad"], "routes": [
                {"name": "views", "kind": "page_view", "topic": topics["views"]},
                {"name": "orders",
                 "schema": "iglu:com.conveyor.grocer/order_placed/jsonschema/1-*-*",
                 "topic": topics["orders"]},
            ]},
            "dedup": {"ledger_topic": topics["ledger"]},
            "shutdown_timeout_s": 20,
        }
        if landing is not None:
            cfg["schema_registry"] = {"url": Stack.from_env().schema_registry_url}
            cfg["topics"]["default_format"] = "avro"
            for route in cfg["topics"]["routes"]:
                route["format"] = "avro"
        for key, value in overrides.items():
            if isinstance(value, dict):
                cfg.setdefault(key, {}).update(value)
            else:
                cfg[key] = value
        path = tmp_path / f"collector-{token}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        proc = CollectorProcess(path, tmp_path / f"collector-{token}.log", port, topics,
                                enrich_port=enrich_port, group=cfg["enrich"]["group_id"],
                                bootstrap=kafka_bootstrap)
        started.append(proc)
        return proc.start() if start else proc

    yield make
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.terminate(10)
        if proc.enrich_running():
            proc.terminate_enrich(10)


def raw_ends(bootstrap: str, topic: str, timeout: float = 60.0) -> dict[int, int]:
    """Per partition of ``topic``, the offset after its last committed record."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(timeout=10)
    if topic not in meta.topics:
        return {}
    parts = [TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions]
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{uuid.uuid4()}",
                         "isolation.level": "read_committed", "enable.partition.eof": True,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    ends: dict[int, int] = {}
    highs = {}
    for tp in parts:
        _, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        highs[tp.partition] = high
    consumer.assign(parts)
    pending = {p for p, h in highs.items() if h > 0}
    deadline = time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {topic} {sorted(pending)} to the end")
            for msg in consumer.consume(1000, timeout=0.2):
                p = msg.partition()
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if msg.offset() >= highs[p] - 1:
                            pending.discard(p)
                        continue
                    raise AssertionError(err.str())
                ends[p] = msg.offset() + 1
                if msg.offset() + 1 >= highs[p]:
                    pending.discard(p)
    finally:
        consumer.close()
    return ends


def wait_enriched(bootstrap: str, raw_topic: str, group: str, timeout: float = 120) -> None:
    """Until ``group`` (enrich) has committed offsets past every committed raw record, so
    everything the collector acknowledged so far has been enriched and committed."""
    ends = raw_ends(bootstrap, raw_topic)
    if not ends:
        return
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    wanted = [TopicPartition(raw_topic, p) for p in ends]

    def caught_up() -> bool:
        try:
            committed = consumer.committed(wanted, timeout=10)
        except Exception:
            return False
        return all(tp.offset >= ends[tp.partition] for tp in committed)
    try:
        wait_until(caught_up, timeout, f"enrich ({group}) to pass the end of {raw_topic}",
                   every=0.2)
    finally:
        consumer.close()


def read_committed(bootstrap: str, topics: list[str], timeout: float = 30.0
                   ) -> list[tuple[str, bytes | None, bytes]]:
    """Every record of ``topics`` as a read_committed consumer sees it, to the end.

    Callers read after the collector answered, i.e. after the commits: the committed end
    is then the end, and reaching it on every partition means everything was read.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(timeout=10)
    parts = [TopicPartition(t, p, 0) for t in topics if t in meta.topics
             for p in meta.topics[t].partitions]
    if not parts:
        return []
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"verify-{uuid.uuid4()}",
                         "isolation.level": "read_committed", "enable.partition.eof": True,
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    ends = {}
    for tp in parts:
        _, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        ends[(tp.topic, tp.partition)] = high
    consumer.assign(parts)
    out: list[tuple[str, bytes | None, bytes]] = []
    pending = {k for k, high in ends.items() if high > 0}
    deadline = time.monotonic() + timeout
    try:
        while pending:
            if time.monotonic() > deadline:
                raise AssertionError(f"could not read {sorted(pending)} to the end")
            for msg in consumer.consume(500, timeout=0.2):
                key = (msg.topic(), msg.partition())
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if msg.offset() >= ends[key] - 1:
                            pending.discard(key)
                        continue
                    raise AssertionError(err.str())
                out.append((msg.topic(), msg.key(), msg.value()))
                if msg.offset() + 1 >= ends[key]:
                    pending.discard(key)
    finally:
        consumer.close()
    return out
