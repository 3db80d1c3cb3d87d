"""Tracker parameters into typed events: fields, ids, timestamps, embedded JSON, schemas."""

from __future__ import annotations

import base64
import json
from typing import Any, ClassVar

import pytest
from snowplow_tracker import (
    PageView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Subject,
)

from sidecar.snowplow.events import EventRejected, RequestContext, build_event, derive_event_id
from sidecar.snowplow.iglu import Resolver

from .conftest import BASKET, DEVICE, ORDER

CTX = RequestContext(collector_tstamp_ms=1_700_000_010_000, network_userid="nuid-cookie",
                     ip="10.0.0.1", useragent="agent/1", referer="https://shop.example/")
GOOD_ORDER = {"order_id": "o-1", "total": 12.5, "currency": "EUR", "items": 2}


def _order(capture, data: dict[str, Any] | None = None, contexts: list | None = None,  # type: ignore[no-untyped-def]
           encode_base64: bool = True) -> dict[str, Any]:
    tracker, em = capture(encode_base64=encode_base64)
    tracker.track(SelfDescribing(SelfDescribingJson(ORDER, data or GOOD_ORDER),
                                 context=contexts))
    return em.events[0]


class TestStandardEvents:
    def test_page_view(self, capture, resolver: Resolver) -> None:  # type: ignore[no-untyped-def]
        tracker, em = capture()
        eid = tracker.track(PageView(page_url="https://shop.example/p", page_title="P",
                                     referrer="https://search.example/"))
        ev = build_event(em.events[0], CTX, resolver)
        assert (ev.event_id, ev.kind, ev.event_type) == (eid, "page_view", "page_view")
        p = ev.payload()
        assert p["page_url"] == "https://shop.example/p"
        assert p["page_title"] == "P"
        assert p["page_referrer"] == "https://search.example/"
        assert (p["app_id"], p["platform"], p["name_tracker"]) == ("shop", "pc", "test")
        assert p["v_tracker"].startswith("py-")
        assert (p["user_ipaddress"], p["useragent"], p["request_referer"]) == (
            "10.0.0.1", "agent/1", "https://shop.example/")
        assert p["collector_tstamp"] == CTX.collector_tstamp_ms
        assert p["network_userid"] == "nuid-cookie"
        assert ev.attributes()["app_id"] == "shop"

    def test_structured_event(self, capture, resolver: Resolver) -> None:  # type: ignore[no-untyped-def]
        tracker, em = capture()
        tracker.track(StructuredEvent(category="basket", action="add", label="sku-1",
                                      property_="fruit", value=2.5))
        p = build_event(em.events[0], CTX, resolver).payload()
        assert (p["se_category"], p["se_action"], p["se_label"], p["se_property"],
                p["se_value"]) == ("basket", "add", "sku-1", "fruit", 2.5)

    def test_subject_fields_land_in_payload_and_params(self, capture, resolver) -> None:  # type: ignore[no-untyped-def]
        tracker, em = capture()
        tracker.set_subject(Subject().set_user_id("u-7").set_lang("nl").set_platform("mob")
                            .set_domain_user_id("d-1").set_screen_resolution(390, 844))
        tracker.track(PageView(page_url="https://shop.example/"))
        p = build_event(em.events[0], CTX, resolver).payload()
        assert (p["user_id"], p["domain_userid"], p["platform"]) == ("u-7", "d-1", "mob")
        assert p["params"]["lang"] == "nl" and p["params"]["res"] == "390x844"


