"""The reconciliation's logic against a brute-force model: checksums may only skip buckets
that really hold the same rows once each, and every difference lands in the right count."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.core import KINDS, RowDigest, Summary, compare, to_drill

BUCKET = timedelta(hours=1)
SINCE = datetime(2026, 11, 30, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)

# A row: (bucket, event id, compared value, late?)
Row = tuple[int, str, str, bool]


def digest(value: str) -> str:
    return hashlib.md5(value.encode()).hexdigest()


def checksum_of(eid: str, value: str) -> int:
    # What the SQL does: the first 15 hex digits of md5(id | values) as a 60-bit integer.
    return int(hashlib.md5(f"{eid}|{value}".encode()).hexdigest()[:15], 16)


def summaries(rows: list[Row]) -> dict[int, Summary]:
    by: dict[int, list[Row]] = defaultdict(list)
    for r in rows:
        by[r[0]].append(r)
    return {b: Summary(len(rs), len({r[1] for r in rs}),
                       sum(checksum_of(r[1], r[2]) for r in rs), sum(r[3] for r in rs))
            for b, rs in by.items()}


def digests(rows: list[Row], b: int) -> list[RowDigest]:
    by: dict[str, list[str]] = defaultdict(list)
    for bb, eid, value, _ in rows:
        if bb == b:
            by[eid].append(digest(value))
    return [RowDigest(e, len(ds), frozenset(ds)) for e, ds in by.items()]


def run(old: list[Row], new: list[Row]):  # type: ignore[no-untyped-def]
    drilled: list[int] = []

    def rows(b: int) -> tuple[list[RowDigest], list[RowDigest]]:
        drilled.append(b)
        return digests(old, b), digests(new, b)

    return compare(summaries(old), summaries(new), since=SINCE, until=UNTIL, bucket=BUCKET,
                   rows=rows), drilled


def model(old: list[Row], new: list[Row]) -> dict[str, int]:
    """Brute force over every bucket, no checksums."""
    out = dict.fromkeys(KINDS, 0)
    for b in {r[0] for r in old} | {r[0] for r in new}:
        o = Counter(r[1] for r in old if r[0] == b)
        n = Counter(r[1] for r in new if r[0] == b)
        out["missing_in_new"] += len(o.keys() - n.keys())
        out["missing_in_old"] += len(n.keys() - o.keys())
        out["duplicated_old"] += sum(1 for c in o.values() if c > 1)
        out["duplicated_new"] += sum(1 for c in n.values() if c > 1)
        for eid in o.keys() & n.keys():
            ov = {r[2] for r in old if r[0] == b and r[1] == eid}
            nv = {r[2] for r in new if r[0] == b and r[1] == eid}
            out["mismatched"] += ov != nv
    return out


def test_a_legacy_table_with_known_losses_duplicates_and_late_rows() -> None:
    ours = [(i % 24, f"e{i}", f"v{i}", False) for i in range(1000)]
    legacy = [r for r in ours if r[1] not in {"e5", "e17", "e400"}]       # 3 lost
    legacy += [ours[10], ours[11]]                                        # 2 twice
    legacy = [(b, e, "changed" if e == "e99" else v, e in {"e1", "e2"})   # 1 differs, 2 late
              for b, e, v, _ in legacy]
    report, drilled = run(legacy, ours)
    assert {k: report.total(k) for k in KINDS} == {
        "missing_in_new": 0, "missing_in_old": 3, "duplicated_new": 0, "duplicated_old": 2,
        "mismatched": 1}
    assert report.total("late_old") == 2 and report.total("late_new") == 0
    assert len(drilled) == 6 < 24, "only buckets that differ are read row by row"
    assert not report.clean()
    example = next(b for b in report.buckets if b.missing_in_old)
    assert example.examples["missing_in_old"]


def test_identical_sides_are_clean_without_reading_a_row() -> None:
    rows = [(i % 5, f"e{i}", "v", i % 7 == 0) for i in range(200)]
    report, drilled = run(rows, list(reversed(rows)))
    assert report.clean() and drilled == []
    assert report.total("late_new") == 29 and not report.clean(count_late=True)


def test_a_duplicate_hidden_by_a_loss_in_the_same_bucket_is_found() -> None:
    """Counts alone would match (one row lost, another twice): distinct ids do not."""
    new = [(0, "a", "v", False), (0, "b", "v", False)]
    old = [(0, "a", "v", False), (0, "a", "v", False)]
    assert to_drill(summaries(old), summaries(new)) == [0]
    report, _ = run(old, new)
    assert report.total("missing_in_old") == 1 and report.total("duplicated_old") == 1


ids = st.sampled_from([f"e{i}" for i in range(12)])
rows = st.lists(st.tuples(st.integers(0, 3), ids, st.sampled_from(["x", "y"]), st.booleans()),
                max_size=30)


@settings(max_examples=300, deadline=None)
@given(old=rows, new=rows)
def test_never_misses_a_difference_the_brute_force_finds(old: list[Row],
                                                         new: list[Row]) -> None:
    report, _ = run(old, new)
    assert {k: report.total(k) for k in KINDS} == model(old, new)
    assert report.clean() == (not any(model(old, new).values()))
