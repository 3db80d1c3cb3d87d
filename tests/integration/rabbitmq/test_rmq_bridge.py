"""The RabbitMQ bridge on the real stack: what a user would check in Kafka afterwards."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rmq_harness import (
    ROOT,
    SCHEMAS,
    BridgeProcess,
    Publisher,
    bridge_env,
    queue_depth,
    read_committed,
    wait_for,
    write_config,
)

from devstack.topology import bridge_topology, declare_topology
from tests.integration.processes import free_port

pytestmark = pytest.mark.integration


class Scenario:
    """One stream: its exchange, queue, topics and the bridges draining it."""

    def __init__(self, stack: Any, unique: Callable[[str], str], tmp_path: Path) -> None:
        self.stack = stack
        self.stream = unique("rmq")
        self.exchange = f"{self.stream}.ex"
        self.queue = f"{self.stream}.q"
        self.tmp = tmp_path
        self.bridges: list[BridgeProcess] = []
        self.publisher = Publisher(stack.rabbitmq_url, self.exchange)

    @property
    def dlq(self) -> str:
        return f"{self.stream}.dlq"

    def topic(self, name: str) -> str:
        return f"{self.stream}.{name}"

    def config(self, routes: list[dict[str, Any]] | None = None, **extra: Any) -> Path:
        routes = routes if routes is not None else [
            {"routing_key": "entity.#", "topic": f"{self.stream}.entities",
             "key": "payload:entity"}]
        return write_config(self.tmp / "bridge.yaml", self.stack, self.stream, self.queue,
                            self.exchange, routes, **extra)

    def bridge(self, config: Path, instance: str = "a") -> BridgeProcess:
        port = free_port()
        b = BridgeProcess(config, bridge_env(self.stack, instance, port),
                          self.tmp / f"bridge-{instance}.log", port)
        self.bridges.append(b)
        return b

    def close(self) -> None:
        for b in self.bridges:
            if b.proc is not None and b.proc.poll() is None:
                b.stop()
        self.publisher.close()


@pytest.fixture
def scenario(rmq_stack: Any, unique: Callable[[str], str],
             tmp_path: Path) -> Iterator[Scenario]:
    s = Scenario(rmq_stack, unique, tmp_path)
    declare_topology(rmq_stack.rabbitmq_url, s.queue, s.exchange)
    yield s
    s.close()


def publish_entities(s: Scenario, n: int, entities: int = 25, prefix: str = "m") -> None:
    for i in range(n):
        body = json.dumps({"entity": f"e{i % entities}", "seq": i // entities}).encode()
        s.publisher.publish(f"entity.{i % 4}", body, message_id=f"{prefix}{i}")


def assert_exactly_once(landed: list[Any], expected_ids: set[str]) -> None:
    counts = Counter(rec.event_id for rec in landed)
    dups = {k: c for k, c in counts.items() if c > 1}
    assert not dups, f"{len(dups)} duplicated event_ids, e.g. {list(dups.items())[:5]}"
    missing = expected_ids - set(counts)
    assert not missing, f"{len(missing)} missing, e.g. {sorted(missing)[:5]}"
    assert set(counts) == expected_ids


def assert_per_key_order(landed: list[Any]) -> None:
    by_entity: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    for rec in landed:
        payload = rec.json()["payload"]
        by_entity[payload["entity"]].append((rec.partition, rec.offset, payload["seq"]))
    for entity, rows in by_entity.items():
        assert len({p for p, _, _ in rows}) == 1, f"{entity} spread over partitions"
        seqs = [seq for _, _, seq in sorted(rows)]
        assert seqs == sorted(seqs), f"{entity} out of order"


def test_n_messages_land_exactly_once_in_order(scenario: Scenario) -> None:
    s = scenario
    bridge = s.bridge(s.config()).start()
    bridge.wait_ready()
    n = 3000
    publish_entities(s, n)
    wait_for(lambda: bridge.metric_sum("conveyor_rabbitmq_produced_total{kind=\"routed\"")
             >= n, 120, "all messages routed")
    assert bridge.stop() == 0
    assert queue_depth(s.stack, s.queue) == 0
    landed = read_committed(s.stack.kafka_bootstrap, [f"{s.stream}.entities"])
    assert_exactly_once(landed, {f"m{i}" for i in range(n)})
    assert_per_key_order(landed)
    env = landed[0].json()
    assert set(env) >= {"event_id", "event_type", "source", "accepted_at", "attributes",
                        "payload"}
    assert env["source"] == f"rabbitmq:{s.stream}"
    assert landed[0].headers["amqp.message_id"] == env["event_id"].encode()


def test_poison_messages_are_dead_lettered_with_reasons(scenario: Scenario) -> None:
    s = scenario
    routes = [
        {"routing_key": "order.placed", "topic": s.topic("orders"), "format": "avro",
         "schema": str(SCHEMAS / "order_placed.avsc"), "key": "payload:order_id"},
        {"routing_key": "robot.#", "topic": s.topic("robots"), "format": "json",
         "schema": str(SCHEMAS / "robot_telemetry.json")},
    ]
    bridge = s.bridge(s.config(routes, max_message_bytes=10_000)).start()
    bridge.wait_ready()
    good_order = {"order_id": "o-1", "customer_id": "c", "total_cents": 100}
    good_robot = {"robot_id": "r", "ts": "2026-01-01T00:00:00Z", "battery_pct": 50}
    cases = {
        "ok-order": ("order.placed", json.dumps(good_order).encode()),
        "ok-robot": ("robot.telemetry", json.dumps(good_robot).encode()),
        "undecodable": ("order.placed", b"\x00\x01 not json at all"),
        "schema-avro": ("order.placed", json.dumps({"order_id": 7}).encode()),
        "schema-json": ("robot.telemetry", json.dumps({"robot_id": "r"}).encode()),
        "no_route": ("nobody.listens", b"{}"),
        "oversize": ("robot.telemetry", json.dumps({"pad": "x" * 20_000}).encode()),
    }
    for mid, (rk, body) in cases.items():
        s.publisher.publish(rk, body, message_id=mid, headers={"trace": mid})
    wait_for(lambda: bridge.metric_sum("conveyor_rabbitmq_consumed_total") >= len(cases)
             and bridge.metric_sum("conveyor_rabbitmq_unacked_in_flight") == 0,
             60, "every message handled")
    assert bridge.stop() == 0
    assert queue_depth(s.stack, s.queue) == 0  # the queue never blocks

    dead = {r.event_id: r for r in read_committed(s.stack.kafka_bootstrap, [s.dlq])}
    expected = {"undecodable": "undecodable", "schema-avro": "schema",
                "schema-json": "schema", "no_route": "no_route", "oversize": "oversize"}
    assert set(dead) == set(expected)
    for mid, reason in expected.items():
        rec = dead[mid]
        assert rec.headers["conveyor.dlq.reason"] == reason.encode()
        assert rec.headers["conveyor.dlq.detail"]
        assert rec.value == cases[mid][1]  # original bytes
        assert rec.headers["amqp.header.trace"] == mid.encode()
    orders = read_committed(s.stack.kafka_bootstrap, [s.topic("orders")])
    robots = read_committed(s.stack.kafka_bootstrap, [s.topic("robots")])
    assert [r.event_id for r in orders] == ["ok-order"]
    assert orders[0].value[:1] == b"\x00"  # type: ignore[index]  # Confluent wire format
    assert [r.event_id for r in robots] == ["ok-robot"]


def test_a_standby_receives_nothing_while_the_active_instance_consumes(
        scenario: Scenario) -> None:
    """Two instances on a single-active-consumer queue: one does all the work, the other
    holds no deliveries and no producer (so it fences nobody) until it is needed."""
    s = scenario
    config = s.config(rabbitmq={"prefetch": 200}, batch={"max_messages": 100})
    a = s.bridge(config, "a").start()
    a.wait_ready()
    wait_for(lambda: consumers(s) == 1, 60, "the first instance subscribed")
    b = s.bridge(config, "b").start()
    b.wait_ready()
    wait_for(lambda: consumers(s) == 2, 60, "the second one waits as standby")
    n = 4000
    publish_entities(s, n, prefix="two-")
    routed = "conveyor_rabbitmq_produced_total{kind=\"routed\""
    wait_for(lambda: a.metric_sum(routed) + b.metric_sum(routed) >= n, 120, "all routed")
    shares = sorted([a.metric_sum(routed), b.metric_sum(routed)])
    owners = sorted([a.metric_sum("conveyor_rabbitmq_ownerships_total"),
                     b.metric_sum("conveyor_rabbitmq_ownerships_total")])
    assert a.stop() == 0 and b.stop() == 0
    assert shares == [0, n] and owners == [0, 1], (shares, owners)
    landed = read_committed(s.stack.kafka_bootstrap, [f"{s.stream}.entities"])
    assert_exactly_once(landed, {f"two-{i}" for i in range(n)})


def test_redelivery_after_commit_is_a_no_op(scenario: Scenario) -> None:
    """The ledger at work: the same messages again (as after a crash between commit and
    ack) are acked and counted as dedup hits, not produced twice, also by a fresh process."""
    s = scenario
    config = s.config()
    bridge = s.bridge(config).start()
    bridge.wait_ready()
    publish_entities(s, 500, prefix="r")
    wait_for(lambda: bridge.metric_sum("conveyor_rabbitmq_produced_total{kind=\"routed\"")
             >= 500, 60, "first pass routed")
    assert bridge.stop() == 0
    again = s.bridge(config, "a").start()  # same instance id: fences nothing left open
    again.wait_ready()
    publish_entities(s, 500, prefix="r")  # same message ids
    wait_for(lambda: again.metric_sum("conveyor_rabbitmq_dedup_hits_total") >= 500, 60,
             "all recognised")
    assert again.metric_sum("conveyor_rabbitmq_produced_total{kind=\"routed\"") == 0
    assert again.stop() == 0
    landed = read_committed(s.stack.kafka_bootstrap, [f"{s.stream}.entities"])
    assert_exactly_once(landed, {f"r{i}" for i in range(500)})


def test_check_validates_config_and_connectivity(scenario: Scenario) -> None:
    s = scenario
    config = s.config()
    env = bridge_env(s.stack, "check", free_port())
    cmd = [sys.executable, "-m", "sidecar", "rabbitmq", "--config", str(config), "--check"]
    ok = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "ok   kafka" in ok.stdout and "ok   rabbitmq" in ok.stdout
    missing = write_config(s.tmp / "missing.yaml", s.stack, s.stream, f"{s.queue}.nope",
                           s.exchange, [{"topic": "t"}])
    bad = subprocess.run(
        [sys.executable, "-m", "sidecar", "rabbitmq", "--config", str(missing), "--check"],
        env={**env, "CONVEYOR_RMQ__RABBITMQ__TOPOLOGY__DECLARE": "false"},
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 4, bad.stdout + bad.stderr
    assert "FAIL rabbitmq" in bad.stdout


def test_queue_deleted_under_the_bridge_is_redeclared_and_drained(scenario: Scenario) -> None:
    """A broker-side consumer cancel (queue deleted) is treated as a lost connection: the
    bridge reconnects, declares its topology again and goes on, instead of idling forever."""
    import pika

    s = scenario
    bridge = s.bridge(s.config()).start()
    bridge.wait_ready()
    publish_entities(s, 100, prefix="before-")
    routed = "conveyor_rabbitmq_produced_total{kind=\"routed\""
    wait_for(lambda: bridge.metric_sum(routed) >= 100, 60, "first messages routed")
    conn = pika.BlockingConnection(pika.URLParameters(s.stack.rabbitmq_url))
    conn.channel().queue_delete(s.queue)
    conn.close()
    wait_for(lambda: "cancelled by the broker" in bridge.log_tail(200), 30, "cancel noticed")
    wait_for(lambda: queue_exists(s), 60, "queue declared again")
    publish_entities(s, 100, prefix="after-")
    wait_for(lambda: bridge.metric_sum(routed) >= 200, 60, "later messages routed")
    assert bridge.stop() == 0
    landed = read_committed(s.stack.kafka_bootstrap, [f"{s.stream}.entities"])
    assert_exactly_once(landed, {f"{p}{i}" for p in ("before-", "after-") for i in range(100)})


def consumers(s: Scenario) -> int:
    """Consumers subscribed to the scenario's queue, active or waiting (management API)."""
    r = httpx.get(f"{s.stack.rabbitmq_management_url}/api/queues/%2F/{s.queue}",
                  auth=(s.stack.rabbitmq_user, s.stack.rabbitmq_password), timeout=5)
    r.raise_for_status()
    return int(r.json().get("consumers", 0) or 0)


