"""A test's own CDC pipeline on the fulfilment centre's database, and the comparisons a user
would make: the warehouse's state tables against the source tables, the change tables against
what the load generator committed.

Each test deploys its own copies of the local profile's three CDC connectors (its own slot,
publication, topics ``t<token>.fulfilment.<table>`` and tables ``t<token>_fulfilment_<table>``)
and writes only rows tagged with its token, so tests never see each other's changes. At the
end the slot is dropped (a forgotten slot holds WAL forever) and the tagged rows deleted.
"""
from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg

from connectors import deploy
from connectors.configs import ConnectorFile
from connectors.rest import ConnectClient
from fulfilment.load import ORDER_SPAN, TABLES, FulfilmentLoad
from tests.integration.landing import Run, for_test
from tests.integration.warehouse import Warehouse, poll

KEYS = {"robots": ("robot_id",), "conveyor_segments": ("segment_id",),
        "totes": ("tote_id",), "picks": ("order_id", "line_no")}
# Columns of our own on the landed rows, not the source's.
LANDING = {"change_op", "change_lsn", "change_deleted", "occurred_at", "accepted_at",
           "landed_at", "__connect_topic", "__connect_partition", "__connect_offset"}


def normalise(value: Any) -> Any:
    """Values as a comparison should see them, whatever type each side's column has."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


@dataclass
class Pipeline:
    run: Run
    source: ConnectorFile
    sinks: list[ConnectorFile]
    source_conn: psycopg.Connection[Any]
    warehouse: Warehouse
    tag: str

    @property
    def slot(self) -> str:
        return self.source.config["slot.name"]

    def topic(self, table: str) -> str:
        return f"{self.run.prefix}.fulfilment.{table}"

    def state_table(self, table: str) -> str:
        return f"{self.run.prefix}_fulfilment_{table}"

    def changes_table(self, table: str) -> str:
        return f"{self.run.prefix}_fulfilment_{table}_changes"

    def load(self, seed: int = 0) -> FulfilmentLoad:
        return FulfilmentLoad(self.source_conn, self.tag, seed=seed)

    # -- the source -----------------------------------------------------------------------

    def tag_filter(self, table: str) -> tuple[str, tuple[Any, ...]]:
        """The WHERE clause (and its parameters) that picks this test's rows of ``table``."""
        if table == "picks":
            base = FulfilmentLoad(self.source_conn, self.tag).order_base
            return "order_id >= %s AND order_id < %s", (base, base + ORDER_SPAN)
        column = {"robots": "robot_id", "conveyor_segments": "segment_id",
                  "totes": "barcode"}[table]
        return f"{column} LIKE %s", (f"{self.tag}-%",)

    def source_rows(self, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        where, params = self.tag_filter(table)
        cur = self.source_conn.execute(f"SELECT * FROM fulfilment.{table} WHERE {where}", params)
        return _by_key(cur, table)

    def slot_state(self) -> tuple[bool, int] | None:
        """(active, bytes of WAL the slot holds) or None while it does not exist."""
        row = self.source_conn.execute(
            "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint"
            " FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)).fetchone()
        return None if row is None else (bool(row[0]), int(row[1] or 0))

    # -- the warehouse --------------------------------------------------------------------

    def state_rows(self, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        name = self.state_table(table)
        if not self.warehouse.exists(name):
            return {}
        where, params = self.tag_filter(table)
        cur = self.warehouse.conn.execute(f'SELECT * FROM "{name}" WHERE {where}', params)
        return _by_key(cur, table)

    def change_rows(self, table: str) -> list[dict[str, Any]]:
        name = self.changes_table(table)
        if not self.warehouse.exists(name):
            return []
        where, params = self.tag_filter(table)
        cur = self.warehouse.conn.execute(
            f'SELECT * FROM "{name}" WHERE {where} ORDER BY change_lsn', params)
        names = [d.name for d in cur.description or []]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def differences(self, table: str) -> list[str]:
        """How this test's rows of the state table differ from the source's: [] when equal."""
        source, landed = self.source_rows(table), self.state_rows(table)
        out = [f"{table}: {k} missing" for k in source.keys() - landed.keys()]
        out += [f"{table}: {k} should be deleted" for k in landed.keys() - source.keys()]
        for key in source.keys() & landed.keys():
            for column, value in source[key].items():
                if normalise(value) != normalise(landed[key].get(column)):
                    out.append(f"{table} {key}.{column}: source {value!r}, "
                               f"warehouse {landed[key].get(column)!r}")
        return out

    def wait_equal(self, timeout: float) -> None:
        poll(lambda: [d for t in TABLES for d in self.differences(t)], lambda d: not d,
             timeout, "the warehouse's state tables to equal the source's")


def _by_key(cur: psycopg.Cursor[Any], table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    names = [d.name for d in cur.description or []]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    return {tuple(normalise(r[k]) for k in KEYS[table]):
            {c: v for c, v in r.items() if c not in LANDING} for r in rows}


def history_faults(rows: list[dict[str, Any]], table: str) -> tuple[Counter[str], list[str]]:
    """Per operation, the streamed changes in a change table (snapshot reads left out), and
    every way the history breaks "each committed change once": per row, a version seen twice,
    a gap between versions, an insert that is not version 1, or more than one delete."""
    ops: Counter[str] = Counter()
    faults: list[str] = []
    by_key: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault(tuple(normalise(row[k]) for k in KEYS[table]), []).append(row)
    for key, changes in by_key.items():
        streamed = [c for c in changes if c["change_op"] != "r"]
        ops.update(c["change_op"] for c in streamed)
        versions = [c["version"] for c in streamed if c["change_op"] in ("c", "u")]
        if len(set(versions)) != len(versions):
            faults.append(f"{table} {key}: versions {sorted(versions)} repeat")
        elif versions and sorted(versions) != list(range(min(versions), max(versions) + 1)):
            faults.append(f"{table} {key}: versions {sorted(versions)} have a gap")
        if any(c["change_op"] == "c" and c["version"] != 1 for c in streamed):
            faults.append(f"{table} {key}: an insert that is not version 1")
        if sum(c["change_op"] == "d" for c in streamed) > 1:
            faults.append(f"{table} {key}: deleted more than once")
    return ops, faults


def deploy_pipeline(connect: ConnectClient, run: Run, source_conn: psycopg.Connection[Any],
                    warehouse: Warehouse, **source_changes: str) -> Iterator[Pipeline]:
    """Deploys the test's copies (sinks first, so no change waits for a table's sink), yields,
    then removes them, their slot and publication, and the test's source rows."""
    sinks = [for_test(f, run) for f in ("fulfilment-state.json", "fulfilment-changes.json")]
    source = for_test("fulfilment-cdc.json", run, **source_changes)
    pipeline = Pipeline(run, source, sinks, source_conn, warehouse, tag=run.prefix.upper())
    deployed: list[str] = []
    try:
        for connector in (*sinks, source):
            deployed.append(connector.name)
            deploy.apply(connect, connector, timeout=180)
        yield pipeline
    finally:
        for name in reversed(deployed):
            connect.delete(name)
        _drop_slot(pipeline)
        source_conn.execute(f"DROP PUBLICATION IF EXISTS {source.config['publication.name']}")
        for table in ("picks", "totes", "robots", "conveyor_segments"):  # references first
            where, params = pipeline.tag_filter(table)
            source_conn.execute(f"DELETE FROM fulfilment.{table} WHERE {where}", params)


def _drop_slot(pipeline: Pipeline) -> None:
    # A deleted connector's walsender lets go of the slot a moment later.
    state = poll(pipeline.slot_state, lambda s: s is None or not s[0], 60,
                 f"slot {pipeline.slot} to be released")
    if state is not None:
        pipeline.source_conn.execute("SELECT pg_drop_replication_slot(%s)", (pipeline.slot,))
