"""The raw record and the split of oversized POSTs: round trips, limits, never raising."""

from __future__ import annotations

import gzip
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.snowplow.raw import RawFormatError, RawPayload, split_batch

PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"


def _raw(**kw: object) -> RawPayload:
    base: dict[str, object] = dict(method="POST", path="/com.snowplowanalytics.snowplow/tp2",
                                   query_string="a=1&b=%20", body=b'{"x":1}',
                                   received_at_ms=1_700_000_000_000, network_userid="n-1",
                                   request_id="r-1", content_type="application/json",
                                   useragent="ua \u00e9", ip="1.2.3.4", body_size=7)
    base.update(kw)
    return RawPayload(**base)  # type: ignore[arg-type]


def test_round_trip_through_headers() -> None:
    for raw in (_raw(), _raw(anonymous=True, ip=None, truncated=True, event_index=3,
                             part=(1, 4), content_encoding="gzip", referer="https://r/"),
                _raw(part=(2, 3), first_event_index=41)):
        assert RawPayload.from_record(raw.headers(), raw.body) == raw


def test_unreadable_records_raise_raw_format_error_only() -> None:
    for headers in (None, [], [("sp-v", b"9")], [("sp-v", b"1"), ("sp-m", b"GET")],
                    [*_raw().headers()[:5], ("sp-t", b"soon"), ("sp-nuid", b"x")],
                    [*_raw().headers(), ("sp-e0", b"-1")], [*_raw().headers(), ("sp-e0", b"x")]):
        try:
            RawPayload.from_record(headers, b"")
        except RawFormatError:
            continue
        raise AssertionError(f"accepted {headers}")


def _body(n: int, size: int = 100) -> bytes:
    return json.dumps({"schema": PAYLOAD_DATA, "data": [
        {"e": "pv", "eid": f"e-{i}", "url": "u" * size} for i in range(n)]}).encode()


def test_split_keeps_every_event_in_valid_batches_under_the_limit() -> None:
    body = _body(500)
    pieces = split_batch(body, None, 10_000, 10**7)
    assert pieces is not None and len(pieces) > 1
    ids = []
    for p in pieces:
        assert len(p.body) <= 10_000 and p.too_large_index is None
        doc = json.loads(p.body)
        assert doc["schema"] == PAYLOAD_DATA
        ids += [e["eid"] for e in doc["data"]]
    assert ids == [f"e-{i}" for i in range(500)]


def test_split_of_a_gzip_body_and_an_event_too_large_alone() -> None:
    doc = json.loads(_body(20))
    doc["data"].insert(5, {"e": "pv", "eid": "huge", "page": "z" * 5000})
    pieces = split_batch(gzip.compress(json.dumps(doc).encode()), "gzip", 2000, 10**7)
    assert pieces is not None
    huge = [p for p in pieces if p.too_large_index is not None]
    assert [(p.too_large_index, json.loads(p.body)["eid"]) for p in huge] == [(5, "huge")]
    rest = [e["eid"] for p in pieces if p.too_large_index is None
            for e in json.loads(p.body)["data"]]
    assert rest == [f"e-{i}" for i in range(20)]


def test_what_cannot_be_split_is_none() -> None:
    for body, enc in ((b"x" * 5000, None), (b"[1,2]", None), (b'{"schema":1,"data":[1]}', None),
                      (b"\x1f\x8b broken", "gzip"), (b"[" * 5000 + b"]" * 5000, None),
                      (gzip.compress(_body(10_000)), "gzip"), (b'{"schema":"s","data":[]}', None)):
        assert split_batch(body, enc, 1000, 100_000) is None


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=3000), enc=st.sampled_from([None, "gzip", "deflate", "br"]),
       limit=st.integers(50, 2000))
def test_split_never_raises(body: bytes, enc: str | None, limit: int) -> None:
    pieces = split_batch(body, enc, limit, 100_000)
    assert pieces is None or all(p.too_large_index is not None or len(p.body) <= limit
                                 for p in pieces)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(st.dictionaries(st.text(max_size=5), st.text(max_size=300), max_size=4),
                      min_size=1, max_size=30), limit=st.integers(60, 1500))
def test_split_loses_and_reorders_nothing(items: list[dict[str, str]], limit: int) -> None:
    body = json.dumps({"schema": PAYLOAD_DATA, "data": items}).encode()
    pieces = split_batch(body, None, limit, 10**6)
    assert pieces is not None
    back = []
    for p in pieces:
        assert p.first_index == len(back)   # the part's first event, counted in the request
        if p.too_large_index is not None:
            back.append(json.loads(p.body))
        else:
            assert len(p.body) <= limit
            back += json.loads(p.body)["data"]
    assert back == items
