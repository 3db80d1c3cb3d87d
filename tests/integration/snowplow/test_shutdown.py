"""SIGTERM under load: stop accepting, finish in-flight requests, commit, exit 0."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from snowplow_tracker import PageView

from .conftest import CollectorProcess, wait_until
from .helpers import Outcomes, duplicates, good_events, landed, make_tracker

pytestmark = pytest.mark.integration


def test_sigterm_drains_and_commits(collector: Callable[..., CollectorProcess],
                                    kafka_bootstrap: str) -> None:
    c = collector()
    stop = threading.Event()
    outcomes: list[Outcomes] = []

    def load(i: int) -> None:
        tracker, emitter, out = make_tracker(c.endpoint, batch_size=5, namespace=f"t{i}")
        outcomes.append(out)
        n = 0
        while not stop.is_set() and not emitter.retry_timer.is_active():
            tracker.track(PageView(page_url=f"https://shop.example/{i}/{n}"))
            n += 1
        emitter.retry_timer.cancel()

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    wait_until(lambda: sum(len(o.ok) for o in outcomes) >= 100, 60, "load to flow")
    assert c.terminate(timeout=30) == 0
    stop.set()
    for t in threads:
        t.join(30)
    assert "snowplow.stopped" in c.log()
    ok = {eid for o in outcomes for eid in o.ok}
    landed_ids = [e["event_id"] for e in good_events(landed(kafka_bootstrap, c.topics))]
    assert duplicates(landed_ids) == {}
    assert ok <= set(landed_ids)
