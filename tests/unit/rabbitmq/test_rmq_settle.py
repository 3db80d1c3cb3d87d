"""The ack policy alone: what each transaction outcome does to the deliveries held."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sidecar.rabbitmq.core import KAFKA_REJECTED
from sidecar.rabbitmq.settle import Backoff, Settlement


@dataclass(frozen=True)
class D:
    delivery_tag: int


def held(*chunks: list[int]) -> Settlement[D]:
    s: Settlement[D] = Settlement(Backoff(1.0, 4.0))
    for c in chunks:
        s.hold([D(t) for t in c])
    return s


def tags(s: Settlement[D]) -> list[list[int]]:
    return [[d.delivery_tag for d in c] for c in s.chunks]


def test_commit_acks_the_front_chunk_only_and_the_next_goes_at_once() -> None:
    s = held([1, 2, 3], [4])
    assert s.committed(now=10.0) == 3
    assert tags(s) == [[4]]
    assert s.ready(now=10.0) == [D(4)]
    assert s.last_commit_at == 10.0


def test_abort_keeps_the_chunk_and_backs_off_doubling() -> None:
    s = held([1, 2])
    assert s.aborted(now=0.0) == 1.0
    assert s.ready(now=0.5) is None
    assert s.ready(now=1.0) == [D(1), D(2)]
    assert s.retrying
    assert s.aborted(now=1.0) == 2.0
    assert s.aborted(now=3.0) == 4.0
    assert s.aborted(now=7.0) == 4.0  # capped
    assert s.consecutive_aborts == 4
    s.committed(now=11.0)
    assert s.consecutive_aborts == 0 and not s.retrying
    s.hold([D(3)])
    assert s.aborted(now=12.0) == 1.0  # backoff reset by the commit


def test_an_outage_never_drops_or_requeues_anything() -> None:
    """However long Kafka refuses, the held deliveries stay: no nack, no redelivery."""
    s = held([1, 2, 3])
    now = 0.0
    for _ in range(1000):
        now += s.aborted(now)
    assert tags(s) == [[1, 2, 3]]
    assert s.committed(now) == 3


def test_a_named_rejection_forces_that_delivery_and_retries_now() -> None:
    s = held([1, 2])
    s.aborted(now=0.0)
    s.rejected(now=0.5, event_id="e2", reason="MSG_SIZE_TOO_LARGE")
    assert s.forced == {"e2": (KAFKA_REJECTED, "MSG_SIZE_TOO_LARGE")}
    assert s.ready(now=0.5) == [D(1), D(2)]
    s.committed(now=1.0, event_ids=["e1", "e2"])
    assert s.forced == {}


def test_an_unnamed_rejection_splits_until_one_is_alone() -> None:
    s = held([1, 2, 3, 4, 5])
    s.rejected(now=0.0, event_id=None, reason="x")
    assert tags(s) == [[1, 2], [3, 4, 5]]
    assert s.committed(now=0.0) == 2
    s.rejected(now=0.0, event_id=None, reason="x")
    assert tags(s) == [[3], [4, 5]]
    with pytest.raises(LookupError):
        s.rejected(now=0.0, event_id=None, reason="x")


def test_a_lost_channel_forgets_everything_held() -> None:
    s = held([1, 2], [3])
    s.aborted(now=0.0)
    s.lost()
    assert tags(s) == [] and s.ready(now=100.0) is None and not s.retrying


def test_stalled_only_with_work_held() -> None:
    s = held()
    assert not s.stalled(now=1e9, max_aborts=3, max_age_s=60)
    s.hold([D(1)])
    s.committed(now=0.0)
    s.hold([D(2)])
    assert not s.stalled(now=30.0, max_aborts=3, max_age_s=60)
    assert s.stalled(now=61.0, max_aborts=3, max_age_s=60)
    for _ in range(3):
        s.aborted(now=1.0)
    assert s.stalled(now=1.0, max_aborts=3, max_age_s=60)
