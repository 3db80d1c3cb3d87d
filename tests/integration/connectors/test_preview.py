"""``conveyor-connectors preview`` against the real stack: for each local connector file, the
rows it previews are the rows the sink then really writes (table, every column's type and
value, compared with PostgreSQL), and a record it says goes to the dead-letter topic is
there with the reason it gave. A saved preview checks as a golden file."""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson

from connectors import deploy, preview
from connectors.configs import ConnectorFile
from devstack.stack import Stack
from sidecar.common.avro import AvroEncoder
from tests.integration.landing import Run, for_test, table
from tests.integration.warehouse import Warehouse, read_topic

from .bridges import RabbitMQWriter, SnowplowWriter, order

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0"


def _same(pg: Any, shown: Any) -> bool:
    """A PostgreSQL value and the preview's JSON rendering of the Connect value."""
    if pg is None or shown is None:
        return pg is None and shown is None
    if isinstance(pg, datetime):
        at = datetime.fromisoformat(str(shown).replace("Z", "+00:00"))
        return pg.replace(tzinfo=pg.tzinfo or UTC) == at
    if isinstance(pg, float):
        return math.isclose(pg, float(shown), rel_tol=1e-6)
    return bool(pg == shown)


def assert_rows_match(result: preview.Result, warehouse: Warehouse, expected_tables: set[str]
                      ) -> int:
    """Every previewed row is in its table with exactly the previewed columns, types and
    values (landed_at: type only, it is stamped at conversion). Returns rows checked."""
    rows = result.by_outcome("row")
    assert {r["table"] for r in rows} == expected_tables, result.summary
    landed: dict[str, dict[str, dict[str, Any]]] = {}
    for t in expected_tables:
        landed[t] = {r["event_id"]: r for r in warehouse.rows(t)}
    for r in rows:
        t = r["table"]
        columns = warehouse.columns(t)
        shown = {c["name"]: c for c in r["columns"]}
        assert set(shown) == set(columns), (t, set(shown) ^ set(columns))
        for name, c in shown.items():
            assert c["sql_type"] == columns[name], (t, name, c, columns[name])
        real = landed[t][r["row"]["event_id"]]
        for name, value in r["row"].items():
            if name in preview.VOLATILE_COLUMNS:
                continue
            assert _same(real[name], value), (t, name, real[name], value)
    return len(rows)


def assert_dead_letters_match(result: preview.Result, dead: list[Any]) -> None:
    """Each record the preview dead-letters is in the DLQ with the same stage, class and
    exception; and nothing else is."""
    shown = {base64.b64decode(r["input"]["key_b64"]): r["dead_letter"]
             for r in result.by_outcome("dead_letter")}
    assert set(shown) == {d.key for d in dead}
    for d in dead:
        s = shown[d.key]
        assert s["stage"] == d.headers["__connect.errors.stage"]
        assert s["class_name"] == d.headers["__connect.errors.class.name"]
        assert s["exception_class_name"] == d.headers["__connect.errors.exception.class.name"]
        assert s["exception_message"] == d.headers["__connect.errors.exception.message"]


def test_rabbitmq_preview_shows_the_rows_and_dead_letters_the_sink_writes(
        stack: Stack, run: Run, tmp_path: Path, warehouse: Warehouse,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    writer = RabbitMQWriter(stack, f"{run.prefix}.events", tmp_path)
    topic = writer.topics["order_placed"]
    connector = for_test("rabbitmq-events.json", run)
    try:
        good = writer.publish([order(i, run.token) for i in range(6)])
        producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all"})
        producer.produce(topic, b'{"event_id": "json-1"}', b"json-1")   # not Avro
        no_id = {"type": "record", "name": "Stray", "namespace": "itest", "fields": [
            {"name": "event_type", "type": "string"}, {"name": "note", "type": "string"}]}
        producer.produce(topic, AvroEncoder(stack.schema_registry_url).encode(
            topic, no_id, {"event_type": "order_placed", "note": "no id"}), b"no-id")
        assert producer.flush(30) == 0
    finally:
        writer.close()

    # Before the connector exists: what would it write?
    before = preview.run(connector, preview.Options(records=50))
    assert before.summary["outcomes"] == {"row": len(good), "dead_letter": 2}, before.summary

    deployed(connector)
    t = table(run, "rabbitmq", "order_placed")
    warehouse.wait_count(t, len(good))
    dead = read_topic(stack.kafka_bootstrap, connector.config[
        "errors.deadletterqueue.topic.name"], 2)

    assert assert_rows_match(before, warehouse, {t}) == len(good)
    assert_dead_letters_match(before, dead)
    no_id_reason = next(r["dead_letter"] for r in before.by_outcome("dead_letter")
                        if base64.b64decode(r["input"]["key_b64"]) == b"no-id")
    assert no_id_reason["stage"] == "TRANSFORMATION" and "event_id" in \
        no_id_reason["exception_message"]

    # Golden file: the saved records through the file again give the same rows; a changed
    # file (another table name) is caught.
    golden = tmp_path / "golden.jsonl"
    preview.save(before, golden)
    again = preview.run(connector, preview.Options(records=50, input=golden))
    assert preview.compare(preview.load_saved(golden), again.records) == []
    renamed = connector.with_config(**{"transforms.route.topic.format":
                                       f"{run.prefix}_other_${{value}}"})
    changed = preview.run(renamed, preview.Options(records=50, input=golden))
    problems = preview.compare(preview.load_saved(golden), changed.records)
    assert len([p for p in problems if ": table was" in p]) == len(good), problems


@pytest.fixture
def snowplow(stack: Stack, run: Run) -> Iterator[SnowplowWriter]:
    w = SnowplowWriter(stack, f"{run.prefix}.snowplow", f"itest-{run.token}")
    yield w
    w.close()


def test_snowplow_previews_show_the_rows_their_sinks_write(
        stack: Stack, run: Run, snowplow: SnowplowWriter, warehouse: Warehouse,
        deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    tracker, emitter = SnowplowWriter.tracker()
    for i in range(3):
        tracker.track(PageView(page_url=f"https://shop.example/p/{i}", page_title=f"P {i}"))
    for i in range(2):
        tracker.track(SelfDescribing(SelfDescribingJson(ORDER, {
            "order_id": f"o-{run.token}-{i}", "total": 10.5 + i, "currency": "EUR",
            "items": i + 1})))
    tracker.track(SelfDescribing(SelfDescribingJson(ORDER, {
        "order_id": "bad", "total": -1, "currency": "euro", "items": 0})))
    good, bad = snowplow.post(emitter.events)
    assert (len(good), bad) == (5, 1)

    events = for_test("snowplow-events.json", run)
    bad_rows = for_test("snowplow-bad-rows.json", run)
    shown_events = preview.run(events, preview.Options(records=50))
    shown_bad = preview.run(bad_rows, preview.Options(records=50))
    assert shown_events.summary["outcomes"] == {"row": 5}, shown_events.summary
    assert shown_bad.summary["outcomes"] == {"row": 1}, shown_bad.summary

    deployed(events)
    deployed(bad_rows)
    views = table(run, "snowplow", "page_view")
    orders = table(run, "snowplow", "com.conveyor.grocer/order_placed")
    bad_table = f"{run.prefix}_snowplow_bad_rows"
    warehouse.wait_count(views, 3)
    warehouse.wait_count(orders, 2)
    warehouse.wait_count(bad_table, 1)

    assert assert_rows_match(shown_events, warehouse, {views, orders}) == 5
    assert assert_rows_match(shown_bad, warehouse, {bad_table}) == 1