class TestSelfDescribing:
    @pytest.mark.parametrize("encode_base64", [True, False], ids=["ue_px+cx", "ue_pr+co"])
    def test_event_and_contexts(self, capture, resolver, encode_base64: bool) -> None:  # type: ignore[no-untyped-def]
        ctxs = [SelfDescribingJson(BASKET, {"sku": "a", "quantity": 1}),
                SelfDescribingJson(DEVICE, {"device_id": "van-3", "kind": "van"})]
        params = _order(capture, contexts=ctxs, encode_base64=encode_base64)
        assert ("ue_px" in params) is encode_base64 and ("cx" in params) is encode_base64
        ev = build_event(params, CTX, resolver)
        assert ev.kind == "self_describing"
        assert ev.event_type == "com.conveyor.grocer/order_placed"
        assert ev.schema == ORDER
        p = ev.payload()
        assert p["unstruct_event"] == {"schema": ORDER, "data": GOOD_ORDER}
        assert [c["schema"] for c in p["contexts"]] == [BASKET, DEVICE]
        assert not {"ue_px", "ue_pr", "cx", "co"} & set(p["params"])
        assert ev.attributes()["schema"] == ORDER

    def test_unpadded_base64_from_other_trackers(self, capture, resolver) -> None:  # type: ignore[no-untyped-def]
        params = _order(capture)
        params["ue_px"] = params["ue_px"].rstrip("=")
        assert build_event(params, CTX, resolver).unstruct == {"schema": ORDER,
                                                               "data": GOOD_ORDER}

    def test_schema_violation_names_the_field(self, capture, resolver) -> None:  # type: ignore[no-untyped-def]
        params = _order(capture, {**GOOD_ORDER, "total": "12"})
        with pytest.raises(EventRejected) as err:
            build_event(params, CTX, resolver)
        assert (err.value.check, err.value.reason) == ("schema", "schema_violation")
        assert err.value.violations[0].path == "$.ue.data.data.total"

    def test_context_violation(self, capture, resolver) -> None:  # type: ignore[no-untyped-def]
        params = _order(capture, contexts=[SelfDescribingJson(BASKET, {"sku": "a",
                                                                       "quantity": 0})])
        with pytest.raises(EventRejected) as err:
            build_event(params, CTX, resolver)
        assert err.value.check == "schema"
        assert err.value.violations[0].path == "$.co.data[0].data.quantity"
        assert err.value.violations[0].schema == BASKET

    def test_unknown_schema(self, capture, resolver) -> None:  # type: ignore[no-untyped-def]
        tracker, em = capture()
        tracker.track(SelfDescribing(SelfDescribingJson(
            "iglu:com.acme/unknown/jsonschema/1-0-0", {"a": 1})))
        with pytest.raises(EventRejected) as err:
            build_event(em.events[0], CTX, resolver)
        assert (err.value.check, err.value.reason) == ("schema", "schema_not_found")

    def test_bad_base64(self, capture, resolver) -> None:  # type: ignore[no-untyped-def]
        params = {**_order(capture), "ue_px": "not*base64"}
        with pytest.raises(EventRejected) as err:
            build_event(params, CTX, resolver)
        assert (err.value.check, err.value.reason) == ("protocol", "base64")

    @pytest.mark.parametrize("field,value", [
        ("ue_pr", "{not json"),
        ("ue_px", base64.urlsafe_b64encode(b"{not json").decode()),
        ("ue_px", base64.urlsafe_b64encode(b"\xff\xfe").decode()),
    ])
    def test_embedded_json_that_is_not(self, capture, resolver, field: str, value: str) -> None:  # type: ignore[no-untyped-def]
        params = {k: v for k, v in _order(capture).items() if k != "ue_px"}
        params[field] = value
        with pytest.raises(EventRejected) as err:
            build_event(params, CTX, resolver)
        assert (err.value.check, err.value.reason) == ("protocol", "embedded_json")

    def test_wrapper_must_be_unstruct_event(self, capture, resolver) -> None:  # type: ignore[no-untyped-def]
        params = {k: v for k, v in _order(capture).items() if k != "ue_px"}
        params["ue_pr"] = json.dumps({"schema": ORDER, "data": GOOD_ORDER})
        with pytest.raises(EventRejected) as err:
            build_event(params, CTX, resolver)
        assert err.value.check == "protocol"

    def test_ue_without_payload(self, capture, resolver) -> None:  # type: ignore[no-untyped-def]
        params = {k: v for k, v in _order(capture).items() if k != "ue_px"}
        with pytest.raises(EventRejected) as err:
            build_event(params, CTX, resolver)
        assert err.value.reason == "tracker_protocol"


class TestIdsAndTimestamps:
    BASE: ClassVar[dict[str, str]] = {"e": "pv", "tv": "js-3.0", "p": "web", "url": "https://a.example/"}

    def test_true_timestamp_wins(self, resolver: Resolver) -> None:
        ev = build_event({**self.BASE, "dtm": "1700000000000", "stm": "1700000001000",
                          "ttm": "1600000000000"}, CTX, resolver)
        assert ev.occurred_at_ms == 1_600_000_000_000

    def test_derived_timestamp_cancels_device_clock_skew(self, resolver: Resolver) -> None:
        # Device clock is a day behind; it took 2 s from creating to sending the event.
        ev = build_event({**self.BASE, "dtm": "1699913608000", "stm": "1699913610000"},
                         CTX, resolver)
        assert ev.occurred_at_ms == CTX.collector_tstamp_ms - 2000
        assert ev.payload()["dvce_created_tstamp"] == 1_699_913_608_000

    def test_created_only(self, resolver: Resolver) -> None:
        ev = build_event({**self.BASE, "dtm": "1700000000000"}, CTX, resolver)
        assert ev.occurred_at_ms == 1_700_000_000_000

    def test_missing_eid_is_derived_stably_across_retries(self, resolver: Resolver) -> None:
        a = build_event({**self.BASE, "dtm": "1700000000000", "stm": "1700000000100"},
                        CTX, resolver)
        b = build_event({**self.BASE, "dtm": "1700000000000", "stm": "1700000005000"},
                        CTX, resolver)
        c = build_event({**self.BASE, "dtm": "1700000000001"}, CTX, resolver)
        assert a.event_id == b.event_id != c.event_id
        assert a.event_id_derived and a.attributes()["event_id_source"] == "derived"
        assert derive_event_id({"x": "1", "stm": "2"}) == derive_event_id({"x": "1"})

    def test_eid_is_normalised_to_lower_case(self, resolver: Resolver) -> None:
        eid = "6F1C3A0E-5D8B-4B7E-9A51-2C1F0D7E4B3A"
        assert build_event({**self.BASE, "eid": eid}, CTX, resolver).event_id == eid.lower()

    @pytest.mark.parametrize("override", [
        {"eid": "not-a-uuid"}, {"dtm": "yesterday"}, {"stm": "1e12"}, {"ttm": "12"},
        {"e": "zz"}, {"tv": ""}, {"p": None}, {"url": 5},
    ])
    def test_protocol_violations(self, resolver: Resolver, override: dict[str, Any]) -> None:
        params = {k: v for k, v in {**self.BASE, **override}.items() if v is not None}
        with pytest.raises(EventRejected) as err:
            build_event(params, CTX, resolver)
        assert (err.value.check, err.value.reason) == ("protocol", "tracker_protocol")

    def test_tracker_set_network_user_id_and_ip_win(self, resolver: Resolver) -> None:
        ev = build_event({**self.BASE, "tnuid": "tracker-nuid", "ip": "192.0.2.7"}, CTX,
                         resolver)
        assert ev.payload()["network_userid"] == "tracker-nuid"
        assert ev.payload()["user_ipaddress"] == "192.0.2.7"

    def test_legacy_struct_name(self, resolver: Resolver) -> None:
        assert build_event({**self.BASE, "e": "ev"}, CTX, resolver).kind == "struct"
