"""Sinks that heal: several tasks evolving one table at once never fail each other, and a
task that fails anyway comes back by itself through the healer (`connect-healer`).

The race: every task of one JDBC sink gets, in the same instant, a record with a field the
table has no column for. Each task reads the table, sees the column missing, and adds it.
With Debezium's own PostgreSQL dialect the ALTERs after the first fail with ``column ...
already exists`` and their tasks die; with ours (connectors/dialect/) they are no-ops.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from connectors import deploy
from connectors.configs import ConnectorFile
from connectors.rest import ConnectClient, ConnectorState
from devstack.stack import Stack
from tests.integration.landing import Run
from tests.integration.warehouse import Warehouse, poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

# One partition per task, so every task gets each round's new field. The tasks race as
# threads of one worker as they do across the two (Connect spreads them when both are up).
TASKS = 3
# Rounds of "a new field reaches every task at once". Debezium's own dialect failed a task
# in 14 of 40 rounds here, about one in three (connectors/README.md, "Schema evolution"):
# a fix that did not hold would pass all 15 rounds with a chance of 0.65^15, under 0.2 %.
ROUNDS = 15
ROUND_TIMEOUT_S = 60.0
HEALER_URL = os.environ.get("CONNECT_HEALER_URL", "http://127.0.0.1:9104")
# The compose healer's first restart comes after 5 s (docker/compose.yml); a task failed
# by force is back well within this, on a loaded machine too.
HEAL_TIMEOUT_S = 120.0


def sink(run: Run, name: str, topic: str, table: str, **changes: str) -> ConnectorFile:
    """A JDBC sink of the local profile's kind, over JSON records that carry their schema,
    so each round can add a field without a registry."""
    cfg = {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": str(TASKS),
        "topics": topic,
        "key.converter": "org.apache.kafka.connect.storage.StringConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter.schemas.enable": "true",
        "connection.url": "jdbc:postgresql://postgres:5432/warehouse",
        "connection.username": "${env:CONVEYOR_POSTGRES_USER}",
        "connection.password": "${env:CONVEYOR_POSTGRES_PASSWORD}",
        "connection.pool.min_size": "1",
        "connection.pool.max_size": "2",
        "insert.mode": "upsert",
        "primary.key.mode": "record_value",
        "primary.key.fields": "event_id",
        "schema.evolution": "basic",
        "collection.name.format": table,
        "use.time.zone": "UTC",
        "errors.tolerance": "none",
    }
    cfg.update(changes)
    return ConnectorFile(f"{name}-{run.token}", cfg)


def record(event_id: str, fields: dict[str, Any]) -> bytes:
    schema = {"type": "struct", "name": "itest.healing", "optional": False, "fields": [
        {"field": "event_id", "type": "string", "optional": False},
        *({"field": k, "type": "string" if isinstance(v, str) or v is None else "int64",
           "optional": True} for k, v in fields.items())]}
    return json.dumps({"schema": schema,
                       "payload": {"event_id": event_id, **fields}}).encode()


@pytest.fixture
def topic(stack: Stack, run: Run) -> Iterator[str]:
    name = f"{run.prefix}.healing"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    for future in admin.create_topics([NewTopic(name, TASKS, 1)]).values():
        future.result(30)
    yield name
    for future in admin.delete_topics([name]).values():
        future.result(30)


def failed_tasks(state: ConnectorState) -> list[str]:
    """Each failed task with the innermost cause of its trace (the database's words)."""
    def cause(trace: str) -> str:
        causes = [ln.strip() for ln in trace.splitlines() if ln.startswith("Caused by:")]
        return (causes[-1] if causes else trace.splitlines()[0] if trace else "")[:300]
    return [f"task {t['id']}: {cause(t.get('trace', ''))}" for t in state.tasks
            if t["state"] == "FAILED"] + (["connector"] if state.state == "FAILED" else [])


def wait_one_partition_each(stack: Stack, group: str, members: int) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})

    def assignment() -> list[int]:
        (future,) = admin.describe_consumer_groups([group]).values()
        described = future.result(10)
        return sorted(len(m.assignment.topic_partitions) for m in described.members
                      if m.assignment is not None)

    poll(assignment, lambda a: a == [1] * members, 90, f"{group}: one partition per task")


