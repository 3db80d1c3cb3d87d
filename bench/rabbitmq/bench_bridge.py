"""Benchmark: the RabbitMQ bridge against a plain pika consumer that only acks.

Both run in the same process tree, against the same stack, with the same 1 KiB messages:

1. throughput: a queue is preloaded with N messages, then drained; the rate is counted
   from the first to the last message *done* (acked for the baseline, visible to a
   read_committed Kafka consumer for the bridge);
2. latency: messages are published at a fixed rate (well below both capacities); each
   carries its publish time, and the latency is publish -> acked (baseline) or publish ->
   committed and readable in Kafka (bridge); p50 and p99.

    python bench/rabbitmq/bench_bridge.py [--messages 20000] [--rate 1000]

Prints the figures and the bridge/baseline throughput ratio (target: at least 0.7).
Endpoints and credentials come from the same environment as the integration tests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pika
import yaml
from confluent_kafka import Consumer, KafkaError, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from devstack.stack import Stack  # noqa: E402
from devstack.topology import declare_topology  # noqa: E402

BODY_BYTES = 1024
TARGET_RATIO = 0.7


def body(seq: int) -> bytes:
    doc = {"seq": seq, "sent_ns": time.time_ns(), "entity": f"e{seq % 64}", "pad": ""}
    doc["pad"] = "x" * max(BODY_BYTES - len(json.dumps(doc)), 0)
    return json.dumps(doc).encode()


def connect(url: str) -> pika.BlockingConnection:
    return pika.BlockingConnection(pika.URLParameters(url))


def delete(url: str, queue: str) -> None:
    conn = connect(url)
    conn.channel().queue_delete(queue)
    conn.close()


def preload(url: str, queue: str, n: int) -> None:
    """Put ``n`` persistent messages in ``queue`` and return once all are there."""
    conn = connect(url)
    ch = conn.channel()
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    for i in range(n):
        ch.basic_publish("", queue, body(i), props)
    deadline = time.monotonic() + 120
    while ch.queue_declare(queue, passive=True).method.message_count < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"preloading {queue}")
        conn.sleep(0.05)
    conn.close()


def paced_publish(url: str, queue: str, n: int, rate: float, start_seq: int) -> None:
    conn = connect(url)
    ch = conn.channel()
    props = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    started = time.monotonic()
    for i in range(n):
        ch.basic_publish("", queue, body(start_seq + i), props)
        ahead = started + (i + 1) / rate - time.monotonic()
        if ahead > 0:
            conn.sleep(ahead)  # keeps serving the connection while pacing
    conn.close()


# -- baseline: a plain pika consumer that only acks ------------------------------------------

def baseline(url: str, queue: str, n: int, prefetch: int) -> tuple[float, float, list[float]]:
    """Consume ``n`` messages, ack each; returns (first_ns, last_ns, latencies_ms)."""
    conn = connect(url)
    ch = conn.channel()
    ch.basic_qos(prefetch_count=prefetch)
    state: dict[str, Any] = {"count": 0, "first": 0.0, "last": 0.0, "lat": []}

    def on_message(ch: Any, method: Any, _props: Any, raw: bytes) -> None:
        ch.basic_ack(method.delivery_tag)
        now = time.time_ns()
        if state["count"] == 0:
            state["first"] = now
        state["count"] += 1
        state["last"] = now
        state["lat"].append((now - json.loads(raw)["sent_ns"]) / 1e6)
        if state["count"] >= n:
            ch.stop_consuming()

    ch.basic_consume(queue, on_message)
    ch.start_consuming()
    conn.close()
    return state["first"], state["last"], state["lat"]


# -- the bridge ----------------------------------------------------------------------------

class BridgeRun:
    def __init__(self, stack: Stack, queue: str, topic: str, workdir: Path) -> None:
        self.stack, self.queue, self.topic = stack, queue, topic
        cfg = {
            "stream": f"bench-{uuid.uuid4().hex[:6]}",
            "rabbitmq": {"url": "amqp://unused/%2F", "queues": [queue], "prefetch": 4000,
                         "management_url": stack.rabbitmq_management_url},
            "kafka": {"bootstrap_servers": stack.kafka_bootstrap, "topic_partitions": 3},
            "batch": {"max_messages": 2000, "max_wait_ms": 20},
            "default_route": {"topic": topic, "key": "payload:entity"},
        }
        self.config = workdir / "bridge.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        env = {**os.environ, "CONVEYOR_RABBITMQ_URL": stack.rabbitmq_url,
               "CONVEYOR_INSTANCE_ID": "bench", "CONVEYOR_RMQ__OPS__PORT": str(self.port),
               "CONVEYOR_RMQ__LOG_LEVEL": "WARNING"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "rabbitmq", "--config", str(self.config)],
            env=env, cwd=ROOT)
        deadline = time.monotonic() + 120
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("bridge did not become ready")
            time.sleep(0.2)

    def _ready(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


class CommittedReader(threading.Thread):
    """Reads the bridge's topic read_committed; notes when each record becomes visible."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
                                  "isolation.level": "read_committed",
                                  "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10,
                                  "enable.auto.commit": False})
        self.topic = topic
        self.seen_ns: list[int] = []
        self.lat_ms: list[float] = []
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        meta = self.consumer.list_topics(timeout=10)
        while self.topic not in meta.topics and not self.stop_flag.is_set():
            time.sleep(0.1)
            meta = self.consumer.list_topics(timeout=10)
        self.consumer.assign([TopicPartition(self.topic, p, 0)
                              for p in meta.topics[self.topic].partitions])
        while not self.stop_flag.is_set():
            # consume(n, t) waits for n messages or t: take what is there, else wait for one,
            # so the timestamps are when records became readable, not when a batch filled.
            msgs = self.consumer.consume(1000, timeout=0) or \
                self.consumer.consume(1, timeout=0.05)
            for m in msgs:
                if m.error() is not None:
                    if m.error().code() != KafkaError._PARTITION_EOF:
                        print("reader:", m.error(), file=sys.stderr)
                    continue
                now = time.time_ns()
                sent = json.loads(m.value())["payload"]["sent_ns"]
                with self.lock:
                    self.seen_ns.append(now)
                    self.lat_ms.append((now - sent) / 1e6)
        self.consumer.close()

    def count(self) -> int:
        with self.lock:
            return len(self.seen_ns)


