"""SIGKILL the collector under tracker load: every event that got a 200 is in Kafka once.

Trackers keep sending while the collector dies mid-transaction and comes back with the
same config (same transactional id: its dead predecessor's open transaction is aborted at
once; same ledger: ids committed before the crash are remembered). The trackers retry
whatever failed, including batches that had committed but whose 200 was lost with the
process, so at the end every tracked event must be in Kafka, and none twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson

from .conftest import CollectorProcess, wait_until
from .helpers import Outcomes, drained, duplicates, good_events, landed, make_tracker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0"
THREADS = 4
CRASHES = 2


@pytest.mark.timeout(300)
def test_sigkill_under_load_loses_and_duplicates_nothing(
        collector: Callable[..., CollectorProcess], kafka_bootstrap: str) -> None:
    c = collector()
    stop = threading.Event()
    tracked: list[list[str]] = [[] for _ in range(THREADS)]
    emitters = []
    outcomes: list[Outcomes] = []

    def load(i: int) -> None:
        tracker, emitter, out = make_tracker(c.endpoint, batch_size=5, namespace=f"load-{i}",
                                             max_retry_delay_seconds=1)
        emitters.append(emitter)
        outcomes.append(out)
        n = 0
        while not stop.is_set():
            if n % 3 == 2:
                eid = tracker.track(SelfDescribing(SelfDescribingJson(ORDER, {
                    "order_id": f"{i}-{n}", "total": n, "currency": "EUR", "items": 1})))
            else:
                eid = tracker.track(PageView(page_url=f"https://shop.example/{i}/{n}"))
            assert eid is not None
            tracked[i].append(eid)
            n += 1
            if emitter.retry_timer.is_active():
                time.sleep(0.01)   # the tracker is backing off; do not flood its buffer

    def acked() -> int:
        return sum(len(o.ok) for o in outcomes)

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(THREADS)]
    for t in threads:
        t.start()
    for crash in range(CRASHES):
        floor = acked()
        wait_until(lambda f=floor: acked() >= f + 200, 60, "trackers to get events acknowledged")
        c.kill()                     # mid-flight: requests and a transaction are in progress
        c.start()                    # same port, transactional id and ledger
        assert c.starts == crash + 2
    floor = acked()
    wait_until(lambda: acked() >= floor + 200, 60, "load after the last restart")
    stop.set()
    for t in threads:
        t.join(30)

    def settled() -> bool:
        # Nudge trackers that are not backing off; done when nothing is left or pending.
        for em in emitters:
            if not em.retry_timer.is_active():
                em.flush()
        return all(drained(em) for em in emitters)

    wait_until(settled, 120, "trackers to drain after retries", every=0.5)

    sent = [eid for ids in tracked for eid in ids]
    ok = {eid for o in outcomes for eid in o.ok}
    failed = {eid for o in outcomes for eid in o.failed}
    landed_ids = [e["event_id"] for e in good_events(landed(kafka_bootstrap, c.topics))]

    assert failed, "the crashes should have failed some requests (else the test tests nothing)"
    assert duplicates(landed_ids) == {}, "an event landed twice"
    assert ok <= set(landed_ids), f"{len(ok - set(landed_ids))} acknowledged events missing"
    assert set(landed_ids) == set(sent)       # and the retries brought in everything else
    assert len(sent) == len(set(sent))
