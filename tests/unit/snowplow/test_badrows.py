"""Every kind of bad row, produced through the core the way the server calls it.

Each bad row must validate against the bad-row schema we ship, name the failed check, and
carry the original bytes; and every request accounts for all it received.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson

from sidecar.snowplow.badrows import BadRow, RequestInfo, encode_original
from sidecar.snowplow.iglu import Resolver, SchemaKey
from sidecar.snowplow.pipeline import CollectorCore, Limits, Output, RawRequest
from sidecar.snowplow.routing import Router

from .conftest import BAD_ROW, ORDER, get, post, tp2_body


def _bad(out: Output, resolver: Resolver) -> dict[str, Any]:
    assert out.outcome == "bad" and out.topic == "bad"
    doc = json.loads(out.value)
    assert doc["schema"] == BAD_ROW
    assert resolver.validate(SchemaKey.parse(BAD_ROW), doc["data"]) == []
    data: dict[str, Any] = doc["data"]
    assert (data["check"], data["reason"]) == (out.check, out.reason)
    return data


def _one_bad(core: CollectorCore, req: RawRequest) -> dict[str, Any]:
    processed = core.process(req)
    assert len(processed.outputs) == 1
    return _bad(processed.outputs[0], core.resolver)


class TestWholeRequest:
    def test_wrong_content_type(self, core: CollectorCore) -> None:
        data = _one_bad(core, post(b"e=pv", {"content-type": "application/x-www-form-urlencoded"}))
        assert (data["check"], data["reason"]) == ("protocol", "content_type")
        assert data["original"] == {"encoding": "utf-8", "data": "e=pv", "size": 4,
                                    "truncated": False}
        assert data["event_index"] is None and data["event_id"] is None
        assert data["request"]["content_type"] == "application/x-www-form-urlencoded"

    def test_not_json(self, core: CollectorCore) -> None:
        data = _one_bad(core, post(b'{"schema": '))
        assert (data["check"], data["reason"]) == ("protocol", "json")
        assert data["original"]["data"] == '{"schema": '

    def test_binary_body_is_kept_as_base64(self, core: CollectorCore) -> None:
        data = _one_bad(core, post(b"\x00\xff\xfe\x01"))
        assert data["reason"] == "encoding"
        assert data["original"]["encoding"] == "base64"
        assert base64.b64decode(data["original"]["data"]) == b"\x00\xff\xfe\x01"

    def test_oversize_body_keeps_a_sample_and_the_size(self, resolver: Resolver) -> None:
        core = CollectorCore(resolver, Router([], "events"), "bad",
                             limits=Limits(max_body_bytes=2048, max_original_bytes=512))
        data = _one_bad(core, post(b"x" * 2049, body_size=50_000, body_too_large=True))
        assert (data["check"], data["reason"]) == ("size", "request_too_large")
        assert data["original"]["size"] == 50_000 and data["original"]["truncated"] is True
        assert len(data["original"]["data"]) == 512

    def test_gzip_bomb_is_a_size_bad_row(self, resolver: Resolver) -> None:
        core = CollectorCore(resolver, Router([], "events"), "bad",
                             limits=Limits(max_inflated_bytes=4096))
        body = gzip.compress(b" " * 100_000)
        data = _one_bad(core, post(body, {"content-encoding": "gzip"}))
        assert (data["check"], data["reason"]) == ("size", "request_too_large")

    def test_pixel_without_parameters(self, core: CollectorCore) -> None:
        data = _one_bad(core, get(""))
        assert (data["check"], data["reason"]) == ("protocol", "empty")

    def test_unknown_endpoint(self, core: CollectorCore) -> None:
        req = RawRequest("POST", "/com.acme/v1", "", {}, b"{}", 1, None)
        assert _one_bad(core, req)["reason"] == "payload_format"


class TestPerEvent:
    def test_mixed_batch_accounts_for_every_event(self, core: CollectorCore, capture) -> None:  # type: ignore[no-untyped-def]
        tracker, em = capture()
        tracker.track(PageView(page_url="https://shop.example/"))
        tracker.track(SelfDescribing(SelfDescribingJson(ORDER, {"order_id": "o", "total": 1,
                                                                "currency": "EUR", "items": 1})))
        tracker.track(SelfDescribing(SelfDescribingJson(ORDER, {"order_id": "o"})))
        tracker.track(SelfDescribing(SelfDescribingJson("iglu:com.acme/x/jsonschema/1-0-0", {})))
        em.events.append({**em.events[0], "eid": "nope"})
        em.events[0]["ue_px"] = "@@@"
        em.events[0]["e"] = "ue"
        processed = core.process(post(tp2_body(em.events)))
        assert len(processed.outputs) == 5 == processed.good + processed.bad
        assert [o.topic for o in processed.outputs] == ["bad", "orders", "bad", "bad", "bad"]
        rows = [_bad(o, core.resolver) for o in processed.outputs if o.outcome == "bad"]
        assert [(r["check"], r["reason"], r["event_index"]) for r in rows] == [
            ("protocol", "base64", 0),
            ("schema", "schema_violation", 2),
            ("schema", "schema_not_found", 3),
            ("protocol", "tracker_protocol", 4),
        ]
        # The original of one event is that event's own JSON, and its id is kept for dedup.
        assert json.loads(rows[1]["original"]["data"]) == em.events[2]
        assert rows[1]["event_id"] == em.events[2]["eid"]
        assert processed.outputs[2].dedup_id == em.events[2]["eid"]
        assert rows[3]["event_id"] is None
        assert {v["path"] for v in rows[1]["violations"]} == {"$.ue.data.data"}

    def test_event_too_large(self, resolver: Resolver, capture) -> None:  # type: ignore[no-untyped-def]
        core = CollectorCore(resolver, Router([], "events"), "bad",
                             limits=Limits(max_event_bytes=2048))
        tracker, em = capture()
        tracker.track(PageView(page_url="https://shop.example/" + "a" * 3000))
        data = _one_bad(core, post(tp2_body(em.events)))
        assert (data["check"], data["reason"]) == ("size", "event_too_large")
        assert data["event_id"] == em.events[0]["eid"]

    def test_pixel_event_bad_row_keeps_the_querystring(self, core: CollectorCore) -> None:
        data = _one_bad(core, get("e=pv&tv=js&p=web&eid=xyz"))
        assert data["reason"] == "tracker_protocol"
        assert data["original"]["data"] == "e=pv&tv=js&p=web&eid=xyz"

    def test_anonymous_bad_rows_carry_no_ip(self, core: CollectorCore) -> None:
        data = _one_bad(core, post(b"{", {"sp-anonymous": "*", "x-forwarded-for": "1.2.3.4"}))
        assert data["request"]["ip"] is None and data["request"]["anonymous"] is True
        assert data["request"]["network_userid"] == "00000000-0000-0000-0000-000000000000"


class TestGoodPath:
    def test_pixel_and_post_give_the_same_envelope(self, core: CollectorCore, capture) -> None:  # type: ignore[no-untyped-def]
        from urllib.parse import urlencode
        tracker, em = capture(method="get")
        tracker.track(PageView(page_url="https://shop.example/", page_title="Home"))
        params = {k: str(v) for k, v in em.events[0].items()}
        same_user = {"cookie": "sp=n-42"}
        via_get = core.process(get(urlencode(params), same_user))
        via_post = core.process(post(tp2_body([params]), same_user))
        a, b = (json.loads(p.outputs[0].value) for p in (via_get, via_post))
        assert a == b
        assert a["source"] == "snowplow" and a["event_id"] == params["eid"]
        assert via_get.pixel and not via_post.pixel
        assert via_get.outputs[0].topic == "views"

    def test_gzip_body(self, core: CollectorCore, capture) -> None:  # type: ignore[no-untyped-def]
        tracker, em = capture()
        tracker.track(PageView(page_url="https://shop.example/"))
        processed = core.process(post(gzip.compress(tp2_body(em.events)),
                                      {"content-encoding": "gzip"}))
        assert processed.good == 1

    def test_anonymous_request(self, core: CollectorCore, capture) -> None:  # type: ignore[no-untyped-def]
        tracker, em = capture()
        tracker.track(PageView(page_url="https://shop.example/"))
        processed = core.process(post(tp2_body(em.events), {"sp-anonymous": "*",
                                                            "cookie": "sp=abc"}))
        env = json.loads(processed.outputs[0].value)
        assert env["payload"]["user_ipaddress"] is None
        assert env["payload"]["network_userid"] == "00000000-0000-0000-0000-000000000000"
        assert env["payload"]["anonymous"] is True
        assert processed.identity.set_cookie is None

    def test_post_querystring_applies_to_the_batch(self, core: CollectorCore, capture) -> None:  # type: ignore[no-untyped-def]
        tracker, em = capture()
        tracker.track(PageView(page_url="https://shop.example/"))
        processed = core.process(post(tp2_body(em.events), query="nuid=n-1"))
        assert processed.identity.network_userid == "n-1"
        assert json.loads(processed.outputs[0].value)["payload"]["network_userid"] == "n-1"


class TestEncodeOriginal:
    def test_cut_inside_a_multibyte_character_stays_text(self) -> None:
        raw = ("é" * 10).encode()
        out = encode_original(raw, 5)
        assert out == {"encoding": "utf-8", "data": "éé", "size": 20, "truncated": True}

    def test_unknown_check_is_refused(self) -> None:
        with pytest.raises(ValueError):
            BadRow("parse", "x", "m", b"", RequestInfo("GET", "/i"), 0, "c")


class TestUnicode:
    def test_lone_surrogate_is_a_bad_row_not_a_crash(self, core: CollectorCore) -> None:
        body = (b'{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",'
                b'"data":[{"e":"pv","tv":"t","p":"web","page":"\\ud800"},'
                b'{"e":"pv","tv":"t","p":"web","page":"fine"}]}')
        processed = core.process(post(body))
        assert [o.outcome for o in processed.outputs] == ["bad", "good"]
        data = _bad(processed.outputs[0], core.resolver)
        assert (data["check"], data["reason"]) == ("protocol", "encoding")
        assert json.loads(data["original"]["data"])["page"] == "\ud800"

    def test_big_integers_are_valid_json(self, core: CollectorCore) -> None:
        body = (b'{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",'
                b'"data":[{"e":"pv","tv":"t","p":"web","dtm":123456789012345678901234567890}]}')
        data = _one_bad(core, post(body))
        assert (data["check"], data["reason"]) == ("protocol", "tracker_protocol")

    def test_fast_envelope_json_is_the_envelope_format(self, core: CollectorCore,
                                                       capture) -> None:  # type: ignore[no-untyped-def]
        from sidecar.common.envelope import Envelope
        tracker, em = capture()
        tracker.track(SelfDescribing(SelfDescribingJson(ORDER, {"order_id": "é€", "total": 0.1,
                                                                "currency": "EUR", "items": 3})))
        value = core.process(post(tp2_body(em.events))).outputs[0].value
        doc = json.loads(value)
        env = Envelope(doc["event_id"], doc["event_type"], doc["source"],
                       core.process(post(tp2_body(em.events))).events[0].ctx.collector_tstamp_ms,
                       doc["payload"],
                       core.process(post(tp2_body(em.events))).events[0].occurred_at_ms,
                       doc["attributes"])
        assert env.to_json() == value
