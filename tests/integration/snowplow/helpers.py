"""Driving the collector with the real snowplow-tracker client and reading what landed."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from snowplow_tracker import Emitter, Tracker

from devstack.stack import Stack
from tests.integration.landing import Run, table
from tests.integration.warehouse import Warehouse, poll

from .conftest import read_committed, wait_enriched, wait_until


@dataclass
class Outcomes:
    """What the tracker was told, per event id."""

    ok: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_success(self, events: list[dict[str, Any]]) -> None:
        with self.lock:
            self.ok.extend(str(e["eid"]) for e in events)

    def on_failure(self, _n: int, events: list[dict[str, Any]]) -> None:
        with self.lock:
            self.failed.extend(str(e["eid"]) for e in events)


def make_tracker(endpoint: str, method: str = "post", *, batch_size: int = 1,
                 namespace: str = "itest", app_id: str = "shop",
                 encode_base64: bool = True, anonymous: bool = False,
                 max_retry_delay_seconds: int = 60) -> tuple[Tracker, Emitter, Outcomes]:
    outcomes = Outcomes()
    session = requests.Session()
    if anonymous:
        session.headers["SP-Anonymous"] = "*"
    emitter = Emitter(endpoint, protocol="http", method=method, batch_size=batch_size,
                      on_success=outcomes.on_success, on_failure=outcomes.on_failure,
                      request_timeout=10, session=session,
                      max_retry_delay_seconds=max_retry_delay_seconds)
    tracker = Tracker(namespace, emitter, app_id=app_id, encode_base64=encode_base64)
    return tracker, emitter, outcomes


def drained(emitter: Emitter) -> bool:
    """The tracker has nothing left to send and no retry pending."""
    return emitter.event_store.size() == 0 and not emitter.retry_timer.is_active()


def flush_all(emitter: Emitter, timeout: float = 60) -> None:
    emitter.flush()
    wait_until(lambda: drained(emitter) or (emitter.flush() is None and drained(emitter)),
               timeout, "the tracker to drain its buffer", every=0.2)


def landed(bootstrap: str, topics: dict[str, str], group: str | None = None
           ) -> dict[str, list[dict[str, Any]]]:
    """Good envelopes and bad rows (as JSON) by topic role, once enrich has caught up with
    the raw topic (``group``: its consumer group; by default the fixture's naming)."""
    if "raw" in topics:
        wait_enriched(bootstrap, topics["raw"],
                      group or "itest-enrich-" + topics["raw"].rsplit("-", 1)[-1])
    by_topic = {v: k for k, v in topics.items()}
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in topics}
    names = [t for role, t in topics.items() if role not in ("ledger", "raw")]
    avro: AvroDeserializer | None = None
    for topic, _key, value in read_committed(bootstrap, names):
        if value[:1] == b"\x00":   # the registry's wire format; JSON never starts so
            if avro is None:
                avro = AvroDeserializer(SchemaRegistryClient(
                    {"url": Stack.from_env().schema_registry_url}))
            doc = avro(value, SerializationContext(topic, MessageField.VALUE))
        else:
            doc = json.loads(value)
        out[by_topic[topic]].append(doc)
    return out


def assert_in_warehouse(warehouse: Warehouse, run: Run, good: set[str], bad: set[str],
                        timeout: float = 300) -> None:
    """Every good event id a row of its event kind's table, every bad one a row of the
    bad-rows table; nothing else (the local connector files, deployed for ``run``)."""
    bad_table = f"{run.prefix}_snowplow_bad_rows"

    def ids() -> tuple[set[str], set[str], int]:
        rows = [r["event_id"] for t in warehouse.tables(f"{run.prefix}_snowplow_")
                if t != bad_table for r in warehouse.rows(t)]
        bad_rows = [r["event_id"] for r in warehouse.rows(bad_table)]
        return set(rows), set(bad_rows), len(rows) + len(bad_rows)

    landed_good, landed_bad, n = poll(
        ids, lambda got: got[0] >= good and got[1] >= bad, timeout,
        f"{len(good)} good events and {len(bad)} bad rows in the warehouse")
    assert warehouse.exists(table(run, "snowplow", "page_view"))
    assert landed_good == good, f"{len(landed_good - good)} rows of events never tracked"
    assert landed_bad == bad
    assert n == len(good) + len(bad), "an event id in two tables"


def good_events(found: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [e for role in ("default", "views", "orders") for e in found[role]]


def duplicates(ids: list[str]) -> dict[str, int]:
    return {k: n for k, n in Counter(ids).items() if n > 1}
