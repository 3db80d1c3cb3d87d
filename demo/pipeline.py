"""The whole pipeline on the local stack: events in through both bridges, rows out in PostgreSQL.

1. Apply the local connector profile (connectors/configs/local) and wait until it runs.
2. Publish a realistic mix through RabbitMQ (orders, robot telemetry, and some messages the
   bridge must dead-letter) and send Snowplow events with the real tracker (page views,
   structured events, self-describing orders with a device context, and orders the schema
   rejects), and write a few seconds of the fulfilment centre's changes (robots, conveyor
   segments, totes, picks) to its database, which Debezium's source streams.
3. Wait until every good event is a row, the fulfilment centre's state tables equal its
   database table by table, and every bad one is counted where it belongs,
   then report rows per table, delivery latency (landed_at - accepted_at) p50/p99, and the
   bad-row counts, each checked against what was sent.

Only this run's events are counted (by event_id), so the demo can run again and again.
"""

from __future__ import annotations

import json
import statistics
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pika
import psycopg
import requests
from psycopg import sql
from snowplow_tracker import (
    Emitter,
    PageView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Tracker,
)

from connectors import deploy
from connectors.configs import load_profile
from connectors.rest import ConnectClient
from devstack.committed import consume_committed
from devstack.stack import Stack, wait_until
from devstack.topology import declare_topology
from fulfilment.compare import by_key, differences, select
from fulfilment.load import TABLES, FulfilmentLoad, Tally
from fulfilment.load import run as run_load

ORDERS, ROBOT_READINGS, RMQ_POISON = 300, 200, 6
PAGE_VIEWS, STRUCT_EVENTS, SP_ORDERS, SP_REJECTED = 120, 60, 40, 5
# The compose bridge's exchange and queue (sidecar/rabbitmq/examples/compose.yaml declares
# them with the same arguments); declared here too, so publishing never depends on the
# bridge having connected first.
EXCHANGE, QUEUE = "events", "conveyor.events"
RMQ_DLQ = "conveyor.dlq.rabbitmq.events"
SP_ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0"
SP_DEVICE = "iglu:com.conveyor.grocer/device/jsonschema/1-0-0"
LANDING_TIMEOUT_S = 300.0
# The fulfilment centre's load: transactions per second, for this long.
FULFILMENT_RATE, FULFILMENT_SECONDS = 40, 5.0


@dataclass
class Expected:
    """What this run sent, by warehouse table, plus the bad ones by where they must show."""

    rows: dict[str, set[str]] = field(default_factory=dict)
    rmq_poison: set[str] = field(default_factory=set)
    snowplow_bad: int = 0

    def add(self, table: str, event_id: str) -> None:
        self.rows.setdefault(table, set()).add(event_id)


def apply_connectors(stack: Stack) -> list[str]:
    client = ConnectClient(stack.connect_url)
    lines = []
    for connector in load_profile("local"):
        result = deploy.apply(client, connector)
        lines.append(f"{connector.name}: {result.action}")
    return lines


def publish_rabbitmq(stack: Stack, run: str, expected: Expected) -> None:
    declare_topology(stack.rabbitmq_url, QUEUE, EXCHANGE)
    conn = pika.BlockingConnection(pika.URLParameters(stack.rabbitmq_url))
    channel = conn.channel()
    channel.confirm_delivery()  # a publish returns only once RabbitMQ has it

    def publish(routing_key: str, body: bytes, message_id: str) -> None:
        channel.basic_publish(EXCHANGE, routing_key, body, pika.BasicProperties(
            message_id=message_id, delivery_mode=2, content_type="application/json"),
            mandatory=True)

    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    for i in range(ORDERS):
        event_id = f"{run}-order-{i}"
        publish("order.placed", json.dumps({
            "order_id": f"{run}-o{i}", "customer_id": f"c{i % 37}", "total_cents": 1000 + i,
            "currency": "EUR", "items": [{"sku": f"sku-{i % 11}", "quantity": 1 + i % 3}],
            "placed_at": now}).encode(), event_id)
        expected.add("rabbitmq_order_placed", event_id)
    for i in range(ROBOT_READINGS):
        event_id = f"{run}-robot-{i}"
        publish(f"robot.telemetry.r{i % 8}", json.dumps({
            "robot_id": f"r{i % 8}", "ts": now, "battery_pct": 100 - i % 100,
            "zone": f"aisle-{i % 5}"}).encode(), event_id)
        expected.add("rabbitmq_robot_telemetry", event_id)
    poison = [(b"{not json", "undecodable"), (json.dumps({"order_id": "x"}).encode(), "schema")]
    for i in range(RMQ_POISON):
        body, _why = poison[i % len(poison)]
        event_id = f"{run}-poison-{i}"
        publish("order.placed", body, event_id)
        expected.rmq_poison.add(event_id)
    conn.close()