def healer_restarts(connector: str) -> float:
    """Restarts the healer made for ``connector``, from its /metrics."""
    text = httpx.get(f"{HEALER_URL}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("conveyor_connect_healer_restarts_total{") \
                and f'connector="{connector}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_concurrent_schema_evolution_never_fails_a_task(
        stack: Stack, run: Run, topic: str, warehouse: Warehouse, connect: ConnectClient,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    table = f"{run.prefix}_healing_race"
    connector = sink(run, "healing-race", topic, table)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all",
                         "linger.ms": 0})

    def send_round(k: int) -> None:
        # Round k: fields c1..ck, to every partition at once (one flush), so every task
        # polls a record with column ck missing at the same moment.
        fields: dict[str, Any] = {"n": k, **{f"c{i}": f"r{k}" for i in range(1, k + 1)}}
        for p in range(TASKS):
            producer.produce(topic, record(f"{k}-{p}", fields), f"{k}-{p}".encode(),
                             partition=p)
        assert producer.flush(30) == 0

    send_round(0)
    deployed(connector)
    warehouse.wait_count(table, TASKS)
    # RUNNING is not yet consuming: until every task's consumer has joined the group, the
    # first one holds every partition and the others have nothing to race with.
    wait_one_partition_each(stack, f"connect-{connector.name}", TASKS)

    failures: list[str] = []
    for k in range(1, ROUNDS + 1):
        send_round(k)
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        while True:
            state = connect.status(connector.name)
            failed = failed_tasks(state)
            if failed:
                failures.append(f"round {k}: " + "; ".join(failed))
                break
            if warehouse.count(table) == TASKS * (k + 1):
                break
            assert time.monotonic() < deadline, f"round {k}: rows not landed, {state}"
            time.sleep(0.1)
        if failed:
            break
    assert not failures, f"a task failed in {failures[0]} (of {ROUNDS} rounds)"

    columns = warehouse.columns(table)
    assert {f"c{i}" for i in range(1, ROUNDS + 1)} <= set(columns)
    rows = {r["event_id"]: r for r in warehouse.rows(table)}
    assert len(rows) == TASKS * (ROUNDS + 1)
    assert rows[f"{ROUNDS}-0"][f"c{ROUNDS}"] == f"r{ROUNDS}"
    state = connect.status(connector.name)
    assert state.running and len(state.tasks) == TASKS, state
    # Nothing failed unseen and was healed between two looks: the healer restarted nothing.
    assert healer_restarts(connector.name) == 0


def healer_reason(connector: str) -> str | None:
    text = httpx.get(f"{HEALER_URL}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("conveyor_connect_healer_last_failure_info{") \
                and f'connector="{connector}"' in line:
            return line.split('reason="', 1)[1].split('"', 1)[0]
    return None


def test_a_task_failed_by_force_comes_back_by_itself(
        stack: Stack, run: Run, topic: str, warehouse: Warehouse, connect: ConnectClient,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    """A row PostgreSQL refuses (a CHECK constraint) fails the task, as any write the
    database refuses does; once the cause is gone (the constraint dropped) nobody touches
    Connect: the healer restarts the task, which writes the row it failed on, and runs."""
    table = f"{run.prefix}_healing_forced"
    warehouse.conn.execute(
        f'CREATE TABLE "{table}" (event_id text PRIMARY KEY, n bigint, '
        f"note text CONSTRAINT no_refusals CHECK (note <> 'refused'))")
    connector = sink(run, "healing-forced", topic, table, **{"tasks.max": "1"})
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all"})

    def send(event_id: str, note: str) -> None:
        producer.produce(topic, record(event_id, {"n": 1, "note": note}), event_id.encode(),
                         partition=0)
        assert producer.flush(30) == 0

    send("ok-1", "fine")
    deployed(connector)
    warehouse.wait_count(table, 1)
    restarts_before = healer_restarts(connector.name)

    send("bad-1", "refused")
    send("ok-2", "fine")
    failed = poll(lambda: connect.status(connector.name), lambda st: bool(failed_tasks(st)),
                  60, f"{connector.name} to fail on the refused row", every=0.2)
    assert "no_refusals" in "\n".join(t.get("trace", "") for t in failed.tasks)
    assert {r["event_id"] for r in warehouse.rows(table)} == {"ok-1"}

    warehouse.conn.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT no_refusals')
    rows = warehouse.wait_count(table, 3, timeout=HEAL_TIMEOUT_S)
    assert {r["event_id"] for r in rows} == {"ok-1", "bad-1", "ok-2"}
    state = poll(lambda: connect.status(connector.name), lambda st: st.running, 30,
                 f"{connector.name} RUNNING after healing")
    assert not failed_tasks(state)
    assert healer_restarts(connector.name) >= restarts_before + 1
    assert healer_reason(connector.name) in ("org.postgresql.util.PSQLException",
                                             "java.sql.BatchUpdateException")
