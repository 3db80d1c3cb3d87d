"""The fulfilment centre's database into the warehouse through Debezium's PostgreSQL source
(exactly once while streaming, KIP-618) and the JDBC sink: a steady load while the worker
running the source task is SIGKILLed, an initial snapshot interrupted by a kill, and the WAL a
slot holds while the captured tables are quiet.
"""
from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from confluent_kafka import IsolationLevel, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from connectors.rest import ConnectClient
from devstack.stack import Stack, compose
from fulfilment.compare import history_faults
from fulfilment.load import TABLES, Tally, order_base
from fulfilment.load import run as run_load
from tests.integration.landing import Run
from tests.integration.warehouse import Warehouse, poll

from .harness import Pipeline, deploy_pipeline

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

RATE = 40            # transactions per second: steady, and busy enough to be mid-batch
TAKEOVER_S = 180     # group session timeout + scheduled rebalance delay, on a loaded machine
SNAPSHOT_ROWS = 30_000


@pytest.fixture
def source_conn(stack: Stack) -> Iterator[psycopg.Connection[Any]]:
    conn = psycopg.connect(stack.fulfilment_dsn, autocommit=True)
    yield conn
    conn.close()


@pytest.fixture
def cdc(connect: ConnectClient, run: Run, source_conn: psycopg.Connection[Any],
        warehouse: Warehouse, request: pytest.FixtureRequest) -> Iterator[Pipeline]:
    changes = getattr(request, "param", {"snapshot.mode": "no_data"})
    yield from deploy_pipeline(connect, run, source_conn, warehouse, **changes)


def _service(worker_id: str) -> str:
    return worker_id.rsplit(":", 1)[0]


def _streaming(pipeline: Pipeline) -> None:
    """Until the connector holds its slot, changes committed now would not be captured."""
    poll(pipeline.slot_state, lambda s: s is not None and s[0], 120,
         f"slot {pipeline.slot} to be active")


def _kill_source_worker(stack: Stack, pipeline: Pipeline) -> tuple[str, str]:
    """SIGKILL the worker running the source task; (victim, survivor)."""
    client = ConnectClient(stack.connect_url)
    try:
        state = client.status(pipeline.source.name)
    finally:
        client.close()
    victim = _service(state.tasks[0]["worker_id"])
    compose("kill", victim)
    return victim, "connect-2" if victim == "connect" else "connect"


def _wait_taken_over(stack: Stack, survivor: str, pipeline: Pipeline) -> None:
    url = stack.connect_2_url if survivor == "connect-2" else stack.connect_url
    client = ConnectClient(url)
    try:
        for name in [pipeline.source.name, *(s.name for s in pipeline.sinks)]:
            poll(lambda n=name: client.status(n),
                 lambda s: s.running and bool(s.tasks)
                 and all(_service(t["worker_id"]) == survivor for t in s.tasks),
                 TAKEOVER_S, f"{survivor} to run {name}")
    finally:
        client.close()


class Load:
    """The load generator in a thread, on a connection of its own."""

    def __init__(self, stack: Stack, pipeline: Pipeline) -> None:
        self.conn = psycopg.connect(stack.fulfilment_dsn)
        self.load = pipeline.load(self.conn, seed=7)
        self.load.setup()
        self.stop = threading.Event()
        self.errors: list[Exception] = []
        self.thread = threading.Thread(
            target=run_load, args=(self.load, RATE), daemon=True,
            kwargs={"stop": self.stop, "on_error": self.errors.append})
        self.thread.start()

    def finish(self) -> Tally:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        self.conn.close()
        assert not self.errors, f"the load's transactions failed: {self.errors[:3]}"
        return self.load.tally


def test_a_worker_killed_while_streaming_loses_and_repeats_no_change(
        stack: Stack, cdc: Pipeline) -> None:
    _streaming(cdc)
    load = Load(stack, cdc)
    victim = ""
    try:
        # Changes are landing: the kill falls mid-stream, with the load still writing.
        poll(lambda: len(cdc.change_rows("robots")), lambda n: n > 0, 120,
             "the first changes in the warehouse")
        victim, survivor = _kill_source_worker(stack, cdc)
        _wait_taken_over(stack, survivor, cdc)
        # Keep writing after the takeover, so the survivor streams from where it resumed.
        after = len(cdc.change_rows("robots"))
        poll(lambda: len(cdc.change_rows("robots")), lambda n: n > after + 20, 120,
             "changes landing after the takeover")
        tally = load.finish()
        cdc.wait_equal(180)
    finally:
        if not load.stop.is_set():
            load.finish()
        if victim:
            compose("start", victim)
            stack.wait([victim])

    # The state: each table equals the source's, row for row (wait_equal above).
    # The history: every committed change once, per table and operation.
    landed: Counter[tuple[str, str]] = Counter()
    faults: list[str] = []
    for table in TABLES:
        ops, broken = history_faults(cdc.change_rows(table), table)
        landed.update({(table, op): n for op, n in ops.items()})
        faults += broken
    assert not faults, faults[:10]
    assert landed == tally.changes, {k: (landed[k], tally.changes[k])
                                     for k in landed.keys() | tally.changes.keys()
                                     if landed[k] != tally.changes[k]}
    assert tally.total > 500, "too little load to mean anything"
    assert tally.changes[("totes", "d")] + tally.changes[("picks", "d")] > 0, "no deletes"


