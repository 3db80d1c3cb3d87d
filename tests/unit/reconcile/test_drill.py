"""Narrowing a differing bucket into sub-buckets before reading rows must never change the
verdict: the same counts as reading every row of every bucket (brute force), duplicates
that span sub-buckets included."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile import drill as drill_module
from reconcile.core import KINDS, RowDigest, Summary, compare, to_drill
from reconcile.drill import drill, split
from reconcile.records import Landing, Record

T0 = datetime(2026, 11, 30, tzinfo=UTC)
BUCKET = timedelta(hours=1)
SLA = timedelta(minutes=15)


class LandingReader:
    """A Landing as a Reader (what TopicReader answers from), counting row reads."""

    def __init__(self, rows: list[tuple[int, int, str, str]]) -> None:
        self.landing = Landing(T0, T0 + 4 * BUCKET, BUCKET, SLA)
        for b, sec, eid, value in rows:
            at = T0 + b * BUCKET + timedelta(seconds=sec)
            self.landing.add(Record(eid, at, None, value))
        self.rows_read = 0

    def summaries(self, since: datetime, until: datetime, bucket: timedelta,
                  sla: timedelta, within: Any = None) -> dict[int, Summary]:
        return self.landing.summaries(bucket, within)

    def summaries_and_finer(self, since: datetime, until: datetime, bucket: timedelta,
                            finer: timedelta, sla: timedelta) -> Any:
        return self.landing.summaries(bucket), self.landing.summaries(finer)

    def ids(self, since: datetime, until: datetime, size: timedelta,
            indexes: list[int]) -> set[str]:
        return self.landing.ids(size, indexes)

    def rows_of(self, since: datetime, until: datetime, bucket: timedelta,
                buckets: list[int], ids: set[str]) -> dict[int, list[RowDigest]]:
        out = self.landing.rows_of(buckets, ids)
        self.rows_read += sum(r.count for rs in out.values() for r in rs)
        return out

    def close(self) -> None: ...


def brute(old: list[Any], new: list[Any]) -> dict[str, int]:
    out = dict.fromkeys(KINDS, 0)
    for b in {r[0] for r in old} | {r[0] for r in new}:
        o = Counter(r[2] for r in old if r[0] == b)
        n = Counter(r[2] for r in new if r[0] == b)
        out["missing_in_new"] += len(o.keys() - n.keys())
        out["missing_in_old"] += len(n.keys() - o.keys())
        out["duplicated_old"] += sum(1 for c in o.values() if c > 1)
        out["duplicated_new"] += sum(1 for c in n.values() if c > 1)
        for eid in o.keys() & n.keys():
            ov = {r[3] for r in old if r[0] == b and r[2] == eid}
            nv = {r[3] for r in new if r[0] == b and r[2] == eid}
            out["mismatched"] += ov != nv
    return out


def reconcile(old_rows: list[Any], new_rows: list[Any], *, one_pass: bool = False
              ) -> tuple[dict[str, int], int]:
    """``one_pass``: the first pass sums the first level of sub-buckets too (as the CLI
    does), instead of the drill-down asking for them."""
    old, new = LandingReader(old_rows), LandingReader(new_rows)
    first = None
    if one_pass:
        sub = split(BUCKET)
        assert sub is not None
        (o, o_sub), (n, n_sub) = (r.summaries_and_finer(T0, T0, BUCKET, sub[0], SLA)
                                  for r in (old, new))
        first = (o_sub, n_sub)
    else:
        o, n = old.summaries(T0, T0, BUCKET, SLA), new.summaries(T0, T0, BUCKET, SLA)
    with ThreadPoolExecutor(2) as pool:
        got = drill(old, new, to_drill(o, n), o, n, since=T0, until=T0 + 4 * BUCKET,
                    bucket=BUCKET, sla=SLA, pool=pool, first=first)
    report = compare(o, n, since=T0, until=T0 + 4 * BUCKET, bucket=BUCKET,
                     rows=lambda b: got[b])
    return {k: report.total(k) for k in KINDS}, old.rows_read + new.rows_read


@pytest.fixture(autouse=True)
def narrow_always(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drill_module, "SMALL", 0)   # narrow even tiny buckets


# (bucket, second in the bucket, id, value): few seconds, so sub-buckets collide and an
# id can sit in two of them.
rows = st.lists(st.tuples(st.integers(0, 3), st.sampled_from([0, 1, 60, 61, 1800, 3599]),
                          st.sampled_from([f"e{i}" for i in range(8)]),
                          st.sampled_from(["x", "y"])), max_size=30)


@settings(max_examples=400, deadline=None)
@given(old=rows, new=rows, one_pass=st.booleans())
def test_narrowing_finds_what_reading_every_row_finds(old: list[Any], new: list[Any],
                                                      one_pass: bool) -> None:
    found, _ = reconcile(old, new, one_pass=one_pass)
    assert found == brute(old, new)


def test_a_duplicate_across_sub_buckets_on_both_sides_is_found() -> None:
    """Every sub-bucket equal, the bucket not: the id is twice on each side."""
    side = [(0, 0, "a", "x"), (0, 1800, "a", "x")]
    found, _ = reconcile(side, side)
    assert found["duplicated_old"] == 1 and found["duplicated_new"] == 1


def test_only_the_rows_near_a_difference_are_read() -> None:
    old = [(0, s, f"e{s}", "x") for s in range(3600)]
    new = [r for r in old if r[2] != "e1234"]
    for one_pass in (False, True):
        found, read = reconcile(old, new, one_pass=one_pass)
        assert found["missing_in_new"] == 1 and read == 1   # of 7,199 rows
