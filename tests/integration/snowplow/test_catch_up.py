"""Crashes on both sides of the raw topic, under the real snowplow-tracker.

- One tracker with default settings (POST emitter, batch of 10, default byte limit and
  retry policy) sends 10,000 events while the collector is SIGKILLed three times. Its
  retries bundle the backlog into POSTs over the collector's body limit (64 KB here, so
  the backlog of a few seconds is enough), which the collector splits along event
  boundaries: every acknowledged event lands once.
- Several trackers send 20,000 events, some of them bad, while enrich is SIGKILLed at
  random moments mid-transaction: every good event lands exactly once, every bad one is
  exactly one bad row.

Both go on to the warehouse: the local connector files, deployed for the test's topics,
land every good event in its kind's table and every bad one in the bad-rows table. The
sinks upsert on event_id, so the tables cannot show a duplicate: Kafka is where "once" is
checked, the tables are where "every event" is.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import httpx
import pytest
from snowplow_tracker import Emitter, PageView, SelfDescribing, SelfDescribingJson, Tracker

from connectors import deploy
from connectors.configs import ConnectorFile
from devstack.committed import consume_committed
from sidecar.snowplow.raw import RawPayload
from tests.integration.landing import Run, for_test
from tests.integration.warehouse import Warehouse

from .conftest import CollectorProcess, wait_until
from .helpers import (
    Outcomes,
    assert_in_warehouse,
    drained,
    duplicates,
    good_events,
    landed,
    make_tracker,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0"
MISSING = "iglu:com.conveyor.grocer/no_such_event/jsonschema/1-0-0"


def _metric(url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(f"{url}/metrics", timeout=5).text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.timeout(900)
def test_tracker_backlog_after_collector_crashes_is_split_and_lands_once(
        collector: Callable[..., CollectorProcess], kafka_bootstrap: str, run: Run,
        warehouse: Warehouse, deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    c = collector(http={"max_body_bytes": 65_536}, landing=run)
    deployed(for_test("snowplow-events.json", run))
    deployed(for_test("snowplow-bad-rows.json", run))
    outcomes = Outcomes()
    emitter = Emitter(c.endpoint, protocol="http", method="post",
                      on_success=outcomes.on_success, on_failure=outcomes.on_failure)
    tracker = Tracker("catch-up", emitter, app_id="shop")
    total, rate = 10_000, 200
    tracked: list[str] = []
    kills_at = {2_000, 4_500, 7_000}
    started = time.monotonic()
    for n in range(total):
        eid = tracker.track(PageView(page_url=f"https://shop.example/{n}",
                                     page_title="catch-up " * 5))
        assert eid is not None
        tracked.append(eid)
        if n in kills_at:
            c.kill()
            # Down for a while, as a crash-looping pod is: the tracker's backlog grows.
            deadline = len(tracked) + 600
            while len(tracked) < deadline:
                eid = tracker.track(PageView(page_url=f"https://shop.example/down/{n}/"
                                                      f"{len(tracked)}"))
                tracked.append(eid)  # type: ignore[arg-type]
                time.sleep(1 / rate)
            c.start()
        time.sleep(max(0.0, started + len(tracked) / rate - time.monotonic()))
    emitter.flush()

    def settled() -> bool:
        if not emitter.retry_timer.is_active():
            emitter.flush()
        return drained(emitter)

    wait_until(settled, 300, "the tracker to send its backlog", every=0.5)
    assert c.starts == 4
    found = landed(kafka_bootstrap, c.topics)
    landed_ids = [e["event_id"] for e in good_events(found)]
    assert duplicates(landed_ids) == {}
    ok = set(outcomes.ok)
    assert ok <= set(landed_ids), f"{len(ok - set(landed_ids))} acknowledged events missing"
    assert set(landed_ids) == set(tracked)        # the tracker retried everything else
    assert found["bad"] == []
    raw = [RawPayload.from_record(m.headers(), m.value())
           for m in consume_committed(kafka_bootstrap, c.topics["raw"], timeout_s=120)]
    split = [r for r in raw if r.part is not None]
    assert split, "the backlog should have come as a POST over the limit, split by the collector"
    assert max(r.body_size or 0 for r in raw if r.part is None) <= 65_536
    assert_in_warehouse(warehouse, run, set(tracked), set())


@pytest.mark.timeout(900)
def test_enrich_sigkilled_at_random_moments_loses_and_duplicates_nothing(
        collector: Callable[..., CollectorProcess], kafka_bootstrap: str, run: Run,
        warehouse: Warehouse, deployed: Callable[[ConnectorFile], deploy.Applied]) -> None:
    c = collector(enrich={"max_batch_records": 50, "max_batch_events": 200}, landing=run)
    deployed(for_test("snowplow-events.json", run))
    deployed(for_test("snowplow-bad-rows.json", run))
    threads_n, per_thread = 4, 5_000
    tracked: list[list[tuple[str, bool]]] = [[] for _ in range(threads_n)]
    emitters = []
    outcomes: list[Outcomes] = []

    def load(i: int) -> None:
        tracker, emitter, out = make_tracker(c.endpoint, batch_size=10, namespace=f"l{i}",
                                             max_retry_delay_seconds=1)
        emitters.append(emitter)
        outcomes.append(out)
        for n in range(per_thread):
            if n % 25 == 0:   # a bad event: its schema is in no repository
                eid = tracker.track(SelfDescribing(SelfDescribingJson(MISSING, {"n": n})))
                tracked[i].append((str(eid), False))
            elif n % 3 == 0:
                eid = tracker.track(SelfDescribing(SelfDescribingJson(ORDER, {
                    "order_id": f"{i}-{n}", "total": n, "currency": "EUR", "items": 1})))
                tracked[i].append((str(eid), True))
            else:
                eid = tracker.track(PageView(page_url=f"https://shop.example/{i}/{n}"))
                tracked[i].append((str(eid), True))
            while emitter.retry_timer.is_active():
                time.sleep(0.01)   # backing off: do not flood its buffer
        emitter.flush()

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(threads_n)]
    for t in threads:
        t.start()
    rng = random.Random(20_000)
    kills = 0
    floor = 0.0
    while any(t.is_alive() for t in threads) and kills < 6:
        target = floor + rng.randint(100, 600)        # raw records committed by enrich
        try:
            wait_until(lambda t=target: _metric(c.enrich_url,
                                                "conveyor_snowplow_enrich_records_total") >= t,
                       120, "enrich to make progress", every=0.02)
        except AssertionError:
            if not any(t.is_alive() for t in threads):
                break
            raise
        c.kill_enrich()
        kills += 1
        c.start_enrich()
        floor = 0.0   # a new process counts from zero
    for t in threads:
        t.join(300)

    def settled() -> bool:
        for em in emitters:
            if not em.retry_timer.is_active():
                em.flush()
        return all(drained(em) for em in emitters)

    wait_until(settled, 300, "trackers to drain", every=0.5)
    assert kills >= 3, "enrich should have been killed mid-stream several times"
    found = landed(kafka_bootstrap, c.topics)
    good_ids = [e["event_id"] for e in good_events(found)]
    bad_ids = [d["data"]["event_id"] for d in found["bad"]]
    want_good = {eid for ids in tracked for eid, ok in ids if ok}
    want_bad = {eid for ids in tracked for eid, ok in ids if not ok}
    assert len(want_good) + len(want_bad) == threads_n * per_thread
    assert duplicates(good_ids) == {} and duplicates(bad_ids) == {}
    assert set(good_ids) == want_good
    assert set(bad_ids) == want_bad
    assert_in_warehouse(warehouse, run, want_good, want_bad)