def send_snowplow(stack: Stack, run: str, expected: Expected) -> None:
    sent_ok: list[str] = []
    failed: list[str] = []
    emitter = Emitter(stack.collector_url.split("://", 1)[1], protocol="http", method="post",
                      batch_size=10, request_timeout=10, session=requests.Session(),
                      on_success=lambda evs: sent_ok.extend(e["eid"] for e in evs),
                      on_failure=lambda _n, evs: failed.extend(e["eid"] for e in evs))
    tracker = Tracker("demo", emitter, app_id="shop")
    device = SelfDescribingJson(SP_DEVICE, {"device_id": f"phone-{run}", "kind": "phone"})
    for i in range(PAGE_VIEWS):
        expected.add("snowplow_page_view", tracker.track(PageView(
            page_url=f"https://shop.example/p/{i}", page_title=f"Product {i}")))
    for i in range(STRUCT_EVENTS):
        expected.add("snowplow_struct", tracker.track(StructuredEvent(
            category="basket", action="add", label=f"sku-{i}", value=float(i))))
    for i in range(SP_ORDERS):
        expected.add("snowplow_com_conveyor_grocer_order_placed", tracker.track(SelfDescribing(
            SelfDescribingJson(SP_ORDER, {"order_id": f"{run}-sp{i}", "total": 10.0 + i,
                                          "currency": "EUR", "items": 1 + i % 4}),
            context=[device])))
    for i in range(SP_REJECTED):  # negative total, lower-case currency: the schema says no
        tracker.track(SelfDescribing(SelfDescribingJson(SP_ORDER, {
            "order_id": f"{run}-bad{i}", "total": -1, "currency": "euro", "items": 0})))
    expected.snowplow_bad += SP_REJECTED
    emitter.flush()
    wait_until(lambda: emitter.event_store.size() == 0 and not emitter.retry_timer.is_active(),
               60, "the tracker to deliver its events", pause=0.2)
    if failed:
        raise RuntimeError(f"the collector refused {len(failed)} events")
    # One request that is not a tracker payload at all: one bad row for the whole request.
    resp = httpx.post(f"{stack.collector_url}/com.snowplowanalytics.snowplow/tp2",
                      content=b'{"schema": "broken', headers={"Content-Type": "application/json"})
    resp.raise_for_status()
    expected.snowplow_bad += 1


def _rows(conn: psycopg.Connection, table: str, ids: set[str]) -> list[tuple]:
    if not conn.execute("SELECT to_regclass(%s)", (f'"{table}"',)).fetchone()[0]:
        return []
    return conn.execute(
        f'SELECT event_id, EXTRACT(EPOCH FROM (landed_at - accepted_at)) FROM "{table}" '
        "WHERE event_id = ANY(%s)", (list(ids),)).fetchall()


def _atomic_events(conn: psycopg.Connection, ids: set[str]) -> int:
    """This run's Snowplow events in Snowplow's own layout (atomic.events)."""
    if not conn.execute("SELECT to_regclass('atomic.events')").fetchone()[0]:
        return 0
    return conn.execute("SELECT count(*) FROM atomic.events WHERE event_id = ANY(%s::uuid[])",
                        (list(ids),)).fetchone()[0]


def _snowplow_bad_rows(conn: psycopg.Connection, since: datetime) -> int:
    if not conn.execute("SELECT to_regclass('snowplow_bad_rows')").fetchone()[0]:
        return 0
    # Bad rows carry the time the collector received them; count this run's.
    return conn.execute(
        "SELECT count(*) FROM snowplow_bad_rows "
        "WHERE (bad_row::jsonb -> 'data' ->> 'received_at')::timestamptz >= %s",
        (since,)).fetchone()[0]


def _dead_lettered(stack: Stack, ids: set[str]) -> dict[str, str]:
    """event_id -> reason, for this run's poison messages in the bridge's dead-letter topic."""
    found: dict[str, str] = {}
    for msg in consume_committed(stack.kafka_bootstrap, RMQ_DLQ, group="demo-dlq"):
        headers = {k: (v or b"").decode(errors="replace") for k, v in msg.headers() or []}
        event_id = headers.get("conveyor.event_id", "")
        if event_id in ids:
            found[event_id] = headers.get("conveyor.dlq.reason", "?")
    return found


def write_fulfilment(stack: Stack, tag: str) -> Tally:
    """A few seconds of the fulfilment centre's writes, every key tagged with ``tag``, once
    the source connector holds its slot: from then on every commit is streamed as a change
    (before it, a commit would only be part of the initial snapshot)."""
    (cdc,) = [c for c in load_profile("local") if c.name == "fulfilment-cdc"]
    with psycopg.connect(stack.fulfilment_dsn) as conn:
        def streaming() -> bool:
            row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s",
                               (cdc.config["slot.name"],)).fetchone()
            conn.rollback()
            return bool(row and row[0])

        wait_until(streaming, 120, "the CDC source to hold its replication slot", pause=0.5)
        load = FulfilmentLoad(conn, tag)
        load.setup()
        return run_load(load, FULFILMENT_RATE, FULFILMENT_SECONDS)


