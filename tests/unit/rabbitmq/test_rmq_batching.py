"""Batches close on count, bytes or age (clock injected, no sleeping)."""

from __future__ import annotations

from sidecar.rabbitmq.batching import Batcher


def test_empty_batch_is_never_due() -> None:
    b: Batcher[int] = Batcher(3, 1000, 0.1)
    assert not b.due(1e9)
    assert b.time_left(5.0) == 0.1


def test_closes_on_count() -> None:
    b: Batcher[int] = Batcher(3, 1000, 10)
    for i in range(2):
        b.add(i, 1, now=0)
    assert not b.due(0)
    b.add(2, 1, now=0)
    assert b.due(0)
    assert b.take() == [0, 1, 2]
    assert len(b) == 0 and not b.due(100)


def test_closes_on_bytes() -> None:
    b: Batcher[int] = Batcher(100, 1000, 10)
    b.add(1, 600, now=0)
    assert not b.due(0)
    b.add(2, 400, now=0)
    assert b.due(0)


def test_closes_on_age_of_first_item() -> None:
    b: Batcher[int] = Batcher(100, 10_000, 0.2)
    b.add(1, 1, now=10.0)
    b.add(2, 1, now=10.15)
    assert b.time_left(10.1) == 0.2 - 0.1 or abs(b.time_left(10.1) - 0.1) < 1e-9
    assert not b.due(10.19)
    assert b.due(10.2)
    b.take()
    b.add(3, 1, now=20.0)
    assert not b.due(20.1)


def test_take_never_exceeds_the_count_limit_however_much_piled_up() -> None:
    b: Batcher[int] = Batcher(3, 10_000, 10)
    for i in range(8):  # arrived while the previous batch committed
        b.add(i, 1, now=0)
    assert b.take() == [0, 1, 2]
    assert b.due(0)  # the rest waited through a commit: due at once, not after max_wait
    assert b.take() == [3, 4, 5]
    assert b.take() == [6, 7]
    assert len(b) == 0 and b.nbytes == 0 and not b.due(100)


def test_take_never_exceeds_the_byte_limit_but_always_takes_one() -> None:
    b: Batcher[int] = Batcher(100, 1000, 10)
    for i, size in enumerate([400, 400, 400, 1500, 10]):
        b.add(i, size, now=0)
    assert b.take() == [0, 1]     # 800; a third would make 1200
    assert b.take() == [2]        # 400; the next one alone is over the limit
    assert b.take() == [3]        # over the limit alone: still goes, by itself
    assert b.take() == [4]
    assert b.take() == []


def test_clear_drops_everything() -> None:
    b: Batcher[int] = Batcher(3, 1000, 10)
    for i in range(5):
        b.add(i, 10, now=0)
    b.clear()
    assert len(b) == 0 and b.nbytes == 0 and not b.due(100)
