"""Snowplow good events land as one table per event kind, loader-style; bad rows in their
own table; a replay adds no rows."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson, StructuredEvent

from connectors import deploy
from connectors.configs import ConnectorFile
from devstack.stack import Stack
from tests.integration.landing import Run, for_test, table
from tests.integration.warehouse import Warehouse, poll

from .bridges import SnowplowWriter

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0"
DEVICE = "iglu:com.conveyor.grocer/device/jsonschema/1-0-0"


@pytest.fixture
def writer(stack: Stack, run: Run) -> Iterator[SnowplowWriter]:
    w = SnowplowWriter(stack, f"{run.prefix}.snowplow", f"itest-{run.token}")
    yield w
    w.close()


def _events(run: Run) -> tuple[list[dict[str, str]], dict[str, list[str]]]:
    """What a shop's tracker sends: page views, orders with a device context, a struct
    event, and two orders its schema rejects."""
    tracker, emitter = SnowplowWriter.tracker()
    device = SelfDescribingJson(DEVICE, {"device_id": f"phone-{run.token}", "kind": "phone"})
    ids: dict[str, list[str]] = {"page_view": [], "order": [], "struct": [], "rejected": []}
    for i in range(6):
        ids["page_view"].append(tracker.track(PageView(
            page_url=f"https://shop.example/p/{i}", page_title=f"Product {i}")) or "")
    for i in range(4):
        ids["order"].append(tracker.track(SelfDescribing(SelfDescribingJson(ORDER, {
            "order_id": f"o-{run.token}-{i}", "total": 10.5 + i, "currency": "EUR",
            "items": i + 1}), context=[device])) or "")
    ids["struct"].append(tracker.track(StructuredEvent(
        category="basket", action="add", label="sku-1", value=2.0)) or "")
    for i in range(2):
        ids["rejected"].append(tracker.track(SelfDescribing(SelfDescribingJson(ORDER, {
            "order_id": f"bad-{i}", "total": -1, "currency": "euro", "items": 0}))) or "")
    return emitter.events, ids


def test_good_events_and_bad_rows_land_in_their_tables(
        stack: Stack, run: Run, writer: SnowplowWriter, warehouse: Warehouse,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    events, ids = _events(run)
    good, bad = writer.post(events)
    assert bad == len(ids["rejected"])
    # A request that is not a tracker payload at all: one bad row for the whole request.
    _, whole = writer.post(body=b'{"schema": "iglu:com.acme/not_payload_data/jsonschema/1-0-0"')
    assert whole == 1

    deployed(for_test("snowplow-events.json", run))
    deployed(for_test("snowplow-bad-rows.json", run))

    views = warehouse.wait_count(table(run, "snowplow", "page_view"), len(ids["page_view"]))
    orders_table = table(run, "snowplow", "com.conveyor.grocer/order_placed")
    orders = warehouse.wait_count(orders_table, len(ids["order"]))
    structs = warehouse.wait_count(table(run, "snowplow", "struct"), 1)
    bad_table = f"{run.prefix}_snowplow_bad_rows"
    bad_rows = warehouse.wait_count(bad_table, 3)

    assert sorted(r["event_id"] for r in views) == sorted(ids["page_view"])
    assert {r["page_title"] for r in views} == {f"Product {i}" for i in range(6)}
    assert all(r["event"] == "page_view" and r["app_id"] == "shop" for r in views)
    vcols = warehouse.columns(table(run, "snowplow", "page_view"))
    for ts in ("collector_tstamp", "dvce_created_tstamp", "accepted_at", "landed_at"):
        assert vcols[ts].startswith("timestamp"), (ts, vcols[ts])
    assert vcols["anonymous"] == "boolean" and vcols["domain_sessionidx"] == "integer"
    assert json.loads(views[0]["params"])["tna"] == "itest"

    # Loader-style columns: the self-describing event and each context, named by schema.
    ocols = warehouse.columns(orders_table)
    unstruct = "unstruct_event_com_conveyor_grocer_order_placed_1"
    ctx = "contexts_com_conveyor_grocer_device_1"
    assert ocols[unstruct] == "text" and ocols[ctx] == "text"
    assert "unstruct_event" not in ocols and "contexts" not in ocols
    assert sorted(r["event_id"] for r in orders) == sorted(ids["order"])
    assert sorted(json.loads(r[unstruct])["order_id"] for r in orders) == sorted(
        f"o-{run.token}-{i}" for i in range(4))
    assert all(json.loads(r[ctx]) == [{"device_id": f"phone-{run.token}", "kind": "phone"}]
               for r in orders)
    assert all(r["event_type"] == "com.conveyor.grocer/order_placed" for r in orders)
    assert structs[0]["se_category"] == "basket" and structs[0]["se_value"] == 2.0

    # Bad rows: the collector's JSON as it wrote it, keyed by the event id where it had one.
    assert warehouse.primary_key(bad_table) == ["event_id"]
    docs = {r["event_id"]: json.loads(r["bad_row"]) for r in bad_rows}
    rejected = {k: v for k, v in docs.items() if k in ids["rejected"]}
    assert sorted(rejected) == sorted(ids["rejected"])
    for doc in rejected.values():
        assert doc["data"]["check"] == "schema" and doc["data"]["reason"] == "schema_violation"
    (whole_row,) = [d for k, d in docs.items() if k not in ids["rejected"]]
    assert whole_row["data"]["check"] == "protocol"
    assert {r["bad_row_check"] for r in bad_rows} == {"schema", "protocol"}
    assert len(good) == len(ids["page_view"]) + len(ids["order"]) + len(ids["struct"])


def test_replayed_events_add_no_rows(
        stack: Stack, run: Run, writer: SnowplowWriter, warehouse: Warehouse,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    events, ids = _events(run)
    writer.post(events)
    deployed(for_test("snowplow-events.json", run))
    t = table(run, "snowplow", "page_view")
    first = {r["event_id"]: r for r in warehouse.wait_count(t, len(ids["page_view"]))}

    # A second collector replica without the shared ledger accepts the tracker's retry of
    # the same request: every event is in Kafka twice.
    replica = SnowplowWriter(stack, f"{run.prefix}.snowplow", f"itest-{run.token}-2")
    try:
        replica.post(events)
    finally:
        replica.close()
    rows = poll(lambda: warehouse.rows(t),
                lambda rs: all(r["accepted_at"] > first[r["event_id"]]["accepted_at"]
                               for r in rs), 120, f"the replay to be written to {t}")
    assert sorted(r["event_id"] for r in rows) == sorted(first)

