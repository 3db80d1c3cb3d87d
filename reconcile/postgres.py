"""A PostgreSQL table as one side of a reconciliation: its bucket summaries and, for the
buckets that differ, its rows' digests. Two queries, both scans of the window only.

Bucket indexes are ``floor(date_part('epoch', t) / size)``: float8 arithmetic, the same
a topic's side does in Python, and several times cheaper than ``extract``'s numeric.

Values are compared as text (``col::text``) in UTC: both sides must render equal values
alike. A legacy pipeline that stored a number as text, or a time in another zone, needs a
view (or ``--old-column`` names an expression's view column) that normalises it first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from psycopg import sql

from .core import RowDigest, Summary


class SideError(Exception):
    """The table, a column or the predicate is wrong: nothing was compared."""


@dataclass(frozen=True)
class Side:
    """One landing: a table and which of its columns mean what."""

    dsn: str = field(repr=False)
    table: str
    id: str = "event_id"
    time: str = "accepted_at"
    landed: str | None = "landed_at"
    columns: tuple[str, ...] = ()        # compared, paired by position with the other side
    where: str | None = None             # an operator's SQL predicate, e.g. no canaries
    label: str = ""
    exclude_id_prefix: str | None = None  # ids starting so are left out (canaries)

    def _table(self) -> sql.Composable:
        return sql.SQL(".").join(sql.Identifier(p) for p in self.table.split("."))

    def _values(self) -> sql.Composable:
        if not self.columns:
            return sql.SQL("''")
        return sql.SQL(" || '|' || ").join(
            sql.SQL("coalesce({}::text, '\\N')").format(sql.Identifier(c))
            for c in self.columns)

    def _filter(self, *extra: sql.Composable) -> sql.Composable:
        base = sql.SQL("{t} >= %(lo)s AND {t} < %(hi)s").format(t=sql.Identifier(self.time))
        if self.exclude_id_prefix:
            base = sql.SQL("{} AND NOT starts_with({}::text, {})").format(
                base, sql.Identifier(self.id), sql.Literal(self.exclude_id_prefix))
        for e in extra:
            base = sql.SQL("{} AND {}").format(base, e)
        if self.where:
            return sql.SQL("{} AND ({})").format(base, sql.SQL(self.where))
        return base

    def _in_buckets(self, size: str, indexes: str) -> sql.Composable:
        """The row's event time is in one of the buckets of a size (both parameters)."""
        return sql.SQL("floor(date_part('epoch', {t}) / %({s})s)::bigint = ANY(%({i})s)"
                       ).format(t=sql.Identifier(self.time), s=sql.SQL(size),
                                i=sql.SQL(indexes))

    def summary_query(self, within: bool = False, finer: bool = False) -> sql.Composed:
        """Per bucket; with ``finer``, per sub-bucket too (GROUPING SETS: the rows are
        hashed once for both), rows with a NULL first column then being sub-buckets."""
        late = (sql.SQL("{l} - {t} > %(sla)s").format(l=sql.Identifier(self.landed),
                                                      t=sql.Identifier(self.time))
                if self.landed else sql.SQL("false"))
        if finer:
            return sql.SQL("""
            SELECT b, sub, count(*), count(DISTINCT id),
                   coalesce(sum(h), 0)::text, count(*) FILTER (WHERE late)
            FROM (SELECT floor(date_part('epoch', {t}) / %(bucket)s)::bigint AS b,
                         floor(date_part('epoch', {t}) / %(finer)s)::bigint AS sub,
                         {id}::text AS id,
                         ('x' || substr(md5({id}::text || '|' || {values}), 1, 15))
                             ::bit(60)::bigint AS h,
                         {late} AS late
                  FROM {table} WHERE {filter}) s
            GROUP BY GROUPING SETS ((b), (sub))""").format(
                t=sql.Identifier(self.time), id=sql.Identifier(self.id),
                values=self._values(), late=late, table=self._table(),
                filter=self._filter())
        return sql.SQL("""
            SELECT floor(date_part('epoch', t) / %(bucket)s)::bigint AS b,
                   count(*), count(DISTINCT id),
                   coalesce(sum(h), 0)::text, count(*) FILTER (WHERE late)
            FROM (SELECT {t} AS t, {id}::text AS id,
                         ('x' || substr(md5({id}::text || '|' || {values}), 1, 15))
                             ::bit(60)::bigint AS h,
                         {late} AS late
                  FROM {table} WHERE {filter}) s
            GROUP BY 1""").format(t=sql.Identifier(self.time), id=sql.Identifier(self.id),
                                  values=self._values(), late=late, table=self._table(),
                                  filter=self._filter(*(
                                      [self._in_buckets("wsize", "within")] if within
                                      else [])))

    def ids_query(self) -> sql.Composed:
        return sql.SQL("SELECT DISTINCT {id}::text FROM {table} WHERE {filter}").format(
            id=sql.Identifier(self.id), table=self._table(),
            filter=self._filter(self._in_buckets("size", "indexes")))

    def rows_of_query(self) -> sql.Composed:
        """Rows of some ids in some buckets, per bucket and id."""
        return sql.SQL("""
            SELECT floor(date_part('epoch', t) / %(size)s)::bigint, id, count(*),
                   array_agg(DISTINCT d)
            FROM (SELECT {t} AS t, {id}::text AS id, md5({values}) AS d
                  FROM {table} WHERE {filter}) s
            GROUP BY 1, 2""").format(
            t=sql.Identifier(self.time), id=sql.Identifier(self.id), values=self._values(),
            table=self._table(),
            filter=self._filter(self._in_buckets("size", "indexes"),
                                sql.SQL("{}::text = ANY(%(ids)s)").format(
                                    sql.Identifier(self.id))))

    def rows_query(self) -> sql.Composed:
        return sql.SQL("""
            SELECT id, count(*), array_agg(DISTINCT d)
            FROM (SELECT {id}::text AS id, md5({values}) AS d
                  FROM {table} WHERE {filter}) s
            GROUP BY id""").format(id=sql.Identifier(self.id), values=self._values(),
                                   table=self._table(), filter=self._filter())


