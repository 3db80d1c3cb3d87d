"""The RabbitMQ bridge's promises off the happy path, on RabbitMQ 4 quorum queues:

- a Kafka outage longer than 20 redeliveries would take loses and duplicates nothing, and
  RabbitMQ dead-letters nothing (the bridge holds its batch instead of requeueing it);
- several instances on one single-active-consumer queue, their AMQP connections closed by
  force at random moments and one replaced by an instance under a new name: exactly once;
- a frozen owner (a real zombie, mid-transaction) is fenced by the standby that takes over;
- start-up refuses a queue RabbitMQ may drop messages from.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest
from rmq_harness import (
    ROOT,
    BridgeProcess,
    Publisher,
    bridge_env,
    read_committed,
    wait_for,
    write_config,
)

from devstack.stack import compose
from devstack.topology import declare_topology
from tests.integration.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = float(os.environ.get("CONVEYOR_OUTAGE_SECONDS", "190"))


class Streams:
    """One stream's names, its bridges and a publisher; everything stopped afterwards."""

    def __init__(self, stack: Any, stream: str, tmp: Path) -> None:
        self.stack, self.stream, self.tmp = stack, stream, tmp
        self.exchange, self.queue, self.topic = f"{stream}.ex", f"{stream}.q", f"{stream}.ev"
        self.bridges: list[BridgeProcess] = []
        self.publisher = Publisher(stack.rabbitmq_url, self.exchange)

    def config(self, **extra: Any) -> Path:
        return write_config(self.tmp / "bridge.yaml", self.stack, self.stream, self.queue,
                            self.exchange, [{"routing_key": "#", "topic": self.topic,
                                             "key": "payload:entity"}], **extra)

    def bridge(self, config: Path, instance: str) -> BridgeProcess:
        port = free_port()
        b = BridgeProcess(config, bridge_env(self.stack, instance, port),
                          self.tmp / f"bridge-{instance}.log", port)
        self.bridges.append(b)
        return b

    def publish(self, n: int, prefix: str, rate: float | None = None) -> None:
        started = time.monotonic()
        for i in range(n):
            body = json.dumps({"entity": f"e{i % 40}", "seq": i // 40, "pad": "x" * 100})
            self.publisher.publish(f"entity.{i % 5}", body.encode(), message_id=f"{prefix}{i}")
            if rate is not None:
                ahead = started + (i + 1) / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the load, not waiting for readiness

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        r = httpx.request(method, f"{self.stack.rabbitmq_management_url}/api{path}",
                          auth=(self.stack.rabbitmq_user, self.stack.rabbitmq_password),
                          timeout=10, **kw)
        r.raise_for_status()
        return r

    def queue_messages(self, queue: str | None = None) -> int:
        doc = self.api("GET", f"/queues/%2F/{queue or self.queue}").json()
        return int(doc.get("messages", 0) or 0) + int(doc.get("messages_unacknowledged", 0)
                                                       or 0)

    def landed(self) -> Counter[str]:
        return Counter(r.event_id for r in read_committed(self.stack.kafka_bootstrap,
                                                           [self.topic], timeout=120))

    def close(self) -> None:
        for b in self.bridges:
            if b.proc is not None and b.proc.poll() is None:
                with_sigcont(b)
                b.stop()
        self.publisher.close()


def with_sigcont(b: BridgeProcess) -> None:
    if b.proc is not None and b.proc.poll() is None:
        os.kill(b.proc.pid, signal.SIGCONT)


def assert_once(landed: Counter[str], expected: set[str]) -> None:
    dups = {k: c for k, c in landed.items() if c > 1}
    assert not dups, f"{len(dups)} duplicated, e.g. {sorted(dups.items())[:5]}"
    missing = expected - set(landed)
    assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:5]}"
    assert set(landed) == expected


@pytest.fixture
def streams(rmq_stack: Any, unique: Callable[[str], str], tmp_path: Path) -> Iterator[Streams]:
    s = Streams(rmq_stack, unique("rmqg"), tmp_path)
    yield s
    s.close()


def declare_with_parking(s: Streams) -> str:
    """A quorum queue with RabbitMQ 4's default delivery limit (20) and a dead-letter
    exchange to a parking queue: whatever RabbitMQ gives up on is counted there."""
    parked = f"{s.queue}.parked"
    conn = pika.BlockingConnection(pika.URLParameters(s.stack.rabbitmq_url))
    try:
        ch = conn.channel()
        ch.exchange_declare(s.exchange, exchange_type="topic", durable=True)
        ch.exchange_declare(f"{s.stream}.dlx", exchange_type="fanout", durable=True)
        ch.queue_declare(parked, durable=True, arguments={"x-queue-type": "quorum"})
        ch.queue_bind(parked, f"{s.stream}.dlx")
        ch.queue_declare(s.queue, durable=True, arguments={
            "x-queue-type": "quorum", "x-single-active-consumer": True,
            "x-dead-letter-exchange": f"{s.stream}.dlx"})
        ch.queue_bind(s.queue, s.exchange, routing_key="#")
    finally:
        conn.close()
    return parked


