"""The dedup window (pure part of the ledger): bounded by count and by age."""

from __future__ import annotations

from sidecar.exactly_once.ledger import RecentIds


def test_count_bound_evicts_oldest_first() -> None:
    w = RecentIds(max_ids=3)
    for i, e in enumerate("abcd"):
        w.add(e, i)
    assert "a" not in w
    assert w.seen("abcdz") == {"b", "c", "d"}
    assert len(w) == 3


def test_re_adding_keeps_the_original_position() -> None:
    w = RecentIds(max_ids=2)
    w.add("a", 1)
    w.add("b", 2)
    w.add("a", 3)
    w.add("c", 4)
    assert w.seen("abc") == {"b", "c"}


def test_age_bound() -> None:
    w = RecentIds(max_ids=100, max_age_ms=1000)
    w.add("old", 1_000)
    w.add("new", 5_000)
    assert w.expire(now=5_500) == 1
    assert w.seen(["old", "new"]) == {"new"}



def test_chunks_evict_partially_and_by_age() -> None:
    w = RecentIds(max_ids=5)
    w.add_many(["a", "b", "c"], 10)
    w.add_many(["d", "e", "f", "g"], 20)
    assert len(w) == 5
    assert w.seen("abcdefg") == {"c", "d", "e", "f", "g"}
    assert w.evict_older_than(15) == 1  # what is left of the first chunk
    assert w.seen("abcdefg") == {"d", "e", "f", "g"}


def test_duplicates_within_and_across_chunks_count_once() -> None:
    w = RecentIds(max_ids=3)
    w.add_many(["a", "a", "b"], 1)
    w.add_many(["b", "c"], 2)
    assert len(w) == 3
    w.add("d", 3)
    assert w.seen("abcd") == {"b", "c", "d"}
