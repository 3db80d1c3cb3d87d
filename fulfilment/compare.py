"""What landed against what the source holds: the fulfilment centre's tables compared with
the warehouse's state tables, and a change table checked for "every committed change once".

Rows are picked by a load's tag (``fulfilment.load``), so a comparison sees one run's rows
even when several share the database. Used by the demo, the CDC tests and the benchmark.
"""
from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql

from .load import ORDER_SPAN, order_base

KEYS = {"robots": ("robot_id",), "conveyor_segments": ("segment_id",),
        "totes": ("tote_id",), "picks": ("order_id", "line_no")}
# Columns the pipeline adds to landed rows; the source has none of them.
LANDING = frozenset({"change_op", "change_lsn", "change_deleted", "occurred_at", "accepted_at",
                     "landed_at", "__connect_topic", "__connect_partition", "__connect_offset"})

Rows = dict[tuple[Any, ...], dict[str, Any]]


def normalise(value: Any) -> Any:
    """A value as a comparison should see it, whatever type each side's column has: instants
    in UTC, decimals without trailing zeros, UUIDs as text."""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def tag_filter(table: str, tag: str) -> tuple[sql.Composable, tuple[Any, ...]]:
    """The WHERE clause (and its parameters) that picks one tag's rows of ``table``."""
    if table == "picks":
        base = order_base(tag)
        return sql.SQL("order_id >= %s AND order_id < %s"), (base, base + ORDER_SPAN)
    column = {"robots": "robot_id", "conveyor_segments": "segment_id", "totes": "barcode"}[table]
    return sql.SQL("{} LIKE %s").format(sql.Identifier(column)), (f"{tag}-%",)


def _exists(conn: psycopg.Connection[Any], table: sql.Identifier) -> bool:
    row = conn.execute(sql.SQL("SELECT to_regclass({})").format(
        sql.Literal(table.as_string(conn))), ()).fetchone()
    return bool(row and row[0])


def select(conn: psycopg.Connection[Any], table: str, tag: str, relation: sql.Identifier,
           order_by: str | None = None) -> list[dict[str, Any]]:
    """One tag's rows of ``relation`` (a source table or a landed one of ``table``'s rows);
    none when the relation does not exist yet (a sink creates it with its first row)."""
    if not _exists(conn, relation):
        return []
    where, params = tag_filter(table, tag)
    query = sql.SQL("SELECT * FROM {} WHERE {}").format(relation, where)
    if order_by:
        query += sql.SQL(" ORDER BY {}").format(sql.Identifier(order_by))
    cur = conn.execute(query, params)
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def by_key(rows: list[dict[str, Any]], table: str) -> Rows:
    return {tuple(normalise(r[k]) for k in KEYS[table]):
            {c: v for c, v in r.items() if c not in LANDING} for r in rows}


def differences(source: Rows, landed: Rows, table: str) -> list[str]:
    """How the landed state differs from the source's rows: [] when they are equal."""
    out = [f"{table}: {k} missing" for k in source.keys() - landed.keys()]
    out += [f"{table}: {k} should be deleted" for k in landed.keys() - source.keys()]
    for key in source.keys() & landed.keys():
        for column, value in source[key].items():
            if normalise(value) != normalise(landed[key].get(column)):
                out.append(f"{table} {key}.{column}: source {value!r}, "
                           f"warehouse {landed[key].get(column)!r}")
    return out


def history_faults(rows: list[dict[str, Any]], table: str) -> tuple[Counter[str], list[str]]:
    """Per operation, the streamed changes in a change table (snapshot reads left out), and
    every way the history breaks "each committed change once": per row, a version seen twice,
    a gap between versions, an insert that is not version 1, or more than one delete."""
    ops: Counter[str] = Counter()
    faults: list[str] = []
    grouped: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(tuple(normalise(row[k]) for k in KEYS[table]), []).append(row)
    for key, changes in grouped.items():
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
