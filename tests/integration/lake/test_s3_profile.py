"""The s3 profile run for real: Apache Iceberg's sink on the Connect workers, Iceberg's REST
catalog and an S3-compatible store (S3Proxy) from the compose profile ``s3``, the rows read back
with an independent Iceberg reader (PyIceberg). Events from both bridges land exactly once
after the Connect worker running the sink is SIGKILLed right after a commit reached the
catalog, before the coordinator could record it as done.

Each test deploys its own copies of the profile's files: its own connector names, topics,
control topics, dead-letter topics and Iceberg namespace (``t<token>``).
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from pyiceberg.exceptions import NoSuchTableError
from snowplow_tracker import PageView

from connectors import deploy
from connectors.configs import ConnectorFile, load_file
from connectors.rest import ConnectClient
from devstack.stack import ROOT, Stack, compose, wait_until
from tests.integration.connectors.bridges import RabbitMQWriter, SnowplowWriter, Written, order
from tests.integration.landing import Run
from tests.integration.warehouse import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

S3_PROFILE = ROOT / "connectors" / "configs" / "s3"
CATALOG_URL = "http://127.0.0.1:8181"
S3_URL = "http://127.0.0.1:9000"
COMMIT_INTERVAL_MS = "10000"   # the profile's 2 minutes, shortened for the test
BATCHES, BATCH_SIZE, PAUSE_S = 120, 10, 0.5   # a minute: past the first commits
TAKEOVER_S = 180


@pytest.fixture(scope="module")
def lake(stack: Stack) -> Iterator[Any]:
    """The compose profile's store and catalog running; a PyIceberg catalog on them."""
    from pyiceberg.catalog import load_catalog

    compose("--profile", "s3", "up", "-d", "s3", "iceberg-rest")
    wait_until(lambda: _answers(f"{CATALOG_URL}/v1/config"), 120, "the Iceberg catalog")
    catalog = load_catalog("lake", **{
        "type": "rest", "uri": CATALOG_URL,
        "s3.endpoint": S3_URL, "s3.path-style-access": "true", "s3.region": "us-east-1",
        "s3.access-key-id": os.environ["CONVEYOR_S3_ACCESS_KEY_ID"],
        "s3.secret-access-key": os.environ["CONVEYOR_S3_SECRET_ACCESS_KEY"]})
    yield catalog
    # Left running they would keep the stack's network from being removed by `down`.
    compose("--profile", "s3", "rm", "-sf", "s3", "iceberg-rest")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def lake_for_test(file: str, run: Run, topics_regex: str) -> ConnectorFile:
    """A file of the s3 profile with this test's names, a short commit interval, and
    dead-letter topics of one replica (one broker here)."""
    c = load_file(S3_PROFILE / file)
    name = f"{c.name}-{run.token}"
    cfg = {}
    for key, value in c.config.items():
        # Tables conveyor.<x> -> t<token>.<x>, in iceberg.tables and the per-table keys.
        key = key.replace("iceberg.table.conveyor.", f"iceberg.table.{run.prefix}.")
        if key == "iceberg.tables":
            value = re.sub(r"\bconveyor\.", f"{run.prefix}.", value)
        cfg[key] = value
    cfg.update({
        "topics.regex": topics_regex,
        "iceberg.control.topic": f"conveyor.iceberg.control.{name}",
        "iceberg.control.commit.interval-ms": COMMIT_INTERVAL_MS,
        "errors.deadletterqueue.topic.name": run.dlq(c.name),
        "errors.deadletterqueue.topic.replication.factor": "1",
    })
    return ConnectorFile(name, cfg, c.path, c.notes)


def _service(worker_id: str) -> str:
    return worker_id.rsplit(":", 1)[0]


def _snapshots(catalog: Any, table: str) -> int:
    try:
        return len(catalog.load_table(table).snapshots())
    except NoSuchTableError:   # the sink creates it with its first commit
        return 0


def _ids(catalog: Any, table: str) -> list[str]:
    try:
        scan = catalog.load_table(table).scan(selected_fields=("event_id",))
    except NoSuchTableError:
        return []
    return [str(v) for v in scan.to_arrow().column("event_id").to_pylist()]