@pytest.mark.timeout(900)
def test_a_kafka_outage_longer_than_20_redeliveries_loses_nothing(streams: Streams) -> None:
    s = streams
    parked = declare_with_parking(s)
    config = s.config(rabbitmq={"topology": {"declare": False}, "prefetch": 500},
                      batch={"max_messages": 200},
                      kafka={"transaction_timeout_ms": 10_000},
                      ops={"unhealthy_after_aborts": 3, "stalled_after_s": 30})
    bridge = s.bridge(config, "outage").start()
    bridge.wait_ready()
    n_before, n_during = 1000, 3000
    s.publish(n_before, "pre-")
    routed = "conveyor_rabbitmq_produced_total{kind=\"routed\""
    wait_for(lambda: bridge.metric_sum(routed) >= n_before, 60, "first messages routed")

    compose("stop", "kafka")
    stopped_at = time.monotonic()
    try:
        # Published while Kafka is away, spread over the outage.
        s.publish(n_during, "out-", rate=n_during / (OUTAGE_S * 0.8))
        wait_for(lambda: bridge.health() is None, 120, "/health to say no commit goes through")
        doc = httpx.get(f"http://127.0.0.1:{bridge.port}/health", timeout=2).json()
        assert doc["progressing"] is False, doc
        (queue_doc,) = doc["queues"].values()
        assert queue_doc["held_messages"] > 0 and queue_doc["consecutive_aborts"] >= 3
        left = OUTAGE_S - (time.monotonic() - stopped_at)
        if left > 0:
            time.sleep(left)  # the outage itself: its length is what is under test
        assert bridge.proc is not None and bridge.proc.poll() is None, bridge.log_tail()
    finally:
        compose("start", "kafka")
    s.stack.wait(["kafka"])
    total = n_before + n_during
    wait_for(lambda: bridge.metric_sum(routed) >= total, 300, "everything routed after",
             explain=lambda: f"routed {bridge.metric_sum(routed):.0f} of {total}; "
                             f"health {bridge.health()}\n{bridge.log_tail(80)}")
    wait_for(lambda: s.queue_messages() == 0, 60, "queue drained")
    assert bridge.health() is not None, "healthy again once commits go through"
    aborts = bridge.metric_sum("conveyor_rabbitmq_transactions_total{outcome=\"aborted\"")
    assert bridge.stop() == 0, bridge.log_tail()
    # RabbitMQ gave up on nothing: no message reached its delivery limit.
    assert s.queue_messages(parked) == 0
    assert_once(s.landed(), {f"pre-{i}" for i in range(n_before)}
                | {f"out-{i}" for i in range(n_during)})
    print(f"outage test: Kafka down {OUTAGE_S:.0f}s, {aborts:.0f} aborted tries, "
          f"{total} messages once")


def our_connections(s: Streams) -> list[str]:
    """Names of the bridges' AMQP connections to this stream's queue."""
    out = []
    for c in s.api("GET", "/connections").json():
        props = c.get("client_properties") or {}
        name = props.get("connection_name") or c.get("user_provided_name") or ""
        if name.endswith(f"-{s.queue}"):
            out.append(c["name"])
    return out


