"""Crash test: SIGKILLs at random moments plus a RabbitMQ and a Kafka restart, while 20,000
messages are published; afterwards every message is in Kafka exactly once."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rmq_harness import (
    BridgeProcess,
    Publisher,
    bridge_env,
    read_committed,
    wait_for,
    write_config,
)

from devstack.topology import declare_topology
from tests.integration.processes import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESSAGES = int(os.environ.get("CONVEYOR_CRASH_MESSAGES", "20000"))
KILLS = 6
PUBLISH_RATE = 300.0  # per second: spreads publishing over the whole chaos schedule
RESTART_RABBITMQ_AFTER_KILL = 2
RESTART_KAFKA_AFTER_KILL = 4


class Supervisor:
    """Plays the container's restart policy: a bridge that exited is started again."""

    def __init__(self, bridge: BridgeProcess) -> None:
        self.bridge = bridge
        self.exits: list[int] = []

    def tend(self) -> None:
        proc = self.bridge.proc
        if proc is not None and proc.poll() is not None:
            self.exits.append(proc.returncode)
            self.bridge.start()

    def kill_and_restart(self) -> None:
        self.tend()
        self.bridge.kill()
        self.bridge.start()


def queue_messages(stack: Any, queue: str) -> int:
    """Ready + unacked messages of ``queue``, from the management API."""
    r = httpx.get(f"{stack.rabbitmq_management_url}/api/queues/%2F/{queue}",
                  auth=(stack.rabbitmq_user, stack.rabbitmq_password), timeout=5)
    r.raise_for_status()
    doc = r.json()
    return int(doc.get("messages", 0) or 0) + int(doc.get("messages_unacknowledged", 0) or 0)


@pytest.fixture
def chaos_names(unique: Callable[[str], str]) -> Iterator[dict[str, str]]:
    stream = unique("crash")
    yield {"stream": stream, "exchange": f"{stream}.ex", "queue": f"{stream}.q",
           "topic": f"{stream}.events"}


@pytest.mark.timeout(900)
def test_exactly_once_through_kills_and_broker_restarts(
        rmq_stack: Any, chaos_names: dict[str, str], tmp_path: Path) -> None:
    stack, n = rmq_stack, chaos_names
    rng = random.Random(int(os.environ.get("CONVEYOR_CRASH_SEED", str(time.time_ns()))))
    declare_topology(stack.rabbitmq_url, n["queue"], n["exchange"])
    config = write_config(
        tmp_path / "crash.yaml", stack, n["stream"], n["queue"], n["exchange"],
        [{"routing_key": "#", "topic": n["topic"], "key": "payload:entity"}],
        batch={"max_messages": 250, "max_wait_ms": 50},
        kafka={"transaction_timeout_ms": 20_000})
    port = free_port()
    bridge = BridgeProcess(config, bridge_env(stack, "crash", port), tmp_path / "bridge.log",
                           port)
    sup = Supervisor(bridge)
    bridge.start()
    bridge.wait_ready()

    publisher = Publisher(stack.rabbitmq_url, n["exchange"])
    failure: list[BaseException] = []

    def publish_all() -> None:
        try:
            started = time.monotonic()
            for i in range(MESSAGES):
                body = json.dumps({"entity": f"e{i % 50}", "seq": i // 50,
                                   "pad": "x" * 200}).encode()
                publisher.publish(f"entity.{i % 7}", body, message_id=f"c{i}")
                ahead = started + (i + 1) / PUBLISH_RATE - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing, so the kills land while messages flow
        except BaseException as exc:
            failure.append(exc)
        finally:
            publisher.close()

    pub = threading.Thread(target=publish_all, name="publisher")
    pub.start()
    for k in range(1, KILLS + 1):
        time.sleep(rng.uniform(1.0, 6.0))  # a random moment, not a readiness wait
        sup.kill_and_restart()
        if k == RESTART_RABBITMQ_AFTER_KILL:
            stack.restart("rabbitmq")
        if k == RESTART_KAFKA_AFTER_KILL:
            stack.restart("kafka")

            def healthy_again() -> bool:
                sup.tend()
                return bridge.health() is not None
            wait_for(healthy_again, 120, "bridge /health ready after the Kafka restart")
    pub.join(timeout=600)
    assert not pub.is_alive(), "publisher did not finish"
    assert not failure, failure
    assert publisher.confirmed == MESSAGES

    def drained() -> bool:
        sup.tend()
        return queue_messages(stack, n["queue"]) == 0
    wait_for(drained, 300, "queue drained by the bridge", pause=1.0)
    # The last kill's restart may still be importing when the queue is already empty (the
    # process before it drained it): SIGTERM then ends a process that has not installed
    # its handler yet (-15). A clean stop is asked of a bridge that is up.
    bridge.wait_ready()
    assert bridge.stop() == 0, f"exits seen {sup.exits}\n{bridge.log_tail()}"

    landed = read_committed(stack.kafka_bootstrap, [n["topic"]], timeout=120)
    counts: dict[str, int] = {}
    for rec in landed:
        counts[rec.event_id] = counts.get(rec.event_id, 0) + 1
    dups = {k: c for k, c in counts.items() if c > 1}
    expected = {f"c{i}" for i in range(MESSAGES)}
    assert not dups, f"{len(dups)} duplicates, e.g. {sorted(dups.items())[:5]}"
    assert set(counts) == expected, f"missing {len(expected - set(counts))}"
    assert bridge.starts >= KILLS + 1
    # The redeliveries that followed the kills were recognised, not produced again.
    log = bridge.log_path.read_text(errors="replace")
    # The ledger was read (the bridge logs kafka.ready with the ids it holds; older: ledger.loaded).
    assert '"ledger_ids"' in log or "ledger.loaded" in log
    print(f"crash test: {MESSAGES} messages, {bridge.starts} bridge starts, "
          f"exits seen {sup.exits}, publisher retries {publisher.republished}")