def _fulfilment_differences(source: psycopg.Connection, warehouse: psycopg.Connection,
                            tag: str) -> list[str]:
    out: list[str] = []
    for table in TABLES:
        src = by_key(select(source, table, tag, sql.Identifier("fulfilment", table)), table)
        landed = by_key(select(warehouse, table, tag,
                               sql.Identifier("public", f"fulfilment_{table}")), table)
        out += differences(src, landed, table)
    return out


def _fulfilment_delays(warehouse: psycopg.Connection, tag: str) -> list[float]:
    """Commit (occurred_at) to row (landed_at), in seconds, of the tag's changes."""
    delays: list[float] = []
    for table in TABLES:
        for row in select(warehouse, table, tag,
                          sql.Identifier("public", f"fulfilment_{table}_changes")):
            delays.append((row["landed_at"] - row["occurred_at"]).total_seconds())
    return delays


def _p50_p99(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (0.0, 0.0)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return cuts[49], cuts[98]


def run(stack: Stack, say: Callable[[str], None] = print) -> list[tuple[str, bool, str]]:
    token = uuid.uuid4().hex[:6]
    started = datetime.now(UTC)
    expected = Expected()
    say("== Connectors (connectors/configs/local)")
    for line in apply_connectors(stack):
        say(f"   {line}")
    say("== Publishing")
    publish_rabbitmq(stack, f"demo-{token}", expected)
    say(f"   RabbitMQ: {ORDERS} orders, {ROBOT_READINGS} robot readings, {RMQ_POISON} poison")
    send_snowplow(stack, f"demo-{token}", expected)
    say(f"   Snowplow tracker: {PAGE_VIEWS} page views, {STRUCT_EVENTS} structured events, "
        f"{SP_ORDERS} orders with a device context, {SP_REJECTED} orders the schema rejects, "
        "1 malformed request")
    tag = f"DEMO{token}".upper()
    try:
        tally = write_fulfilment(stack, tag)
    except TimeoutError as exc:
        say(f"   fulfilment centre: nothing written: {exc}")
        tally = Tally()
    say(f"   fulfilment centre: {tally.total} changes committed in {FULFILMENT_SECONDS:.0f}s "
        f"(robots, conveyor segments, totes, picks; tag {tag})")

    say("== Waiting for every event to land")
    landed: dict[str, list[tuple]] = {}
    snowplow_ids = set().union(*(ids for t, ids in expected.rows.items()
                                 if t.startswith("snowplow_")))
    differ: list[str] = []
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn, \
            psycopg.connect(stack.fulfilment_dsn, autocommit=True) as source:
        def all_landed() -> bool:
            for table, ids in expected.rows.items():
                landed[table] = _rows(conn, table, ids)
            differ[:] = _fulfilment_differences(source, conn, tag)
            return (all(len(landed[t]) >= len(ids) for t, ids in expected.rows.items())
                    and _snowplow_bad_rows(conn, started) >= expected.snowplow_bad
                    and _atomic_events(conn, snowplow_ids) >= len(snowplow_ids)
                    and not differ)
        try:
            wait_until(all_landed, LANDING_TIMEOUT_S, "every event to land", pause=1.0)
        except TimeoutError as exc:
            say(f"   {exc}")
        bad_rows = _snowplow_bad_rows(conn, started)
        atomic = _atomic_events(conn, snowplow_ids)
        delays = _fulfilment_delays(conn, tag)
    took = (datetime.now(UTC) - started).total_seconds()
    say(f"   done in {took:.0f}s")

    results = []
    for table, ids in sorted(expected.rows.items()):
        rows = landed.get(table, [])
        got = {r[0] for r in rows}
        latencies = [float(r[1]) for r in rows if r[1] is not None]
        ok = got == ids and len(rows) == len(ids)
        p50, p99 = _p50_p99(latencies)
        results.append((table, ok, f"{len(got)}/{len(ids)} rows, "
                        f"latency p50 {p50:.2f}s p99 {p99:.2f}s"))
    dlq = _dead_lettered(stack, expected.rmq_poison)
    reasons = sorted(set(dlq.values()))
    results.append((RMQ_DLQ, set(dlq) == expected.rmq_poison,
                    f"{len(dlq)}/{len(expected.rmq_poison)} poison messages dead-lettered "
                    f"(reasons: {', '.join(reasons) or 'none'})"))
    results.append(("atomic.events", atomic == len(snowplow_ids),
                    f"{atomic}/{len(snowplow_ids)} Snowplow events in Snowplow's own layout"))
    results.append(("snowplow_bad_rows", bad_rows == expected.snowplow_bad,
                    f"{bad_rows}/{expected.snowplow_bad} bad rows"))
    p50, p99 = _p50_p99(delays)
    results.append(("fulfilment_*", tally.total > 0 and not differ and len(delays) == tally.total,
                    f"{len(delays)}/{tally.total} changes in the change tables, state tables "
                    + ("equal to the source's" if not differ else f"differ ({differ[0]})")
                    + f"; commit to row p50 {p50:.2f}s p99 {p99:.2f}s"))
    return results
