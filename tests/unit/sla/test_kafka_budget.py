"""A scrape's budget for Kafka: every request gets at most what is left of it, and none is
sent once it is spent (Kafka is then reported down), so one scrape answers within
Prometheus' scrape timeout even while a broker starts up and times out request by request.
No broker: the clock is faked and no request is sent."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from sla import kafka
from sla.kafka import KafkaReader, KafkaUnreachable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(kafka.time, "monotonic", c)
    return c


@pytest.fixture
def reader() -> Iterator[KafkaReader]:
    # A client that is never used to send anything here.
    r = KafkaReader({"bootstrap.servers": "127.0.0.1:1"}, read_timeout=5.0, request_timeout=3.0)
    yield r
    r.close()


def test_without_a_budget_each_request_gets_the_full_timeout(reader: KafkaReader,
                                                            clock: Clock) -> None:
    assert reader.request_timeout("x") == 3.0
    assert reader.time_left(5.0) == 5.0


def test_requests_share_the_budget_and_stop_when_it_is_spent(reader: KafkaReader,
                                                            clock: Clock) -> None:
    reader.budget(5.0)
    assert reader.request_timeout("metadata") == 3.0      # 5 left: the usual 3
    clock.now += 3.0                                      # that request timed out
    assert reader.request_timeout("offsets") == pytest.approx(2.0)
    assert reader.time_left(5.0) == pytest.approx(2.0)
    clock.now += 2.0
    with pytest.raises(KafkaUnreachable, match="spent"):
        reader.request_timeout("log offsets")
    assert reader.time_left(5.0) == kafka.MIN_REQUEST_S


def test_a_new_scrape_starts_a_new_budget(reader: KafkaReader, clock: Clock) -> None:
    reader.budget(1.0)
    clock.now += 10.0
    reader.budget(1.0)
    assert reader.request_timeout("metadata") == 1.0
