"""Lag in seconds and retention loss against a brute-force model: never raises for any
offsets a broker or a group could report, never negative, never counts a record twice."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sla.core import Histogram, PartitionState, RetentionTracker, included, lag_seconds, threshold

NOW = 1_800_000_000_000

offsets = st.integers(min_value=-(2**63), max_value=2**63 - 1)
committed = st.none() | offsets
stamps = st.none() | st.integers(min_value=-(2**62), max_value=2**62)


def test_lag_is_now_minus_the_record_at_the_committed_offset() -> None:
    st_ = PartitionState(committed=10, log_start=0, end=20)
    assert lag_seconds(st_, NOW - 42_500, NOW) == 42.5
    assert st_.records_behind == 10


def test_caught_up_is_zero_whatever_the_stamp() -> None:
    assert lag_seconds(PartitionState(20, 0, 20), NOW - 999_000, NOW) == 0.0
    # Only transaction markers left before the end: nothing for the sink to read.
    assert lag_seconds(PartitionState(18, 0, 20), None, NOW) == 0.0


def test_a_commit_below_the_log_start_reads_from_the_log_start() -> None:
    state = PartitionState(committed=3, log_start=10, end=15)
    assert state.position == 10 and state.records_behind == 5
    assert PartitionState(None, 7, 9).position == 7


def test_a_record_from_the_future_is_not_negative_lag() -> None:
    assert lag_seconds(PartitionState(0, 0, 5), NOW + 60_000, NOW) == 0.0


@given(committed, offsets, offsets, stamps, offsets)
def test_lag_never_raises_and_is_never_negative(c: int | None, start: int, end: int,
                                                stamp: int | None, now: int) -> None:
    state = PartitionState(c, start, end)
    lag = lag_seconds(state, stamp, now)
    assert lag >= 0.0
    if state.caught_up:
        assert lag == 0.0
    assert state.records_behind >= 0


def test_retention_counts_what_the_group_had_not_read() -> None:
    r = RetentionTracker()
    key = ("connect-x", "t", 0)
    assert r.observe(key, committed=5, log_start=0) == 0
    assert r.observe(key, committed=5, log_start=15) == 10      # offsets 5..14 went unread
    assert r.observe(key, committed=5, log_start=15) == 0       # the same loss, scraped again
    assert r.observe(key, committed=5, log_start=20) == 5       # 15..19 since then
    assert r.observe(key, committed=25, log_start=30) == 5      # 25..29: read up to 25 first
    assert r.totals[key] == 20


def test_retention_of_records_the_group_had_read_is_no_loss() -> None:
    r = RetentionTracker()
    key = ("g", "t", 0)
    r.observe(key, 50, 0)
    assert r.observe(key, 50, 40) == 0
    assert r.observe(key, None, 60) == 0       # no commit: nothing the group had not read


def test_a_recreated_topic_starts_over() -> None:
    r = RetentionTracker()
    key = ("g", "t", 0)
    r.observe(key, 10, 100)
    assert r.totals[key] == 90
    assert r.observe(key, 0, 5) == 5           # log start went back: a new log, 0..4 gone
    r.forget([])
    assert r.totals == {}


scrape = st.tuples(st.none() | st.integers(0, 60), st.integers(0, 60))


@settings(max_examples=300)
@given(st.lists(scrape, max_size=25))
def test_retention_never_double_counts(scrapes: list[tuple[int | None, int]]) -> None:
    """A log start only moves forward (as retention moves it): the brute-force model is the
    set of offsets that left the log between two scrapes while at or after the group's
    committed offset; each is counted exactly once, the counter never goes down."""
    starts = sorted(s for _, s in scrapes)
    scrapes = [(c, s) for (c, _), s in zip(scrapes, starts, strict=True)]
    r = RetentionTracker()
    key = ("g", "t", 0)
    counted: set[int] = set()
    previous: int | None = None
    total = 0
    for c, start in scrapes:
        new = r.observe(key, c, start)
        assert new >= 0
        if c is not None:
            lower = c if previous is None else max(c, previous)
            fresh = set(range(max(lower, 0), start))
            assert not fresh & counted, "an offset counted twice"
            counted |= fresh
        previous = start
        assert r.totals[key] >= total
        total = r.totals[key]
    assert total == len(counted)


@given(st.lists(st.tuples(committed, offsets), max_size=20))
def test_retention_never_raises(scrapes: list[tuple[int | None, int]]) -> None:
    r = RetentionTracker()
    for c, start in scrapes:
        assert r.observe(("g", "t", 1), c, start) >= 0
    assert all(v >= 0 for v in r.totals.values())


def test_histogram_is_cumulative_and_refuses_bad_buckets() -> None:
    h = Histogram((1, 5, 10))
    for v in (0.5, 3, 7, 30):
        h.observe(v)
    assert h.counts == [1, 2, 3, 4] and h.total == 40.5
    h.add([1, 1, 1], 2, 100.0)
    assert h.counts == [2, 3, 4, 6]
    with pytest.raises(ValueError):
        Histogram((5, 1))
    with pytest.raises(ValueError):
        h.add([1], 1, 1.0)


def test_thresholds_and_includes_are_globs_first_match_wins() -> None:
    overrides = {"sla-*": 8.0, "*": 60.0}
    assert threshold("sla-abc", 300, overrides) == 8.0
    assert threshold("warehouse", 300, overrides) == 60.0
    assert threshold("warehouse", 300, {}) == 300
    assert included("rabbitmq_order_placed", ["rabbitmq_*", "snowplow_*"])
    assert not included("t1234_rabbitmq_x", ["rabbitmq_*"])
