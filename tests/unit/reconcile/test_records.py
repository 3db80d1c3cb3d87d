"""A topic's records as one side of the comparison: the same digests the SQL side computes,
canaries left out, anything unreadable a Skip (never an exception)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconcile.core import KINDS, compare
from reconcile.records import (
    Landing,
    Record,
    RecordSpec,
    Skip,
    checksum,
    joined,
    parse,
    pg_text,
)

from .test_core import checksum_of, digests, model, summaries

T0 = datetime(2026, 11, 30, 10, tzinfo=UTC)
BUCKET = timedelta(hours=1)


def envelope(eid: str, at: datetime, **payload: Any) -> bytes:
    return json.dumps({"event_id": eid, "event_type": "order_placed", "source": "rabbitmq",
                       "accepted_at": at.isoformat(), "attributes": {}, "payload": payload}
                      ).encode()


def test_a_record_hashes_as_the_sql_side_hashes_its_row() -> None:
    spec = RecordSpec(columns=("total_cents", "order_id", "note"))
    r = parse(envelope("e1", T0, total_cents=1001, order_id="o-1", note=None), spec, None)
    assert isinstance(r, Record)
    # SQL: coalesce(total_cents::text, '\N') || '|' || ... over the flattened columns.
    assert r.values == "1001|o-1|\\N"
    assert checksum(r.event_id, r.values) == checksum_of("e1", "1001|o-1|\\N")
    assert joined([]) == "" and checksum("e1", "") == checksum_of("e1", "")


def test_values_render_as_postgresql_renders_them_as_text() -> None:
    assert pg_text(True) == "true" and pg_text(False) == "false"
    assert pg_text(1001) == "1001" and pg_text(Decimal("10.50")) == "10.50"
    assert pg_text(2.5) == "2.5" and pg_text(3.0) == "3"
    assert pg_text(datetime(2024, 5, 1, 10, 0, tzinfo=UTC)) == "2024-05-01 10:00:00+00"
    assert pg_text(datetime(2024, 5, 1, 12, 0, 0, 120000,
                            tzinfo=UTC) - timedelta(hours=2)) == "2024-05-01 10:00:00.12+00"
    assert pg_text(b"\x01\xff") == "\\x01ff"
    assert pg_text(None) is None


def test_fields_are_found_in_the_envelope_then_its_payload() -> None:
    doc = envelope("e1", T0, total_cents=5, position={"x": 1.5})
    spec = RecordSpec(columns=("source", "total_cents", "payload.position.x", "missing"))
    r = parse(doc, spec, None)
    assert isinstance(r, Record) and r.values == "rabbitmq|5|1.5|\\N"


def test_avro_values_are_read_with_the_decoder_and_its_failures_are_skips() -> None:
    avro_doc = {"event_id": "e1", "accepted_at": T0, "payload": {"total_cents": 7}}
    spec = RecordSpec(columns=("total_cents",))
    r = parse(b"\x00\x00\x00\x00\x01rest", spec, None, avro=lambda _v: avro_doc)
    assert isinstance(r, Record) and r.time == T0 and r.values == "7"

    def broken(_v: bytes) -> Any:
        raise ConnectionError("registry down")

    assert parse(b"\x00\x00\x00\x00\x01", spec, None, avro=broken) == Skip(
        "Avro value not decoded: ConnectionError")
    assert isinstance(parse(b"\x00abc", spec, None, avro=None), Skip)


def test_canaries_are_left_out_by_id_prefix_or_by_a_field() -> None:
    spec = RecordSpec(exclude_id_prefix="canary-", exclude=(("attributes.canary", "true"),))
    assert parse(envelope("canary-1", T0), spec, None) is None
    flagged = json.loads(envelope("e2", T0))
    flagged["attributes"] = {"canary": "true"}
    assert parse(json.dumps(flagged).encode(), spec, None) is None
    assert isinstance(parse(envelope("e3", T0), spec, None), Record)


def test_records_without_an_id_or_an_event_time_are_skips_with_the_reason() -> None:
    spec = RecordSpec()
    assert parse(b'{"accepted_at": "2026-11-30T10:00:00Z"}', spec, None) == Skip("no event_id")
    assert parse(b'{"event_id": "e"}', spec, None) == Skip("no accepted_at (event time)")
    assert parse(None, spec, None) == Skip("tombstone (no value)")
    assert parse(b"[" * 100_000, spec, None) == Skip(
        "JSON nested deeper than the reader's bound")
    # Epoch millis are event times too (what a JSON producer may write).
    ms = int(T0.timestamp() * 1000)
    r = parse(json.dumps({"event_id": "e", "accepted_at": ms}).encode(), spec, None)
    assert isinstance(r, Record) and r.time == T0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=10)
docs = st.dictionaries(st.sampled_from(["event_id", "accepted_at", "payload", "attributes",
                                        "x"]), json_values, max_size=5)


@settings(max_examples=500, deadline=None)
@given(value=st.binary(max_size=200) | docs.map(lambda d: json.dumps(d).encode()),
       columns=st.lists(st.sampled_from(["x", "payload.x", "event_id", "a.b.c"]), max_size=3))
def test_parse_never_raises_whatever_the_bytes(value: bytes, columns: list[str]) -> None:
    spec = RecordSpec(columns=tuple(columns), exclude=(("x", "1"),))
    out = parse(value, spec, T0)
    assert out is None or isinstance(out, Record | Skip)
    out = parse(b"\x00" + value, spec, T0, avro=lambda v: json.loads(v[1:]))
    assert out is None or isinstance(out, Record | Skip)


def test_late_and_outside_the_window_are_counted() -> None:
    landing = Landing(T0, T0 + timedelta(hours=2), BUCKET, timedelta(minutes=15))
    landing.add(Record("a", T0, T0 + timedelta(minutes=1), ""))
    landing.add(Record("b", T0, T0 + timedelta(minutes=20), ""))       # late
    landing.add(Record("c", T0 + timedelta(hours=3), None, ""))          # outside
    landing.add(Record("d", T0 - timedelta(seconds=1), None, ""))        # outside
    (s,) = landing.summaries().values()
    assert (s.rows, s.ids, s.late) == (2, 2, 1) and landing.outside == 2


# A row: (bucket, event id, compared value, late?), as in test_core.
ids = st.sampled_from([f"e{i}" for i in range(10)])
rows = st.lists(st.tuples(st.integers(0, 3), ids, st.sampled_from(["x", "y"]), st.booleans()),
                max_size=30)


@settings(max_examples=300, deadline=None)
@given(topic=rows, table=rows)
def test_a_topic_against_a_table_finds_what_brute_force_finds(topic: list[Any],
                                                              table: list[Any]) -> None:
    """The topic side through Landing, the table side as its SQL computes it (test_core's
    model of the queries): the comparison finds exactly what a brute force finds."""
    since = T0
    landing = Landing(since, since + 4 * BUCKET, BUCKET, timedelta(minutes=15))
    base = landing.index(since)
    for b, eid, value, late in topic:
        at = since + b * BUCKET
        landing.add(Record(eid, at, at + timedelta(minutes=20 if late else 1), value))
    table_rows = [(base + b, e, v, lt) for b, e, v, lt in table]
    report = compare(landing.summaries(), summaries(table_rows), since=since,
                     until=since + 4 * BUCKET, bucket=BUCKET,
                     rows=lambda b: (landing.rows(since + (b - base) * BUCKET, since),
                                     digests(table_rows, b)))
    topic_rows = [(base + b, e, v, lt) for b, e, v, lt in topic]
    assert {k: report.total(k) for k in KINDS} == model(topic_rows, table_rows)
    assert report.total("late_old") == sum(r[3] for r in topic)
