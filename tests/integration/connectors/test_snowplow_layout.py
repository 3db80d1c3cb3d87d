"""Snowplow's own layout on the stack: the real tracker's events through the compose
collector and enrich (``atomic.enabled``) and the local profile's warehouse-snowplow-atomic
and warehouse-snowplow-entities sinks, into PostgreSQL.

- the landed ``atomic.events`` is the open-source Postgres loader's table, column for column
  (name, type, NOT NULL), held to ``tests/contract/snowplow_postgres_loader.json``, a copy
  of the loader's ``atomicColumns``, not to our own code; in the loader's order, but for
  the sink's primary key columns, which Debezium's JDBC sink creates first;
- each entity table starts with the loader's meta columns, then ``entity_index``, then the
  schema's own properties typed by the loader's rules;
- the enriched columns hold what Snowplow documents (the same table of cases as the Kafka
  test of the enrichments), and every event and entity landed once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from snowplow_tracker import Subject

from connectors import deploy
from connectors.configs import load_profile
from connectors.rest import ConnectClient
from devstack.stack import ROOT, Stack
from sidecar.snowplow.atomic import entities
from sidecar.snowplow.iglu import Resolver, SchemaKey
from tests.integration.snowplow.helpers import flush_all, make_tracker
from tests.integration.snowplow.test_enrichments import BASKET, CASES, ORDER, UA_CONTEXT
from tests.integration.warehouse import poll

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CONTRACT = json.loads((ROOT / "tests" / "contract" / "snowplow_postgres_loader.json")
                      .read_text())
SINKS = ("warehouse-snowplow-atomic", "warehouse-snowplow-entities")
# information_schema's names for the loader's DDL types.
_PG_NAMES = {"character varying": "VARCHAR", "character": "CHAR", "uuid": "UUID",
             "timestamp without time zone": "TIMESTAMP", "integer": "INTEGER",
             "bigint": "BIGINT", "double precision": "DOUBLE PRECISION", "boolean": "BOOLEAN",
             "date": "DATE", "jsonb": "JSONB"}


def _keys(sink: str) -> list[str]:
    (connector,) = [c for c in load_profile("local") if c.name == sink]
    return str(connector.config["primary.key.fields"]).split(",")


def keys_first(cols: list[dict[str, Any]], keys: list[str]) -> list[dict[str, Any]]:
    """``cols`` as Debezium's JDBC sink orders them: the primary key's columns first."""
    by_name = {c["name"]: c for c in cols}
    return [by_name[k] for k in keys] + [c for c in cols if c["name"] not in keys]


def columns(conn: psycopg.Connection[Any], table: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT column_name, data_type, character_maximum_length, is_nullable "
        "FROM information_schema.columns WHERE table_schema = 'atomic' AND table_name = %s "
        "ORDER BY ordinal_position", (table,)).fetchall()
    out = []
    for name, data_type, length, nullable in rows:
        pg = _PG_NAMES.get(data_type, data_type)
        out.append({"name": name, "type": f"{pg}({length})" if length else pg,
                    "not_null": nullable == "NO"})
    return out


def _entity_rows(conn: psycopg.Connection[Any], table: str, app_id: str) -> int:
    if conn.execute("SELECT to_regclass(%s)", (f'atomic."{table}"',)).fetchone() == (None,):
        return 0
    row = conn.execute(f'SELECT count(*) FROM atomic."{table}" t JOIN atomic.events e '
                       "ON e.event_id = t.root_id WHERE e.app_id = %s", (app_id,)).fetchone()
    return int(row[0]) if row else 0


@pytest.fixture(scope="module")
def landed(stack: Stack) -> Iterator[tuple[psycopg.Connection[Any], str, dict[str, Any]]]:
    """The cases sent with their own app_id, landed in both tables; (connection, app_id,
    event id -> the case's expected values)."""
    client = ConnectClient(stack.connect_url)
    try:
        for connector in load_profile("local"):
            if connector.name in SINKS:
                deploy.apply(client, connector, timeout=120)
    finally:
        client.close()
    app_id = f"layout-{uuid.uuid4().hex[:8]}"
    sent: dict[str, Any] = {}
    for label, (ua, ip), event, want in CASES:
        tracker, emitter, outcomes = make_tracker(stack.collector_url.split("://")[-1],
                                                  batch_size=1, app_id=app_id)
        tracker.set_subject(Subject().set_useragent(ua).set_ip_address(ip).set_user_id("u-1"))
        eid = tracker.track(event)
        flush_all(emitter)
        assert outcomes.ok == [eid], label
        sent[eid] = (label, want)
    conn = psycopg.connect(stack.postgres_dsn, autocommit=True)
    poll(lambda: conn.execute("SELECT count(*) FROM atomic.events WHERE app_id = %s",
                              (app_id,)).fetchone()[0],  # type: ignore[index]
         lambda n: n == len(sent), 180, "every case in atomic.events")
    # each event has its ua_parser_context; the iPad one its order and basket entities too
    poll(lambda: conn.execute(
        "SELECT count(*) FROM atomic.com_snowplowanalytics_snowplow_ua_parser_context_1 u "
        "JOIN atomic.events e ON e.event_id = u.root_id WHERE e.app_id = %s",
        (app_id,)).fetchone()[0],  # type: ignore[index]
         lambda n: n == len(sent), 120, "a ua_parser_context row per event")
    # The order's entity topics are created with its first entities, later than the
    # ua_parser_context one: the sink's regex subscription sees them at its next metadata
    # refresh (10 s) and rebalance, so their rows may land after the ua rows.
    for uri in (ORDER, BASKET):
        table = entities.table_name(SchemaKey.parse(uri))
        poll(lambda t=table: _entity_rows(conn, t, app_id), lambda n: n >= 1, 120,
             f"the order's row in atomic.{table}")
    yield conn, app_id, sent
    conn.close()


def test_the_events_table_is_the_postgres_loaders(landed: Any) -> None:
    conn, _, _ = landed
    got = columns(conn, "events")
    assert {c["name"]: c for c in got} == {c["name"]: c for c in CONTRACT["columns"]}
    assert got == keys_first(CONTRACT["columns"], _keys("warehouse-snowplow-atomic"))


@pytest.mark.parametrize("uri", [ORDER, BASKET, UA_CONTEXT])
def test_each_entity_table_is_laid_out_as_the_loader_lays_it_out(landed: Any,
                                                                 uri: str) -> None:
    conn, _, _ = landed
    key = SchemaKey.parse(uri)
    got = columns(conn, entities.table_name(key))
    meta = CONTRACT["entity_meta_columns"]
    index = {"name": "entity_index", "type": "INTEGER", "not_null": True}
    own = [c for c in entities.columns(key, Resolver().lookup(key))][len(meta) + 1:]
    want = [*meta, index, *({"name": c.name, "type": c.pg_type, "not_null": c.not_null}
                            for c in own)]
    assert got == keys_first(want, _keys("warehouse-snowplow-entities"))


def test_the_enriched_columns_hold_what_snowplow_documents(landed: Any) -> None:
    conn, app_id, sent = landed
    cur = conn.execute("SELECT * FROM atomic.events WHERE app_id = %s", (app_id,))
    names = [d.name for d in cur.description or ()]
    rows = {str(r[names.index("event_id")]): dict(zip(names, r, strict=True))
            for r in cur.fetchall()}
    assert set(rows) == set(sent)
    for eid, (label, want) in sent.items():
        row = rows[eid]
        legacy = (row["br_family"], row["os_family"], row["dvce_type"], row["dvce_ismobile"])
        assert legacy == want["legacy"], label
        for name, value in want.items():
            if name in ("ua", "legacy", "order_id", "se_label"):   # pii: user_id only here
                continue
            assert row[name] == value, f"{label}: {name}"
        assert row["user_id"] not in (None, "u-1"), label          # pseudonymised
        assert row["v_collector"] and row["v_etl"] and row["etl_tstamp"], label
        assert row["collector_tstamp"] is not None and row["event_fingerprint"], label
        assert row["page_urlhost"] == ("shop.example" if row["page_url"] else None), label
    kinds = sorted(r["event"] for r in rows.values())
    assert kinds == sorted(["page_view"] * 4 + ["struct", "unstruct"])
    (order,) = [r for r in rows.values() if r["event"] == "unstruct"]
    assert (order["event_vendor"], order["event_name"], order["event_version"]) == (
        "com.conveyor.grocer", "order_placed", "1-0-0")


def test_every_entity_landed_once_under_its_event(landed: Any) -> None:
    conn, app_id, sent = landed
    (order_id,) = [eid for eid, (_, want) in sent.items() if "order_id" in want]
    counts = {}
    for uri in (ORDER, BASKET, UA_CONTEXT):
        table = entities.table_name(SchemaKey.parse(uri))
        counts[uri] = conn.execute(
            f'SELECT count(*), count(DISTINCT (t.root_id, t.entity_index)) FROM atomic."{table}" '
            "t JOIN atomic.events e ON e.event_id = t.root_id WHERE e.app_id = %s",
            (app_id,)).fetchone()
    assert counts == {ORDER: (1, 1), BASKET: (1, 1), UA_CONTEXT: (len(sent), len(sent))}
    row = conn.execute(
        'SELECT sku, quantity, root_tstamp = e.collector_tstamp FROM '
        f'atomic."{entities.table_name(SchemaKey.parse(BASKET))}" b '
        "JOIN atomic.events e ON e.event_id = b.root_id WHERE b.root_id = %s",
        (order_id,)).fetchone()
    assert row == ("sku-7", 2, True)