def queue_exists(s: Scenario) -> bool:
    try:
        queue_depth(s.stack, s.queue)
        return True
    except Exception:
        return False


def test_sigterm_under_load_commits_acks_and_exits_zero(scenario: Scenario) -> None:
    """SIGTERM mid-stream: the batch in hand is committed and acked before exit 0, so the
    next instance gets no redelivery of it (zero dedup hits) and nothing is lost."""
    s = scenario
    config = s.config()
    first = s.bridge(config, "a").start()
    first.wait_ready()
    n = 3000
    publish_entities(s, n // 2, prefix="t")
    routed = "conveyor_rabbitmq_produced_total{kind=\"routed\""
    wait_for(lambda: first.metric_sum(routed) >= 200, 60, "messages flowing")
    publisher = threading.Thread(
        target=lambda: [s.publisher.publish(
            f"entity.{i % 4}", json.dumps({"entity": f"e{i % 25}", "seq": i}).encode(),
            message_id=f"t{i}") for i in range(n // 2, n)])
    publisher.start()
    assert first.stop() == 0  # while messages are still arriving
    assert "bridge.stopped" in first.log_tail(50)
    publisher.join(120)
    second = s.bridge(config, "a")
    second.log_path = s.tmp / "bridge-second.log"
    second.start()
    second.wait_ready()
    wait_for(lambda: queue_depth(s.stack, s.queue) == 0, 120, "queue drained")
    assert second.metric_sum("conveyor_rabbitmq_dedup_hits_total") == 0
    assert second.stop() == 0
    landed = read_committed(s.stack.kafka_bootstrap, [f"{s.stream}.entities"])
    assert_exactly_once(landed, {f"t{i}" for i in range(n)})


def test_one_instance_drains_several_queues(scenario: Scenario) -> None:
    """One pipeline (connection, transactional producer) per queue, one process."""
    s = scenario
    q1, q2 = f"{s.queue}.one", f"{s.queue}.two"
    topology = bridge_topology([q1, q2], s.exchange, {q1: "one.#", q2: "two.#"})
    config = s.config([{"topic": f"{s.stream}.{{queue}}", "key": "routing_key"}],
                      rabbitmq={"queues": [q1, q2], "topology": topology})
    bridge = s.bridge(config).start()
    bridge.wait_ready()
    for i in range(400):
        s.publisher.publish("one.x" if i % 2 else "two.x", b'{"i": %d}' % i, message_id=f"q{i}")
    routed = "conveyor_rabbitmq_produced_total{kind=\"routed\""
    wait_for(lambda: bridge.metric_sum(routed) >= 400, 60, "both queues drained",
             explain=lambda: f"routed {bridge.metric_sum(routed):.0f} of 400; depths "
                             f"{queue_depth(s.stack, q1)}, {queue_depth(s.stack, q2)}; "
                             f"published {s.publisher.confirmed}; bridge metrics:\n"
                             + "\n".join(f"  {k} {v}" for k, v in bridge.metrics().items()
                                          if "rabbitmq_" in k and "bucket" not in k and v)
                             + f"\nbridge log:\n{bridge.log_tail(60)}")
    metrics = bridge.metrics()
    assert metrics[f'conveyor_rabbitmq_produced_total{{kind="routed",queue="{q1}"}}'] == 200
    assert metrics[f'conveyor_rabbitmq_produced_total{{kind="routed",queue="{q2}"}}'] == 200
    assert bridge.stop() == 0
    landed = read_committed(s.stack.kafka_bootstrap, [f"{s.stream}.{q1}", f"{s.stream}.{q2}"])
    assert_exactly_once(landed, {f"q{i}" for i in range(400)})
    assert {r.topic for r in landed if r.event_id == "q1"} == {f"{s.stream}.{q1}"}


def test_survivor_takes_over_when_one_of_two_instances_is_killed(scenario: Scenario) -> None:
    """Two instances; one is SIGKILLed mid-stream and stays dead. Its un-acked deliveries go
    to the survivor, whose first batch fences the dead one (same queue, same
    transactional.id: its open transaction is aborted at once) and reads the ledger, so it
    skips what the dead one had committed: every message once.

    The queue has a single active consumer: the instance that subscribed first (the victim)
    gets every delivery, the survivor waits and becomes the active one when the victim's
    connection goes."""
    s = scenario
    config = s.config(rabbitmq={"prefetch": 400}, batch={"max_messages": 200},
                      kafka={"transaction_timeout_ms": 10_000})
    victim = s.bridge(config, "victim").start()
    victim.wait_ready()
    wait_for(lambda: consumers(s) == 1, 60, "the victim subscribed first")
    survivor = s.bridge(config, "survivor").start()
    survivor.wait_ready()
    wait_for(lambda: consumers(s) == 2, 60, "the survivor subscribed too")
    n = 3000
    done = threading.Event()

    def publish() -> None:
        publish_entities(s, n, prefix="k")
        done.set()
    publisher = threading.Thread(target=publish)
    publisher.start()
    routed = "conveyor_rabbitmq_produced_total{kind=\"routed\""
    wait_for(lambda: victim.metric_sum(routed) >= 300, 60, "the victim has committed some")
    victim.kill()
    publisher.join(120)
    assert done.is_set()
    wait_for(lambda: queue_depth(s.stack, s.queue) == 0
             and survivor.metric_sum("conveyor_rabbitmq_unacked_in_flight") == 0,
             120, "the survivor drained the queue")
    assert survivor.stop() == 0
    landed = read_committed(s.stack.kafka_bootstrap, [f"{s.stream}.entities"])
    assert_exactly_once(landed, {f"k{i}" for i in range(n)})


def test_crash_between_commit_and_ack_is_absorbed_by_the_ledger(scenario: Scenario) -> None:
    """The exact window the ledger exists for: the bridge dies after commit_transaction()
    and before basic_ack (a fault-injection point), RabbitMQ redelivers the committed batch,
    and the restarted bridge recognises every id in it."""
    s = scenario
    config = s.config(batch={"max_messages": 100, "max_wait_ms": 20})
    n = 1000
    publish_entities(s, n, prefix="w")  # queued before the bridge starts: full batches
    crashing = s.bridge(config, "a")
    crashing.env["CONVEYOR_RMQ_FAILPOINT_CRASH_AFTER_COMMITS"] = "3"
    crashing.start()
    assert crashing.proc is not None
    assert crashing.proc.wait(120) == 86, crashing.log_tail()
    restarted = s.bridge(config, "a")
    restarted.log_path = s.tmp / "bridge-restarted.log"
    restarted.start()
    restarted.wait_ready()
    wait_for(lambda: queue_depth(s.stack, s.queue) == 0
             and restarted.metric_sum("conveyor_rabbitmq_unacked_in_flight") == 0,
             120, "queue drained")
    hits = restarted.metric_sum("conveyor_rabbitmq_dedup_hits_total")
    assert hits >= 100, hits  # at least the batch committed but never acked
    assert restarted.stop() == 0
    landed = read_committed(s.stack.kafka_bootstrap, [f"{s.stream}.entities"])
    assert_exactly_once(landed, {f"w{i}" for i in range(n)})
