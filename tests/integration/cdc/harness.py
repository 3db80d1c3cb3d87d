"""A test's own CDC pipeline on the fulfilment centre's database, and the comparisons a user
would make: the warehouse's state tables against the source tables, the change tables against
what the load generator committed.

Each test deploys its own copies of the local profile's three CDC connectors (its own slot,
publication, topics ``t<token>.fulfilment.<table>`` and tables ``t<token>_fulfilment_<table>``)
and writes only rows tagged with its token, so tests never see each other's changes. At the
end the slot is dropped (a forgotten slot holds WAL forever) and the tagged rows deleted.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from connectors import deploy
from connectors.configs import ConnectorFile
from connectors.rest import ConnectClient
from fulfilment.compare import Rows, by_key, differences, select, tag_filter
from fulfilment.load import TABLES, FulfilmentLoad
from tests.integration.landing import Run, for_test
from tests.integration.warehouse import Warehouse, poll


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

    def load(self, conn: psycopg.Connection[Any], seed: int = 0) -> FulfilmentLoad:
        """A load generator of this test's tag, writing on ``conn`` (not autocommit: one
        transaction per step)."""
        return FulfilmentLoad(conn, self.tag, seed=seed)

    def source_rows(self, table: str) -> Rows:
        rows = select(self.source_conn, table, self.tag, sql.Identifier("fulfilment", table))
        return by_key(rows, table)

    def state_rows(self, table: str) -> Rows:
        rows = select(self.warehouse.conn, table, self.tag,
                      sql.Identifier("public", self.state_table(table)))
        return by_key(rows, table)

    def change_rows(self, table: str) -> list[dict[str, Any]]:
        return select(self.warehouse.conn, table, self.tag,
                      sql.Identifier("public", self.changes_table(table)), order_by="change_lsn")

    def slot_state(self) -> tuple[bool, int] | None:
        """(active, bytes of WAL the slot holds) or None while it does not exist."""
        row = self.source_conn.execute(
            "SELECT active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint"
            " FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)).fetchone()
        return None if row is None else (bool(row[0]), int(row[1] or 0))

    def wait_equal(self, timeout: float) -> None:
        poll(lambda: [d for t in TABLES
                      for d in differences(self.source_rows(t), self.state_rows(t), t)],
             lambda d: not d, timeout, "the warehouse's state tables to equal the source's")


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
        # The test may have replaced the connection (after restarting the server).
        conn = pipeline.source_conn
        _drop_slot(pipeline)
        conn.execute(f"DROP PUBLICATION IF EXISTS {source.config['publication.name']}")
        for table in ("picks", "totes", "robots", "conveyor_segments"):  # references first
            where, params = tag_filter(table, pipeline.tag)
            conn.execute(sql.SQL("DELETE FROM {} WHERE {}").format(
                sql.Identifier("fulfilment", table), where), params)


def _drop_slot(pipeline: Pipeline) -> None:
    # A deleted connector's walsender lets go of the slot a moment later.
    state = poll(pipeline.slot_state, lambda s: s is None or not s[0], 60,
                 f"slot {pipeline.slot} to be released")
    if state is not None:
        pipeline.source_conn.execute("SELECT pg_drop_replication_slot(%s)", (pipeline.slot,))
