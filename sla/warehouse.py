"""PostgreSQL side of a scrape: which tables hold landed events, how old each one's newest
row is, and how long the rows landed since the last scrape took.

What the sinks write (connectors/configs, EnvelopeUnwrap): every event table has
``accepted_at`` (when a bridge took the event) and ``landed_at`` (stamped by the sink's
transform as it converts the record). There is no column for the moment a row became
visible, and PostgreSQL's commit timestamps are off by default (``track_commit_timestamp``),
so ``landed_at`` stands for it: the JDBC sink converts a batch and commits it at once, so
landed_at precedes visibility by the time to write one batch (≤ 2000 rows, well under a
second here). A row is counted in the landing histogram once its landed_at is
``settle_seconds`` older than the database's clock, so a batch still being written when one
scrape runs is counted by the next one, never missed and never twice: each scrape counts the
window (previous cutoff, this cutoff].

One query per table per scrape (the freshness as a scalar subquery next to the histogram's
aggregate), each under ``statement_timeout``; the table list is cached. ``max(accepted_at)``
and the landed_at window are index scans where the table has indexes on those columns
(advised for big tables), else sequential scans cut off by the timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from .core import included
from .kafka import SourceDown

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Table:
    name: str
    accepted_type: str          # timestamp with/without time zone
    landed_type: str | None     # None: freshness only, no landing histogram


@dataclass(frozen=True)
class TableReading:
    table: str
    newest_accepted_s: float | None   # epoch seconds; None: no rows
    db_now_s: float
    cutoff_s: float                    # this scrape's window ends here
    cumulative: list[int]              # rows at or under each bucket, in the window
    count: int
    total_s: float


def _as_timestamp(column_type: str) -> sql.Composable:
    """An epoch-seconds parameter as a value comparable with a column of this type, so
    the comparison can use an index (a timestamp without time zone holds UTC here)."""
    if column_type == "timestamp without time zone":
        return sql.SQL("(to_timestamp(%s) AT TIME ZONE 'UTC')")
    return sql.SQL("to_timestamp(%s)")


class Warehouse:
    def __init__(self, conninfo: dict[str, Any], schema: str) -> None:
        self._conninfo = conninfo
        self._schema = schema
        self._conn: psycopg.Connection[Any] | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(**self._conninfo, autocommit=True)
            except psycopg.Error as exc:
                # psycopg's message names host and user, never the password.
                raise SourceDown(f"PostgreSQL: {str(exc).strip()}") from exc
        return self._conn

    def _drop_broken(self) -> None:
        if self._conn is not None and self._conn.broken:
            self.close()

    def tables(self, patterns: Sequence[str], limit: int) -> list[Table]:
        try:
            rows = self._connection().execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND column_name IN ('accepted_at', 'landed_at') "
                "AND data_type LIKE 'timestamp%%' ORDER BY table_name", (self._schema,)
            ).fetchall()
        except psycopg.Error as exc:
            self._drop_broken()
            raise SourceDown(f"PostgreSQL table list: {str(exc).strip()}") from exc
        cols: dict[str, dict[str, str]] = {}
        for name, column, kind in rows:
            if included(name, patterns):
                cols.setdefault(name, {})[column] = kind
        found = [Table(n, c["accepted_at"], c.get("landed_at"))
                 for n, c in sorted(cols.items()) if "accepted_at" in c]
        if len(found) > limit:
            log.warning("sla.tables_capped", extra={"found": len(found), "max_tables": limit})
        return found[:limit]

    def find(self, table: str, event_ids: list[str]) -> dict[str, float]:
        """The rows with these event ids: event_id -> landed_at (epoch s). A table that does
        not exist yet has none (a sink creates it with its first row). One query, by the
        sinks' primary key (event_id): an index lookup per id."""
        query = sql.SQL(
            "SELECT event_id::text, extract(epoch FROM landed_at)::float8 FROM {t} "
            "WHERE event_id = ANY(%s) AND landed_at IS NOT NULL").format(
            t=sql.Identifier(self._schema, table))
        try:
            rows = self._connection().execute(query, (event_ids,)).fetchall()
        except psycopg.errors.UndefinedTable:
            return {}
        except psycopg.Error as exc:
            self._drop_broken()
            raise SourceDown(f"PostgreSQL canaries in {table}: {str(exc).strip()}") from exc
        return {str(event_id): float(landed) for event_id, landed in rows}

    def read(self, table: Table, since_s: float | None, settle_s: float,
             buckets: Sequence[float]) -> TableReading:
        """Freshness now, and the landing delays of rows landed in (since, now - settle].
        ``since`` None: the first scrape of this table, which only sets the cutoff."""
        ident = sql.Identifier(self._schema, table.name)
        delay = sql.SQL("extract(epoch FROM landed_at - accepted_at)")
        if table.landed_type is not None and since_s is not None:
            per_bucket = sql.SQL(", ").join(
                sql.SQL("count(*) FILTER (WHERE {} <= {})").format(delay, sql.Literal(b))
                for b in buckets)
            window = sql.SQL(
                "SELECT {per_bucket}, count(*), coalesce(sum({delay}), 0) FROM {t} "
                "WHERE landed_at > {since} AND landed_at <= {cutoff}").format(
                per_bucket=per_bucket, delay=delay, t=ident,
                since=_as_timestamp(table.landed_type),
                cutoff=_as_timestamp(table.landed_type))
        else:
            window = sql.SQL("SELECT {zeros}, 0, 0").format(
                zeros=sql.SQL(", ").join(sql.Literal(0) for _ in buckets))
        query = sql.SQL(
            "WITH clock AS (SELECT extract(epoch FROM now())::float8 AS now_s), "
            "w AS ({window}) "
            "SELECT (SELECT extract(epoch FROM max(accepted_at))::float8 FROM {t}), "
            "clock.now_s, w.* FROM clock, w").format(window=window, t=ident)
        try:
            conn = self._connection()
            now_s = conn.execute("SELECT extract(epoch FROM now())::float8").fetchone()
            assert now_s is not None
            cutoff = float(now_s[0]) - settle_s
            params: tuple[Any, ...] = ()
            if table.landed_type is not None and since_s is not None:
                params = (since_s, cutoff)
            row = conn.execute(query, params).fetchone()
        except psycopg.errors.UndefinedTable as exc:
            raise LookupError(table.name) from exc
        except psycopg.Error as exc:
            self._drop_broken()
            raise SourceDown(f"PostgreSQL {table.name}: {str(exc).strip()}") from exc
        assert row is not None
        n = len(buckets)
        newest, db_now = row[0], float(row[1])
        return TableReading(table.name, None if newest is None else float(newest), db_now,
                            cutoff, [int(c) for c in row[2:2 + n]], int(row[2 + n]),
                            float(row[3 + n]))
