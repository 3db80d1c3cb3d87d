"""Two Connect workers in one group (``connect`` and ``connect-2``): the one running the
sink's tasks is killed with SIGKILL while events stream in. The survivor takes the tasks
over, resumes from the last committed offsets, and the warehouse ends with every event
exactly once: nothing lost, and the records replayed after the takeover are upserts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from connectors import deploy
from connectors.configs import ConnectorFile
from connectors.rest import ConnectClient
from devstack.stack import Stack, compose
from tests.integration.landing import Run, for_test, table
from tests.integration.warehouse import Warehouse, poll

from .bridges import RabbitMQWriter, Written, order

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

BATCHES = 60
BATCH_SIZE = 25
PARTITIONS = 4
# Pace of the stream: it must still be flowing when the worker dies and after.
BATCH_INTERVAL_S = 0.15
# The local workers reassign a lost worker's tasks after 15 s (compose.yml), on top of the
# 10 s group session timeout; this bounds the takeover generously on a loaded machine.
TAKEOVER_TIMEOUT_S = 150


@pytest.fixture
def writer(stack: Stack, run: Run, tmp_path: Path) -> Iterator[RabbitMQWriter]:
    w = RabbitMQWriter(stack, f"{run.prefix}.events", tmp_path)
    # Several partitions, so both of the connector's tasks have work before the kill.
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    for future in admin.create_topics(
            [NewTopic(t, PARTITIONS, 1) for t in w.topics.values()]).values():
        future.result(30)
    yield w
    w.close()


class Stream:
    """Publishes ``BATCHES`` committed batches of orders at a steady pace, in a thread."""

    def __init__(self, writer: RabbitMQWriter, token: str) -> None:
        self.writer = writer
        self.token = token
        self.sent: list[Written] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stream", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            for b in range(BATCHES):
                if self._stop.is_set():
                    return
                first = b * BATCH_SIZE
                self.sent += self.writer.publish(
                    [order(i, self.token) for i in range(first, first + BATCH_SIZE)])
                self._stop.wait(BATCH_INTERVAL_S)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float) -> list[Written]:
        self._thread.join(timeout)
        self._stop.set()
        assert not self._thread.is_alive(), "the publisher did not finish"
        assert self.error is None, f"publishing failed: {self.error!r}"
        return self.sent


def _service(worker_id: str) -> str:
    """``connect-2:8083`` -> ``connect-2``: workers advertise their compose host name."""
    return worker_id.rsplit(":", 1)[0]


def test_a_worker_killed_mid_stream_loses_and_duplicates_no_row(
        stack: Stack, run: Run, writer: RabbitMQWriter, warehouse: Warehouse,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    connector = for_test("rabbitmq-events.json", run, **{"tasks.max": "2"})
    deployed(connector)
    t = table(run, "rabbitmq", "order_placed")

    stream = Stream(writer, run.token)
    stream.start()
    # Mid-stream: rows are landing, and most of the stream is still to come.
    poll(lambda: warehouse.count(t), lambda n: n > 0, 120, f"first rows in {t}")

    clients = {"connect": ConnectClient(stack.connect_url),
               "connect-2": ConnectClient(stack.connect_2_url)}
    try:
        before = clients["connect"].status(connector.name)
        victim = _service(before.tasks[0]["worker_id"])
        survivor = "connect-2" if victim == "connect" else "connect"
        published_before_kill = len(stream.sent)
        compose("kill", victim)  # SIGKILL: no graceful stop, no final offset commit
        try:
            assert published_before_kill < BATCHES * BATCH_SIZE, "the stream ended before the kill"
            sent = stream.join(120)

            # Every task runs on the survivor, without the dead worker coming back.
            after = poll(lambda: clients[survivor].status(connector.name),
                         lambda s: s.running and all(_service(task["worker_id"]) == survivor
                                                     for task in s.tasks),
                         TAKEOVER_TIMEOUT_S, f"{survivor} to take over the tasks")
            assert len(after.tasks) == 2
            rows = warehouse.wait_count(t, len(sent), timeout=TAKEOVER_TIMEOUT_S)
        finally:
            compose("start", victim)
            stack.wait([victim])
    finally:
        for client in clients.values():
            client.close()

    # Exactly once: one row per event id sent, each with its own payload.
    assert len(rows) == len(sent) == BATCHES * BATCH_SIZE
    by_id = {r["event_id"]: r for r in rows}
    assert set(by_id) == {w.event_id for w in sent}
    for w in sent:
        row = by_id[w.event_id]
        assert (row["order_id"], row["total_cents"]) == (
            w.payload["order_id"], w.payload["total_cents"])
