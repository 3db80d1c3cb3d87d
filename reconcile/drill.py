"""The drill-down of buckets whose checksums differ, narrowed before any row is read.

A bucket of an hour holds hundreds of thousands of rows; a difference is usually a handful.
Reading whole buckets row by row would move them all out of the database. Instead each
differing bucket is split into ``FANOUT`` (or a few more) sub-buckets whose checksums are
computed by the same SQL aggregate, level after level, for every differing bucket at once
(one query per side per level, however many buckets differ). Only then are rows read, in two steps:

1. the ids found in the differing sub-buckets of either side (their union);
2. every row of those ids in their whole bucket, on both sides.

Step 2 keeps the verdict per bucket exactly what reading the whole bucket would give: an
id that is only in sub-buckets equal on both sides is there once, with the same values, on
both sides, so it contributes nothing; an id that is in a differing sub-bucket is read
wherever it is in its bucket (a duplicate in another, equal, sub-bucket included).

Each level runs both sides at once (two connections, the database does the work).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from .core import RowDigest, Summary, to_drill

FANOUT = 64
# Stop narrowing once the sub-buckets left are expected to hold about this many rows.
SMALL = 2000
MAX_LEVELS = 4


class Reader(Protocol):
    """One side of a reconciliation (a table, a topic)."""

    def summaries(self, since: datetime, until: datetime, bucket: timedelta,
                  sla: timedelta, within: tuple[timedelta, list[int]] | None = None
                  ) -> dict[int, Summary]: ...

    def summaries_and_finer(self, since: datetime, until: datetime, bucket: timedelta,
                            finer: timedelta, sla: timedelta
                            ) -> tuple[dict[int, Summary], dict[int, Summary]]: ...

    def ids(self, since: datetime, until: datetime, size: timedelta,
            indexes: list[int]) -> set[str]: ...

    def rows_of(self, since: datetime, until: datetime, bucket: timedelta,
                buckets: list[int], ids: set[str]) -> dict[int, list[RowDigest]]: ...

    def close(self) -> None: ...


Drilled = dict[int, tuple[list[RowDigest], list[RowDigest]]]


T = TypeVar("T")


def both(pool: ThreadPoolExecutor, f: Callable[[Reader], T], old: Reader,
         new: Reader) -> tuple[T, T]:
    a, b = pool.submit(f, old), pool.submit(f, new)
    return a.result(), b.result()


def split(size: timedelta) -> tuple[timedelta, int] | None:
    """A sub-bucket size that divides ``size`` exactly (in microseconds, what a timedelta
    holds) into k >= FANOUT parts, so that sub-bucket i lies in bucket i // k; ``None``
    when there is none worth narrowing to (under a millisecond)."""
    us = size // timedelta(microseconds=1)
    for k in range(FANOUT, 4 * FANOUT):
        if us % k == 0 and us // k >= 1000:
            return timedelta(microseconds=us // k), k
    return None


def _spans(subs: dict[int, Summary], parents: dict[int, Summary], p: int, k: int) -> bool:
    """An id of parent bucket ``p`` is in more than one of its sub-buckets (a duplicate
    across them): its sub-buckets can be equal while the parent is not."""
    ids = sum(s.ids for i, s in subs.items() if i // k == p)
    return ids != parents.get(p, Summary(0, 0, 0)).ids


def drill(old: Reader, new: Reader, buckets: list[int], old_sums: dict[int, Summary],
          new_sums: dict[int, Summary], *, since: datetime, until: datetime,
          bucket: timedelta, sla: timedelta, pool: ThreadPoolExecutor,
          progress: Callable[[int, int], None] | None = None,
          first: tuple[dict[int, Summary], dict[int, Summary]] | None = None) -> Drilled:
    """Rows of both sides for each of ``buckets`` (those whose summaries differ), read only
    for the ids that can make a difference. ``first``: both sides' summaries per
    sub-bucket of ``split(bucket)``, when the first pass computed them already."""
    if not buckets:
        return {}
    size, hot = bucket, list(buckets)
    prev_o, prev_n = old_sums, new_sums
    rows_per = max(s.rows for sums in (old_sums, new_sums) for b, s in sums.items()
                   if b in set(buckets))
    whole: dict[timedelta, list[int]] = {}   # (sub-)buckets whose ids are all read
    levels = 0
    while hot and rows_per > SMALL and levels < MAX_LEVELS:
        parts = split(size)
        if parts is None:
            break
        sub, k = parts
        within = (size, hot)

        def finer(r: Reader, s: timedelta = sub, w: tuple[timedelta, list[int]] = within
                  ) -> dict[int, Summary]:
            return r.summaries(since, until, s, sla, w)

        if levels == 0 and first is not None:
            keep = set(hot)
            o = {i: v for i, v in first[0].items() if i // k in keep}
            n = {i: v for i, v in first[1].items() if i // k in keep}
        else:
            o, n = both(pool, finer, old, new)
        spanning = {p for p in hot if _spans(o, prev_o, p, k) or _spans(n, prev_n, p, k)}
        if spanning:
            whole.setdefault(size, []).extend(sorted(spanning))
        hot = [i for i in to_drill(o, n) if i // k not in spanning]
        size, prev_o, prev_n = sub, o, n
        rows_per //= k
        levels += 1
        if progress is not None:
            progress(levels, levels + 2)
    if hot:
        whole.setdefault(size, []).extend(hot)
    ids: set[str] = set()
    for s, indexes in whole.items():
        def of(r: Reader, s: timedelta = s, ix: list[int] = indexes) -> set[str]:
            return r.ids(since, until, s, ix)

        found = both(pool, of, old, new)
        ids |= found[0] | found[1]
    if progress is not None:
        progress(levels + 1, levels + 2)
    o_rows, n_rows = both(pool, lambda r: r.rows_of(since, until, bucket, buckets, ids),
                          old, new)
    if progress is not None:
        progress(levels + 2, levels + 2)
    return {b: (o_rows.get(b, []), n_rows.get(b, [])) for b in buckets}
