"""Recovery on a real collector, enrich and Kafka: events of a schema nobody published
become bad rows; the schema is added to an Iglu repository enrich reads; the dry run says
how many would recover and why the others still fail; the recovery lands exactly those as
good events, once, in Kafka and in the warehouse; a second run changes nothing; a window
retention no longer holds is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson

from connectors import deploy
from connectors.configs import ConnectorFile
from connectors.replay import after_last_record
from tests.integration.landing import Run, for_test
from tests.integration.warehouse import Warehouse

from .conftest import ROOT, CollectorProcess
from .helpers import (
    assert_in_warehouse,
    duplicates,
    flush_all,
    good_events,
    landed,
    make_tracker,
)

pytestmark = pytest.mark.integration

CHECKOUT = "iglu:com.acme/checkout/jsonschema/1-0-0"
NEVER = "iglu:com.acme/never_published/jsonschema/1-0-0"
SCHEMA = {
    "$schema": "http://iglucentral.com/schemas/com.snowplowanalytics.self-desc/schema/"
               "jsonschema/1-0-0#",
    "self": {"vendor": "com.acme", "name": "checkout", "format": "jsonschema",
             "version": "1-0-0"},
    "type": "object", "properties": {"total": {"type": "number"}}, "required": ["total"],
}
N = 6


def _recover(proc: CollectorProcess, since: datetime, *extra: str, code: int = 0
             ) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "sidecar", "snowplow-recover", "--config",
         str(proc.config_path), "--since", since.isoformat(), "--reason", "schema_not_found",
         "--json", *extra], cwd=ROOT, capture_output=True, timeout=120, check=False)
    assert done.returncode == code, done.stderr.decode()[-3000:]
    return done.returncode, json.loads(done.stdout) if code == 0 else {
        "stderr": done.stderr.decode()}


def _cut_before_last_record(bootstrap: str, topic: str) -> int:
    """Delete every bad row but the last of each partition, as retention would; returns
    how many partitions lost records."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"cut-{topic}",
                         "isolation.level": "read_committed", "enable.partition.eof": True,
                         "enable.auto.commit": False})
    cuts = []
    try:
        for p in admin.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            last = after_last_record(consumer, topic, p, low, high) - 1
            if last > low:
                cuts.append(TopicPartition(topic, p, last))
    finally:
        consumer.close()
    for future in admin.delete_records(cuts).values():
        future.result(timeout=30)
    return len(cuts)


def _good(proc: CollectorProcess) -> list[dict[str, Any]]:
    return good_events(landed(proc.bootstrap, proc.topics))


def _good_ids(proc: CollectorProcess) -> list[str]:
    return [e["event_id"] for e in _good(proc)]


def test_unknown_schema_rows_recover_once(
        collector: Callable[..., CollectorProcess], tmp_path: Path, run: Run,
        warehouse: Warehouse, deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    repo = tmp_path / "iglu"
    repo.mkdir()
    # Small batches: recovery reads the window and commits in several steps. Good events
    # as Avro (recovery encodes them as enrich does) and the local sinks: the warehouse.
    proc = collector(iglu={"repositories": [str(repo)]},
                     enrich={"max_batch_records": 3, "max_batch_events": 4}, landing=run)
    deployed(for_test("snowplow-events.json", run))
    deployed(for_test("snowplow-bad-rows.json", run))
    since = datetime.now(UTC) - timedelta(seconds=2)
    tracker, emitter, outcomes = make_tracker(proc.endpoint, batch_size=N + 3)
    checkouts = [str(tracker.track(SelfDescribing(
        SelfDescribingJson(CHECKOUT, {"total": i + 0.5})))) for i in range(N)]
    never = str(tracker.track(SelfDescribing(SelfDescribingJson(NEVER, {"x": 1}))))
    views = [str(tracker.track(PageView(page_url=f"https://shop.example/{i}"))) for i in range(2)]
    flush_all(emitter)
    assert not outcomes.failed

    found = landed(proc.bootstrap, proc.topics)
    bad = found["bad"]
    assert sorted(b["data"]["event_id"] for b in bad) == sorted([*checkouts, never])
    assert {b["data"]["reason"] for b in bad} == {"schema_not_found"}
    assert sorted(_good_ids(proc)) == sorted(views)

    # The schema reaches the running enrich as a file in its repository: no restart.
    path = repo / "schemas/com.acme/checkout/jsonschema/1-0-0"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(SCHEMA))

    t0 = time.monotonic()
    _, dry = _recover(proc, since, "--dry-run")
    assert (dry["rows"], dry["candidates"], dry["would_recover"]) == (N + 1, N + 1, N)
    assert dry["already_recovered"] == 0
    assert dry["still_failing"]["schema/schema_not_found"]["count"] == 1
    assert NEVER in dry["still_failing"]["schema/schema_not_found"]["example"]["message"]
    assert sorted(_good_ids(proc)) == sorted(views), "a dry run wrote something"

    _, first = _recover(proc, since)
    assert (first["recovered"], first["already_recovered"]) == (N, 0)
    good = _good_ids(proc)
    assert duplicates(good) == {}
    assert sorted(good) == sorted([*views, *checkouts])
    by_id = {e["event_id"]: e for e in _good(proc)}
    unstruct = by_id[checkouts[2]]["payload"]["unstruct_event"]
    assert (json.loads(unstruct) if isinstance(unstruct, str) else unstruct) == {
        "schema": CHECKOUT, "data": {"total": 2.5}}

    _, again = _recover(proc, since)
    assert (again["recovered"], again["already_recovered"]) == (0, N)
    _, dry_again = _recover(proc, since, "--dry-run")
    assert (dry_again["would_recover"], dry_again["already_recovered"]) == (0, N)
    assert sorted(_good_ids(proc)) == sorted([*views, *checkouts]), "the second run wrote"
    # Once in the warehouse too; the bad rows stay where they were (they are history).
    assert_in_warehouse(warehouse, run, {*views, *checkouts}, {*checkouts, never},
                        timeout=120)

    # Retention took the start of the window: refused, named, nothing written.
    assert _cut_before_last_record(proc.bootstrap, proc.topics["bad"]) >= 1
    _, gone = _recover(proc, since, code=5)
    assert "retention" in gone["stderr"]
    print(f"recovery runs: {time.monotonic() - t0:.1f}s")