def _committed_records(bootstrap: str, topic: str) -> int:
    """Records of ``topic`` a read_committed consumer can read (last stable offsets)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    md = admin.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        return 0
    parts = [TopicPartition(topic, p) for p in md.partitions]
    try:
        ends = admin.list_offsets({tp: OffsetSpec.latest() for tp in parts},
                                  isolation_level=IsolationLevel.READ_COMMITTED)
        starts = admin.list_offsets({tp: OffsetSpec.earliest() for tp in parts})
        return sum(ends[tp].result().offset - starts[tp].result().offset for tp in parts)
    except KafkaException:  # a topic just created: its partitions have no leader yet
        return 0


def test_an_interrupted_snapshot_repeats_rows_that_the_upsert_absorbs(
        stack: Stack, source_conn: psycopg.Connection[Any], run: Run,
        connect: ConnectClient, warehouse: Warehouse) -> None:
    # Rows to snapshot, committed before the connector exists: order lines of this test.
    tag = run.prefix.upper()
    base = order_base(tag)
    source_conn.execute(
        "INSERT INTO fulfilment.picks (order_id, line_no, sku, quantity, status)"
        " SELECT %s + g / 4, g %% 4 + 1, 'SKU-' || lpad((g %% 50000)::text, 6, '0'),"
        " 1 + g %% 6, 'queued' FROM generate_series(0, %s - 1) AS g", (base, SNAPSHOT_ROWS))
    (total,) = source_conn.execute("SELECT count(*) FROM fulfilment.picks").fetchone() or (0,)
    pipelines = deploy_pipeline(connect, run, source_conn, warehouse, **{
        "snapshot.mode": "initial", "table.include.list": r"fulfilment\.(picks|cdc_heartbeat)"})
    cdc = next(pipelines)
    victim = ""
    try:
        # Kill the worker while the snapshot has written part of the rows, not all.
        topic = cdc.topic("picks")
        seen = poll(lambda: _committed_records(stack.kafka_bootstrap, topic),
                    lambda n: n > 0, 180, f"the snapshot's first records in {topic}", every=0.2)
        assert seen < total, f"the snapshot ended before the kill ({seen} of {total} records)"
        victim, survivor = _kill_source_worker(stack, cdc)
        _wait_taken_over(stack, survivor, cdc)
        cdc.wait_equal(300)
        rows = cdc.change_rows("picks")
    finally:
        if victim:
            compose("start", victim)
            stack.wait([victim])
        pipelines.close()

    # The state table holds each row once (wait_equal: exactly the source's rows, by key);
    # the change table shows what the restarted snapshot wrote again.
    reads = [r for r in rows if r["change_op"] == "r"]
    keys = {(r["order_id"], r["line_no"]) for r in reads}
    assert len(keys) == SNAPSHOT_ROWS
    repeated = len(reads) - len(keys)
    assert repeated > 0, "a snapshot restarted from the beginning writes its rows again"
    assert repeated < total, "the first attempt was cut short, so it wrote less than all"
    assert [r for r in rows if r["change_op"] != "r"] == []


# A slot may hold this much WAL at rest: the heartbeat query's own, plus a segment.
RESTING_WAL_BYTES = 16 * 1024 * 1024


def test_quiet_tables_hold_no_wal(stack: Stack, cdc: Pipeline,
                                  source_conn: psycopg.Connection[Any]) -> None:
    _streaming(cdc)
    # Another table of the database is busy (fulfilment.scratch, not captured) while the
    # captured ones are quiet: a slot whose connector never confirms holds all of its WAL.
    # (Measured: Debezium 3.6 confirms from the server's keepalives even with heartbeats
    # off; the heartbeat query makes sure of it whatever the versions, connectors/README.md.)
    for _ in range(40):
        source_conn.execute(
            "INSERT INTO fulfilment.scratch (filler) SELECT string_agg(md5(random()::text), '')"
            " FROM generate_series(1, 32768)")
    try:
        state = cdc.slot_state()
        assert state is not None
        held = state[1]
        assert held > 2 * RESTING_WAL_BYTES, f"the writes made only {held} bytes of WAL"
        # Within a few heartbeats (10 s each) the connector confirms past all of it.
        poll(cdc.slot_state, lambda s: s is not None and s[1] < RESTING_WAL_BYTES, 120,
             f"slot {cdc.slot} to release the {held} bytes of WAL others wrote")
    finally:
        source_conn.execute("TRUNCATE fulfilment.scratch")


def test_the_source_database_restarting_loses_nothing(stack: Stack, cdc: Pipeline) -> None:
    """The fulfilment centre's server restarts (its slot and WAL on the volume): the server
    comes back with the slot (it must start with wal_level=logical even for its own set-up
    run), the connector reconnects, and changes committed on both sides of the restart land."""
    _streaming(cdc)
    load = Load(stack, cdc)
    try:
        poll(lambda: len(cdc.change_rows("robots")), lambda n: n > 0, 120,
             "the first changes in the warehouse")
    finally:
        before = load.finish()
    stack.restart("fulfilment-db", kill=True)
    cdc.source_conn.close()
    cdc.source_conn = psycopg.connect(stack.fulfilment_dsn, autocommit=True)
    _streaming(cdc)   # the same slot, active again: the connector reconnected
    landed_before = len(cdc.change_rows("robots"))
    load = Load(stack, cdc)
    try:
        poll(lambda: len(cdc.change_rows("robots")), lambda n: n > landed_before, 120,
             "changes committed after the restart in the warehouse")
    finally:
        after = load.finish()
    cdc.wait_equal(180)
    landed: Counter[tuple[str, str]] = Counter()
    for table in TABLES:
        ops, faults = history_faults(cdc.change_rows(table), table)
        assert not faults, faults[:10]
        landed.update({(table, op): n for op, n in ops.items()})
    assert landed == before.changes + after.changes
