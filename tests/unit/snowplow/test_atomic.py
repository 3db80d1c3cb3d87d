"""Snowplow's layout in enrich: the atomic.events row and the entity rows of real tracker
events, the bad row when a value does not fit, and the writer's extra records."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from confluent_kafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson, StructuredEvent

from sidecar.exactly_once.ledger import RecentIds
from sidecar.exactly_once.producer import OutRecord, RecordRejected
from sidecar.snowplow.atomic import events
from sidecar.snowplow.atomic.layout import AtomicLayout
from sidecar.snowplow.enrich.avro import compile_writer
from sidecar.snowplow.enrich.writer import EnrichWriter, OutputRejected, Prepared
from sidecar.snowplow.iglu import Resolver
from sidecar.snowplow.pipeline import CollectorCore, Output
from sidecar.snowplow.routing import Router

from .conftest import BASKET, ORDER, post, tp2_body

ETL_MS = 1_700_000_000_500
PAGE = ("https://shop.example:8443/basket/view?utm_source=news&utm_medium=email"
        "&_sp=9b1f0f2c-4a51-4a8e-a0a4-0c1f0b8e2d11.1699999999000#top")


def layout(resolver: Resolver) -> AtomicLayout:
    return AtomicLayout(resolver, "snowplow-atomic.events", "snowplow-atomic.",
                        v_collector="conveyor-snowplow/test", v_etl="conveyor-enrich/test",
                        clock=lambda: ETL_MS)


@pytest.fixture
def core(resolver: Resolver) -> CollectorCore:
    return CollectorCore(resolver, Router([], "events"), "bad", atomic=layout(resolver))


def _avro(schema: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    parsed = fastavro.parse_schema(schema)
    fastavro.schemaless_writer(buf, parsed, value)
    buf.seek(0)
    back = fastavro.schemaless_reader(buf, parsed)
    assert isinstance(back, dict)
    return back


def test_real_tracker_events_become_atomic_rows_and_entity_rows(  # type: ignore[no-untyped-def]
        core: CollectorCore, capture) -> None:
    tracker, em = capture()
    tracker.track(PageView(page_url=PAGE, page_title="Basket",
                           referrer="https://www.google.com/search?q=tea"))
    tracker.track(StructuredEvent(category="basket", action="add", value=2.5))
    tracker.track(SelfDescribing(
        SelfDescribingJson(ORDER, {"order_id": "o-1", "total": 12, "currency": "EUR",
                                   "items": 2}),
        context=[SelfDescribingJson(BASKET, {"sku": "tea", "quantity": 2}),
                 SelfDescribingJson(BASKET, {"sku": "milk", "quantity": 1})]))
    view, struct, order = core.process(post(tp2_body(em.events))).outputs
    assert [o.outcome for o in (view, struct, order)] == ["good"] * 3

    (v,) = view.extra
    assert v.topic == "snowplow-atomic.events" and v.key == view.key
    row = _avro(events.SCHEMA, v.value)
    assert row["event"] == "page_view" and row["event_id"] == view.dedup_id
    assert (row["page_urlscheme"], row["page_urlhost"], row["page_urlport"],
            row["page_urlpath"], row["page_urlfragment"]) == (
        "https", "shop.example", 8443, "/basket/view", "top")
    assert (row["refr_urlhost"], row["refr_urlport"], row["refr_urlquery"]) == (
        "www.google.com", 443, "q=tea")
    assert row["refr_domain_userid"] == "9b1f0f2c-4a51-4a8e-a0a4-0c1f0b8e2d11"
    assert row["refr_dvce_tstamp"] is not None
    assert row["etl_tstamp"] is not None and row["collector_tstamp"] is not None
    assert (row["v_collector"], row["v_etl"]) == ("conveyor-snowplow/test",
                                                  "conveyor-enrich/test")
    assert row["app_id"] == "shop" and row["platform"] == "pc"
    assert row["page_title"] == "Basket" and row["event_vendor"] is None

    (s,) = struct.extra
    srow = _avro(events.SCHEMA, s.value)
    assert (srow["event"], srow["se_category"], srow["se_action"], srow["se_value"]) == (
        "struct", "basket", "add", 2.5)

    atomic, placed, tea, milk = order.extra
    orow = _avro(events.SCHEMA, atomic.value)
    assert orow["event"] == "unstruct"
    assert (orow["event_vendor"], orow["event_name"], orow["event_format"],
            orow["event_version"]) == ("com.conveyor.grocer", "order_placed", "jsonschema",
                                       "1-0-0")
    assert placed.topic == "snowplow-atomic.com_conveyor_grocer_order_placed_1"
    assert tea.topic == milk.topic == "snowplow-atomic.com_conveyor_grocer_basket_item_1"
    for index, (rec, sku) in enumerate(((tea, "tea"), (milk, "milk")), start=1):
        back = _avro(rec.schema, rec.value)
        assert back["root_id"] == order.dedup_id and back["entity_index"] == index
        assert back["sku"] == sku and back["schema_vendor"] == "com.conveyor.grocer"
        assert back["schema_name"] == "basket_item" and back["schema_version"] == "1-0-0"
        assert back["root_tstamp"] is not None
    assert _avro(placed.schema, placed.value)["order_id"] == "o-1"


def test_a_value_over_its_column_makes_the_event_a_bad_row(  # type: ignore[no-untyped-def]
        core: CollectorCore, capture) -> None:
    tracker, em = capture()
    tracker.track(PageView(page_url="https://shop.example/?" + "q" * 5000))
    (out,) = core.process(post(tp2_body(em.events))).outputs
    assert (out.outcome, out.check, out.reason) == ("bad", "enrichment_failures",
                                                    "atomic_fields")
    assert b"page_url" in out.value and not out.extra


def test_a_transaction_id_that_is_no_integer_makes_the_event_a_bad_row(
        core: CollectorCore) -> None:
    body = tp2_body([{"e": "pv", "eid": "5d0a7f26-7a0e-4a38-9d6b-1f0d9d8b7a10", "tv": "t",
                      "p": "web", "url": "https://shop.example/", "tid": "not-a-number"}])
    (out,) = core.process(post(body)).outputs
    assert (out.outcome, out.reason) == ("bad", "atomic_fields") and b"txn_id" in out.value


def test_the_compiled_writer_writes_atomic_rows_as_fastavro_does(  # type: ignore[no-untyped-def]
        core: CollectorCore, capture) -> None:
    tracker, em = capture()
    tracker.track(PageView(page_url=PAGE))
    tracker.track(StructuredEvent(category="c", action="a", value=1.0))
    write = compile_writer(events.SCHEMA)
    for out in core.process(post(tp2_body(em.events))).outputs:
        value = out.extra[0].value
        assert write(value) == write.reference(value)  # type: ignore[attr-defined]


_TEXT = st.one_of(st.none(), st.text(max_size=60), st.from_regex(r"-?\d{1,12}", fullmatch=True))


@settings(max_examples=300, deadline=None)
@given(params=st.dictionaries(st.sampled_from(
    sorted({*events._PARAMS.values(), *events._FLAGS.values(), *events._SIZES})), _TEXT),
    url=_TEXT, sid=_TEXT)
def test_a_row_is_built_or_refused_with_a_value_error_never_another_exception(
        params: dict[str, Any], url: str | None, sid: str | None) -> None:
    payload = {"event": "page_view", "collector_tstamp": 1, "page_url": url,
               "domain_sessionid": sid, "params": params}
    try:
        row = events.row(payload, event_id="5d0a7f26-7a0e-4a38-9d6b-1f0d9d8b7a10",
                         etl_tstamp_ms=2, v_collector="c", v_etl="e")
    except ValueError:
        return
    _avro(events.SCHEMA, row)   # and what is built fits the schema


# -- the writer: extra records ride with their output, or not at all -----------------------

def _output(eid: str, topics: tuple[str, ...]) -> Output:
    from sidecar.snowplow.atomic.layout import Extra
    extra = tuple(Extra(t, eid.encode(), {"v": eid}, {"type": "record", "name": "x",
                                                        "fields": []}) for t in topics)
    return Output("events", eid.encode(), b"{}", "good", eid, "page_view", extra=extra)


class Commit:
    def __init__(self, refuse: int | None = None) -> None:
        self.refuse = refuse
        self.records: list[OutRecord] = []

    def __call__(self, records: list[OutRecord], **kw: Any) -> None:
        if self.refuse is not None:
            raise RecordRejected(self.refuse, "too large")
        self.records = list(records)


def _prepared(outputs: list[Output]) -> Prepared:
    extras = {i: [OutRecord(x.topic, b"x-" + x.key, x.key) for x in o.extra]
              for i, o in enumerate(outputs) if o.extra}
    return Prepared(outputs, [o.value for o in outputs], {}, extras)


def test_extra_records_follow_every_output_written_and_none_of_a_duplicate() -> None:
    commit = Commit()
    window = RecentIds(100)
    window.add_many(["dup"], 0)
    writer = EnrichWriter(commit, None, window, None)
    outputs = [_output("a", ("atomic", "ent")), _output("dup", ("atomic",)),
               _output("b", ("atomic",))]
    result = writer.commit(_prepared(outputs), [TopicPartition("raw", 0, 5)], object())
    assert result.duplicates == frozenset({1})
    assert [(r.topic, r.key) for r in commit.records] == [
        ("events", b"a"), ("events", b"b"),
        ("atomic", b"a"), ("ent", b"a"), ("atomic", b"b")]


@pytest.mark.parametrize(("refused", "output"), [(0, 0), (1, 2), (2, 0), (3, 0), (4, 2)])
def test_a_refused_extra_record_names_the_output_it_belongs_to(refused: int,
                                                               output: int) -> None:
    window = RecentIds(100)
    window.add_many(["dup"], 0)
    writer = EnrichWriter(Commit(refuse=refused), None, window, None)
    outputs = [_output("a", ("atomic", "ent")), _output("dup", ("atomic",)),
               _output("b", ("atomic",))]
    with pytest.raises(OutputRejected) as exc:
        writer.commit(_prepared(outputs), [], object())
    assert exc.value.output_index == output