def wait_count(reader: CommittedReader, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while reader.count() < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {reader.count()}/{n} committed after {timeout}s")
        time.sleep(0.05)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
        else values[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=20_000, help="messages for throughput")
    ap.add_argument("--latency-messages", type=int, default=5_000)
    ap.add_argument("--rate", type=float, default=1000.0, help="msg/s for the latency phase")
    args = ap.parse_args(argv)
    stack = Stack.from_env()
    url = stack.rabbitmq_url
    run = uuid.uuid4().hex[:6]
    n, ln = args.messages, args.latency_messages
    print(f"RabbitMQ bridge benchmark: {BODY_BYTES} B messages, {n} for throughput, "
          f"{ln} at {args.rate:.0f}/s for latency")

    # Baseline.
    qb = f"bench-baseline-{run}"
    declare_topology(url, qb)
    preload(url, qb, n)
    first, last, _ = baseline(url, qb, n, prefetch=4000)
    base_rate = (n - 1) / ((last - first) / 1e9)
    t = threading.Thread(target=paced_publish, args=(url, qb, ln, args.rate, n))
    t.start()
    _, _, base_lat = baseline(url, qb, ln, prefetch=4000)
    t.join()
    delete(url, qb)

    # Bridge.
    qr, topic = f"bench-bridge-{run}", f"bench.bridge.{run}"
    declare_topology(url, qr)
    with tempfile.TemporaryDirectory() as tmp:
        # The queue is full before the bridge starts; the rate is counted from the first
        # record committed to the last, so start-up time is not part of it.
        preload(url, qr, n)
        reader = CommittedReader(stack.kafka_bootstrap, topic)
        reader.start()
        bridge = BridgeRun(stack, qr, topic, Path(tmp))
        try:
            wait_count(reader, n, 600)
            with reader.lock:
                stamps = reader.seen_ns[:n]
            bridge_rate = (n - 1) / ((stamps[-1] - stamps[0]) / 1e9)
            t = threading.Thread(target=paced_publish, args=(url, qr, ln, args.rate, n))
            t.start()
            wait_count(reader, n + ln, 600)
            t.join()
            with reader.lock:
                bridge_lat = reader.lat_ms[n:]
            reader.stop_flag.set()
            reader.join(10)
        finally:
            bridge.stop()
    delete(url, qr)

    ratio = bridge_rate / base_rate
    rows = [("baseline (pika, ack only)", base_rate, base_lat),
            ("bridge (exactly-once)", bridge_rate, bridge_lat)]
    print(f"{'':28} {'msg/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for name, rate, lat in rows:
        print(f"{name:28} {rate:10.0f} {pct(lat, 50):9.1f} {pct(lat, 99):9.1f}")
    verdict = "meets" if ratio >= TARGET_RATIO else "BELOW"
    print(f"throughput ratio bridge/baseline: {ratio:.2f} ({verdict} the {TARGET_RATIO} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