class Stream:
    """Both bridges' events at a steady pace, in a thread: RabbitMQ orders and Snowplow
    page views, each batch one committed transaction."""

    def __init__(self, rmq: RabbitMQWriter, snowplow: SnowplowWriter, token: str) -> None:
        self.rmq, self.snowplow, self.token = rmq, snowplow, token
        self.orders: list[Written] = []
        self.page_views: list[str] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            tracker, emitter = self.snowplow.tracker(app_id=f"lake-{self.token}")
            for b in range(BATCHES):
                first = b * BATCH_SIZE
                self.orders += self.rmq.publish(
                    [order(i, self.token) for i in range(first, first + BATCH_SIZE)])
                for i in range(5):
                    tracker.track(PageView(page_url=f"https://shop.example/p/{b}-{i}"))
                events, emitter.events = emitter.events, []
                good, bad = self.snowplow.post(events)
                assert bad == 0
                self.page_views += good
                time.sleep(PAUSE_S)   # pacing the stream, not waiting for anything
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self._thread.join(BATCHES * (PAUSE_S + 5))
        assert not self._thread.is_alive() and self.error is None, self.error


def test_both_bridges_land_in_iceberg_exactly_once_through_a_worker_killed_mid_commit(
        stack: Stack, lake: Any, run: Run, tmp_path: Path) -> None:
    p = run.prefix
    connectors = [
        lake_for_test("rabbitmq-events.json", run, rf"{p}\.events\..+"),
        lake_for_test("snowplow-events.json", run, rf"{p}\.snowplow\.(?!bad$).+"),
    ]
    rmq = RabbitMQWriter(stack, f"{p}.events", tmp_path)
    snowplow = SnowplowWriter(stack, f"{p}.snowplow", run.token)
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    topics = [*rmq.topics.values(), *snowplow.topics.values(),
              *(c.config["iceberg.control.topic"] for c in connectors)]
    for future in admin.create_topics([NewTopic(t, 1 if ".control." in t else 2, 1)
                                       for t in topics]).values():
        future.result(30)
    connect = ConnectClient(stack.connect_url)
    orders_table = f"{p}.rabbitmq_order_placed"
    views_table = f"{p}.snowplow_events"
    victim = ""
    try:
        for c in connectors:
            deploy.apply(connect, c, timeout=180)
        stream = Stream(rmq, snowplow, run.token)
        # Mid-stream, right after a commit reached the catalog: kill the worker that runs
        # the RabbitMQ sink's first task, before its coordinator can record the commit.
        poll(lambda: _snapshots(lake, orders_table), lambda n: n >= 1, 120,
             f"a first commit to {orders_table}")
        seen = _snapshots(lake, orders_table)
        poll(lambda: _snapshots(lake, orders_table), lambda n: n > seen, 60,
             f"the next commit to {orders_table}", every=0.1)
        victim = _service(connect.status(connectors[0].name).tasks[0]["worker_id"])
        compose("kill", victim)
        assert len(stream.orders) < BATCHES * BATCH_SIZE, "the stream ended before the kill"
        stream.join()
        compose("start", victim)
        stack.wait([victim])
        sent_orders = {w.event_id for w in stream.orders}
        sent_views = set(stream.page_views)
        poll(lambda: len(_ids(lake, orders_table)), lambda n: n >= len(sent_orders),
             TAKEOVER_S + 60, f"every order in {orders_table}", every=2)
        poll(lambda: len(_ids(lake, views_table)), lambda n: n >= len(sent_views),
             TAKEOVER_S + 60, f"every page view in {views_table}", every=2)
        # A record the successor wrote again would have been committed with (or before) the
        # ones the killed worker never committed: by now it would be there.
        orders, views = _ids(lake, orders_table), _ids(lake, views_table)
    finally:
        if victim:
            compose("start", victim)
        for c in connectors:
            connect.delete(c.name)
        connect.close()
        rmq.close()
        snowplow.close()
        for table in (orders_table, views_table, f"{p}.rabbitmq_other_events"):
            with contextlib.suppress(NoSuchTableError):   # a table no event went to
                lake.purge_table(table)

    assert len(orders) == len(set(orders)) == len(sent_orders) == BATCHES * BATCH_SIZE
    assert set(orders) == sent_orders
    assert len(views) == len(set(views)) and set(views) == sent_views
    assert len(sent_views) == BATCHES * 5
