"""The Avro form of good events: it fits its schema and keeps what the JSON form has."""

from __future__ import annotations

import io
import json

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson, StructuredEvent

from sidecar.snowplow.avro_schema import ENVELOPE_SCHEMA
from sidecar.snowplow.iglu import Resolver
from sidecar.snowplow.pipeline import CollectorCore
from sidecar.snowplow.routing import Route, Router
from sidecar.snowplow.sink import plan_batch

from .conftest import BASKET, ORDER, post, tp2_body


def test_avro_routes_carry_values_that_round_trip(resolver: Resolver, capture) -> None:  # type: ignore[no-untyped-def]
    core = CollectorCore(resolver, Router([Route("views", kinds=("page_view",), format="avro")],
                                          "events", "avro"), "bad")
    tracker, em = capture()
    tracker.track(PageView(page_url="https://shop.example/", page_title="Home"))
    tracker.track(StructuredEvent(category="c", action="a", value=2.5))
    tracker.track(SelfDescribing(
        SelfDescribingJson(ORDER, {"order_id": "o", "total": 1, "currency": "EUR", "items": 1}),
        context=[SelfDescribingJson(BASKET, {"sku": "s", "quantity": 1})]))
    processed = core.process(post(tp2_body(em.events)))
    schema = parse_schema(ENVELOPE_SCHEMA)
    for out in processed.outputs:
        assert out.avro is not None and dict(out.headers)["content-type"].endswith(b"avro")
        buf = io.BytesIO()
        schemaless_writer(buf, schema, out.avro)
        buf.seek(0)
        back = schemaless_reader(buf, schema)
        as_json = json.loads(out.value)
        assert back["event_id"] == as_json["event_id"]
        assert back["payload"]["event"] == as_json["payload"]["event"]
        assert back["payload"]["page_url"] == as_json["payload"]["page_url"]
        assert back["payload"]["params"]["eid"] == as_json["event_id"]
        if as_json["payload"]["unstruct_event"]:
            assert json.loads(back["payload"]["unstruct_event"]) == \
                as_json["payload"]["unstruct_event"]
            assert json.loads(back["payload"]["contexts"]) == as_json["payload"]["contexts"]
    assert processed.outputs[1].avro["payload"]["se_value"] == 2.5  # type: ignore[index]


def test_json_routes_carry_no_avro(core: CollectorCore, capture) -> None:  # type: ignore[no-untyped-def]
    tracker, em = capture()
    tracker.track(PageView(page_url="https://shop.example/"))
    assert core.process(post(tp2_body(em.events))).outputs[0].avro is None


def test_the_sink_encodes_avro_outputs_only(resolver: Resolver, capture) -> None:  # type: ignore[no-untyped-def]
    core = CollectorCore(resolver, Router([Route("views", kinds=("page_view",), format="avro")],
                                          "events"), "bad")
    tracker, em = capture()
    tracker.track(PageView(page_url="https://shop.example/"))
    tracker.track(StructuredEvent(category="c", action="a"))
    outs = core.process(post(tp2_body(em.events))).outputs
    records, fresh, dups = plan_batch(outs, set(), lambda o: b"AVRO" if o.avro else o.value)
    assert [r.value[:4] for r in records] == [b"AVRO", b'{"ev']
    assert fresh == [o.dedup_id for o in outs] and dups == set()
