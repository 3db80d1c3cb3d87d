"""Helpers for the RabbitMQ bridge's integration tests: run the bridge as a subprocess (so
it can be SIGKILLed), publish with confirms, and read back what Kafka *committed*."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pika
import pika.exceptions
import yaml
from confluent_kafka import Consumer, KafkaError, TopicPartition

from devstack.topology import bridge_topology
from tests.integration import processes

ROOT = Path(__file__).resolve().parents[3]
SCHEMAS = ROOT / "sidecar" / "rabbitmq" / "schemas"


def wait_for(check: Callable[[], bool], timeout: float, what: str, pause: float = 0.2,
             explain: Callable[[], str] | None = None) -> None:
    """Poll ``check`` until true; a deadline, never a fixed sleep standing in for readiness.
    ``explain`` adds what the failure needs to be understood (a bridge's log tail, say)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise TimeoutError(f"{what} within {timeout:.0f}s{detail}")
        time.sleep(pause)


@dataclass
class BridgeProcess:
    """``python -m sidecar rabbitmq --config FILE`` with its own ops port and log file."""

    config: Path
    env: dict[str, str]
    log_path: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> BridgeProcess:
        self.starts += 1
        log = self.log_path.open("ab")
        log.write(f"--- start {self.starts}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "rabbitmq", "--config", str(self.config)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        log.close()
        return self

    def health(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1)
            return dict(r.json()) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def metrics(self) -> dict[str, float]:
        """Prometheus samples by their full name (labels included)."""
        r = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=2)
        out: dict[str, float] = {}
        for line in r.text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def metric_sum(self, prefix: str) -> float:
        return sum(v for k, v in self.metrics().items() if k.startswith(prefix))

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"bridge exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            return self.health() is not None
        wait_for(ready, timeout, "bridge /health ready")

    def kill(self) -> None:
        assert self.proc is not None
        processes.kill(self.proc)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        return processes.terminate(self.proc, timeout, raise_if_hung=True)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def bridge_env(stack: Any, instance: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_RMQ__")}
    env.update({"CONVEYOR_RABBITMQ_URL": stack.rabbitmq_url, "CONVEYOR_INSTANCE_ID": instance,
                "CONVEYOR_RMQ__OPS__PORT": str(port), "PYTHONUNBUFFERED": "1"})
    return env


def write_config(path: Path, stack: Any, stream: str, queue: str, exchange: str,
                 routes: list[dict[str, Any]], **extra: Any) -> Path:
    cfg: dict[str, Any] = {
        "stream": stream,
        "rabbitmq": {
            "url": "amqp://unused/%2F",  # the real one (with credentials) is in the env
            "queues": [queue],
            "prefetch": 1000,
            "heartbeat_s": 10,
            # Start-up reads each queue's settings here (see sidecar/rabbitmq/topology.py).
            "management_url": stack.rabbitmq_management_url,
            # The same quorum queue declare_topology() makes, so either may declare first.
            "topology": bridge_topology([queue], exchange),
        },
        "kafka": {"bootstrap_servers": stack.kafka_bootstrap, "topic_partitions": 3},
        "schema_registry": {"url": stack.schema_registry_url},
        "batch": {"max_messages": 200, "max_wait_ms": 50},
        "ledger": {"topic": f"conveyor.ledger.{stream}"},
        "dead_letter": {"topic": f"{stream}.dlq"},
        "routes": routes,
        "shutdown_timeout_s": 20,
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def queue_depth(stack: Any, queue: str) -> int:
    """Messages ready in ``queue`` (unacked ones are not counted)."""
    conn = pika.BlockingConnection(pika.URLParameters(stack.rabbitmq_url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()


@dataclass
class Publisher:
    """Publishes persistent messages with publisher confirms; survives broker restarts by
    reconnecting and re-publishing what was not confirmed (so a message may be published
    twice with the same message_id, as real publishers do)."""

    url: str
    exchange: str
    conn: pika.BlockingConnection | None = None
    ch: Any = None
    confirmed: int = 0
    republished: int = 0
    errors: list[str] = field(default_factory=list)

    def _connect(self) -> None:
        self.conn = pika.BlockingConnection(pika.URLParameters(self.url))
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()

    def publish(self, routing_key: str, body: bytes, *, retry_for: float = 180,
                **props: Any) -> None:
        deadline = time.monotonic() + retry_for
        props.setdefault("delivery_mode", 2)
        attempt = 0
        while True:
            try:
                if self.conn is None or not self.conn.is_open:
                    self._connect()
                self.ch.basic_publish(self.exchange, routing_key, body,
                                      pika.BasicProperties(**props), mandatory=False)
                self.confirmed += 1
                self.republished += attempt > 0
                return
            except (pika.exceptions.AMQPError, OSError) as exc:
                attempt += 1
                self.errors.append(type(exc).__name__)
                self.conn = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)  # back off while the broker restarts; not a readiness wait

    def close(self) -> None:
        # A BlockingConnection answers heartbeats only while it is used: one left idle
        # through a long wait may already be closed by the broker, which is fine here.
        if self.conn is not None and self.conn.is_open:
            with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                self.conn.close()


@dataclass(frozen=True)
class Landed:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    @property
    def event_id(self) -> str:
        return self.headers["conveyor.event_id"].decode()

    def json(self) -> Any:
        assert self.value is not None
        return json.loads(self.value)


def read_committed(bootstrap: str, topics: Iterable[str], timeout: float = 60) -> list[Landed]:
    """Everything committed in ``topics`` (read_committed), read to the end as of now."""
    topics = list(topics)
    common = {"bootstrap.servers": bootstrap, "group.id": f"itest-reader-{time.time_ns()}",
              "enable.auto.commit": False}
    probe = Consumer({**common, "isolation.level": "read_uncommitted"})
    consumer = Consumer({**common, "isolation.level": "read_committed",
                         "enable.partition.eof": True})
    try:
        meta = consumer.list_topics(timeout=10)
        targets: dict[tuple[str, int], int] = {}
        assignment = []
        for t in topics:
            if t not in meta.topics:
                continue
            for p in meta.topics[t].partitions:
                _, high = probe.get_watermark_offsets(TopicPartition(t, p), timeout=10,
                                                      cached=False)
                targets[(t, p)] = high
                assignment.append(TopicPartition(t, p, 0))
        consumer.assign(assignment)
        reached = {tp: -1 for tp in targets}
        out: list[Landed] = []
        deadline = time.monotonic() + timeout
        while any(reached[tp] < targets[tp] for tp in targets):
            if time.monotonic() > deadline:
                raise TimeoutError(f"topics {topics} not read to the end in {timeout}s")
            for m in consumer.consume(1000, timeout=0.2):
                tp = (m.topic(), m.partition())
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        reached[tp] = max(reached[tp], m.offset())
                    continue
                reached[tp] = max(reached[tp], m.offset() + 1)
                out.append(Landed(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                                  {k: v for k, v in (m.headers() or [])}))
        return out
    finally:
        consumer.close()
        probe.close()