class TableReader:
    """One connection per side, in UTC, read-only."""

    def __init__(self, side: Side, connect_timeout: int = 10) -> None:
        self.side = side
        self.conn = psycopg.connect(side.dsn, autocommit=True, connect_timeout=connect_timeout)
        self.conn.execute("SET TIME ZONE 'UTC'")
        self.conn.execute("SET default_transaction_read_only = on")

    def close(self) -> None:
        self.conn.close()

    def summaries(self, since: datetime, until: datetime, bucket: timedelta,
                  sla: timedelta, within: tuple[timedelta, list[int]] | None = None
                  ) -> dict[int, Summary]:
        """Per bucket of event time; only in the buckets of ``within`` (a coarser size and
        its indexes) when given: the drill-down's finer levels."""
        params: dict[str, object] = {"lo": since, "hi": until,
                                     "bucket": bucket.total_seconds(), "sla": sla}
        if within is not None:
            params |= {"wsize": within[0].total_seconds(), "within": within[1]}
        with self._errors():
            cur = self.conn.execute(self.side.summary_query(within is not None), params)
            return {int(b): Summary(int(n), int(ids), int(h), int(late))
                    for b, n, ids, h, late in cur.fetchall()}

    def summaries_and_finer(self, since: datetime, until: datetime, bucket: timedelta,
                            finer: timedelta, sla: timedelta
                            ) -> tuple[dict[int, Summary], dict[int, Summary]]:
        """Per bucket and per sub-bucket of ``finer``, in one pass over the rows."""
        params = {"lo": since, "hi": until, "bucket": bucket.total_seconds(),
                  "finer": finer.total_seconds(), "sla": sla}
        coarse: dict[int, Summary] = {}
        fine: dict[int, Summary] = {}
        with self._errors():
            cur = self.conn.execute(self.side.summary_query(finer=True), params)
            for b, sub, n, ids, h, late in cur.fetchall():
                s = Summary(int(n), int(ids), int(h), int(late))
                if b is None:
                    fine[int(sub)] = s
                else:
                    coarse[int(b)] = s
        return coarse, fine

    def ids(self, since: datetime, until: datetime, size: timedelta,
            indexes: list[int]) -> set[str]:
        params = {"lo": since, "hi": until, "size": size.total_seconds(), "indexes": indexes}
        with self._errors():
            return {r[0] for r in self.conn.execute(self.side.ids_query(), params)}

    def rows_of(self, since: datetime, until: datetime, bucket: timedelta,
                buckets: list[int], ids: set[str]) -> dict[int, list[RowDigest]]:
        out: dict[int, list[RowDigest]] = {b: [] for b in buckets}
        if not ids:
            return out
        params = {"lo": since, "hi": until, "size": bucket.total_seconds(),
                  "indexes": buckets, "ids": sorted(ids)}
        with self._errors():
            for b, eid, n, ds in self.conn.execute(self.side.rows_of_query(), params):
                out.setdefault(int(b), []).append(RowDigest(eid, int(n), frozenset(ds)))
        return out

    def rows(self, lo: datetime, hi: datetime) -> list[RowDigest]:
        with self._errors():
            cur = self.conn.execute(self.side.rows_query(), {"lo": lo, "hi": hi})
            return [RowDigest(eid, int(n), frozenset(ds)) for eid, n, ds in cur.fetchall()]

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn,
                psycopg.errors.SyntaxError, psycopg.errors.DatatypeMismatch,
                psycopg.errors.UndefinedFunction) as exc:
            raise SideError(f"{self.side.label or self.side.table}: "
                            f"{str(exc).splitlines()[0]}") from exc