@pytest.mark.timeout(900)
def test_instances_on_one_queue_through_forced_closes_and_a_new_hostname(
        streams: Streams) -> None:
    s = streams
    declare_topology(s.stack.rabbitmq_url, s.queue, s.exchange)
    config = s.config(batch={"max_messages": 200})
    instances = [s.bridge(config, f"pod-{x}") for x in "abc"]
    for b in instances:
        b.start()
    for b in instances:
        b.wait_ready()
    rng = random.Random(int(os.environ.get("CONVEYOR_CHAOS_SEED", str(time.time_ns()))))
    n = 20_000
    failure: list[BaseException] = []

    def publish() -> None:
        try:
            s.publish(n, "m", rate=500)
        except BaseException as exc:
            failure.append(exc)

    pub = threading.Thread(target=publish, name="publisher")
    pub.start()
    closed = 0
    replaced = False
    while pub.is_alive():
        time.sleep(rng.uniform(1.0, 4.0))  # a random moment, not a readiness wait
        names = our_connections(s)
        if names:
            victim = rng.choice(names)
            try:
                s.api("DELETE", f"/connections/{victim}", headers={"X-Reason": "chaos"})
                closed += 1
            except httpx.HTTPStatusError:
                pass  # already gone
        if not replaced and closed >= 4:
            # A pod rescheduled under a new name: the old one goes, the new one must fence
            # whatever it left, although nothing of its name is the same.
            instances[1].kill()
            instances.append(s.bridge(config, "pod-d-rescheduled").start())
            replaced = True
    pub.join()
    assert not failure, failure
    assert closed >= 5 and replaced
    routed = "conveyor_rabbitmq_produced_total{kind=\"routed\""
    alive = [b for b in instances if b.proc is not None and b.proc.poll() is None]
    wait_for(lambda: s.queue_messages() == 0, 300, "queue drained", pause=1.0)
    owned = sum(b.metric_sum("conveyor_rabbitmq_ownerships_total") for b in alive)
    shares = {b.log_path.name: b.metric_sum(routed) for b in alive}
    for b in alive:
        assert b.stop() == 0, b.log_tail()
    assert_once(s.landed(), {f"m{i}" for i in range(n)})
    assert owned >= 2, "ownership moved between instances"
    print(f"scale-out test: {n} messages once, {closed} connections closed, "
          f"ownerships {owned:.0f}, routed by the survivors {shares}")


@pytest.mark.timeout(600)
def test_a_frozen_owner_is_fenced_by_the_standby_that_takes_over(streams: Streams) -> None:
    """The zombie: the active instance freezes (SIGSTOP) with deliveries in hand. RabbitMQ
    misses its heartbeats and activates the standby, whose first batch fences the zombie
    (init_transactions) and reads the ledger to its end. Thawed, the zombie either finds its
    batch in the ledger already or has its commit refused as fenced; it drops its channel
    and producer and lives on as the standby. Either way every message lands once."""
    s = streams
    declare_topology(s.stack.rabbitmq_url, s.queue, s.exchange)
    config = s.config(rabbitmq={"heartbeat_s": 5}, batch={"max_messages": 50})
    zombie = s.bridge(config, "host-1").start()
    zombie.wait_ready()
    standby = s.bridge(config, "host-2").start()
    standby.wait_ready()
    routed = "conveyor_rabbitmq_produced_total{kind=\"routed\""
    s.publish(500, "z")
    wait_for(lambda: zombie.metric_sum(routed) >= 500, 60, "the active instance routes")
    assert standby.metric_sum(routed) == 0  # a standby holds no deliveries, fences nobody
    assert standby.metric_sum("conveyor_rabbitmq_ownerships_total") == 0
    assert zombie.proc is not None
    os.kill(zombie.proc.pid, signal.SIGSTOP)
    try:
        s.publish(1000, "y")
        wait_for(lambda: standby.metric_sum(routed) >= 1, 120, "the standby takes over")
    finally:
        os.kill(zombie.proc.pid, signal.SIGCONT)
    wait_for(lambda: s.queue_messages() == 0, 120, "queue drained")
    assert zombie.proc.poll() is None, "the fenced zombie lives on as a standby"
    assert standby.metric_sum("conveyor_rabbitmq_ownerships_total") >= 1
    assert zombie.stop() == 0 and standby.stop() == 0
    assert_once(s.landed(), {f"z{i}" for i in range(500)} | {f"y{i}" for i in range(1000)})


def test_start_up_and_check_refuse_a_queue_rabbitmq_may_drop_from(streams: Streams) -> None:
    s = streams
    conn = pika.BlockingConnection(pika.URLParameters(s.stack.rabbitmq_url))
    conn.channel().queue_declare(s.queue, durable=True, arguments={"x-queue-type": "quorum"})
    conn.close()
    config = s.config(rabbitmq={"topology": {"declare": False}})
    env = bridge_env(s.stack, "refused", free_port())
    base = [sys.executable, "-m", "sidecar", "rabbitmq", "--config", str(config)]
    check = subprocess.run([*base, "--check"], env=env, cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 6, check.stdout + check.stderr
    assert "20 times" in check.stdout and "drops them silently" in check.stdout
    assert "x-single-active-consumer" in check.stdout
    run = subprocess.run(base, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 6, run.stdout + run.stderr
    assert "refusing to consume" in run.stderr
    assert s.queue_messages() == 0
    # Told explicitly, it starts.
    accepted = subprocess.run(
        [*base, "--check"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**env, "CONVEYOR_RMQ__RABBITMQ__ACCEPT_MESSAGE_LOSS": "true",
             "CONVEYOR_RMQ__RABBITMQ__REQUIRE_SINGLE_ACTIVE_CONSUMER": "false"})
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
