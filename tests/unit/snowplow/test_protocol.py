"""Wire-level parsing: querystrings, base64 variants, media types, gzip, tp2 bodies."""

from __future__ import annotations

import base64
import gzip
import json
import zlib

import pytest
from snowplow_tracker import PageView, StructuredEvent

from sidecar.snowplow.protocol import (
    BodyTooLarge,
    ProtocolError,
    RawEvent,
    check_media_type,
    decode_base64url,
    decompress,
    merge_query,
    parse_querystring,
    parse_tp2,
)

from .conftest import tp2_body


class TestQuerystring:
    def test_plain_pairs(self) -> None:
        assert parse_querystring("e=pv&tv=js-3&p=web") == {"e": "pv", "tv": "js-3", "p": "web"}

    def test_percent_and_plus_decoding(self) -> None:
        q = parse_querystring("page=Caf%C3%A9+menu&url=http%3A%2F%2Fa.example%2F%3Fx%3D1")
        assert q == {"page": "Café menu", "url": "http://a.example/?x=1"}

    def test_blank_values_are_kept_and_last_duplicate_wins(self) -> None:
        assert parse_querystring("a=&b=1&b=2") == {"a": "", "b": "2"}

    def test_invalid_utf8_is_an_encoding_error(self) -> None:
        with pytest.raises(ProtocolError) as err:
            parse_querystring("page=%C3%28")
        assert err.value.reason == "encoding"


class TestBase64:
    DOC = '{"schema":"iglu:a/b/jsonschema/1-0-0","data":{"k":"ü?>"}}'

    @pytest.mark.parametrize("encode", [
        lambda b: base64.urlsafe_b64encode(b).decode(),                 # Python tracker: padded
        lambda b: base64.urlsafe_b64encode(b).decode().rstrip("="),     # JS tracker: unpadded
        lambda b: base64.b64encode(b).decode(),                         # standard alphabet
        lambda b: base64.b64encode(b).decode().rstrip("="),
    ], ids=["url-padded", "url-unpadded", "std-padded", "std-unpadded"])
    def test_variants_decode_to_the_same_bytes(self, encode) -> None:  # type: ignore[no-untyped-def]
        raw = self.DOC.encode()
        assert decode_base64url(encode(raw)) == raw

    def test_url_alphabet_characters_round_trip(self) -> None:
        raw = bytes(range(256))
        enc = base64.urlsafe_b64encode(raw).decode().rstrip("=")
        assert "-" in enc and "_" in enc
        assert decode_base64url(enc) == raw

    @pytest.mark.parametrize("bad", ["abc$", "a", "abcde", "ab=c"])
    def test_invalid_input_is_a_base64_error(self, bad: str) -> None:
        with pytest.raises(ProtocolError) as err:
            decode_base64url(bad)
        assert err.value.reason == "base64"


class TestMediaType:
    @pytest.mark.parametrize("ctype", ["application/json", "application/json; charset=utf-8",
                                       "Application/JSON; charset=UTF-8",
                                       "text/plain;charset=UTF-8"])
    def test_accepted(self, ctype: str) -> None:
        check_media_type(ctype)

    @pytest.mark.parametrize("ctype", [None, "", "application/x-www-form-urlencoded",
                                       "text/plain", "application/json; charset=latin-1",
                                       "multipart/form-data; boundary=x"])
    def test_refused(self, ctype: str | None) -> None:
        with pytest.raises(ProtocolError) as err:
            check_media_type(ctype)
        assert err.value.reason == "content_type"


class TestDecompress:
    def test_identity_passes_through(self) -> None:
        assert decompress(b"abc", None, 10) == b"abc"

    def test_gzip_and_deflate(self) -> None:
        assert decompress(gzip.compress(b"x" * 100), "gzip", 1000) == b"x" * 100
        assert decompress(zlib.compress(b"y" * 100), "deflate", 1000) == b"y" * 100

    def test_a_decompression_bomb_stops_at_the_limit(self) -> None:
        with pytest.raises(BodyTooLarge):
            decompress(gzip.compress(b"0" * 10_000_000), "gzip", 1_000_000)

    @pytest.mark.parametrize("body,enc", [(b"not gzip", "gzip"),
                                          (gzip.compress(b"x" * 1000)[:-12], "gzip"),
                                          (b"abc", "br")])
    def test_broken_or_unknown_encodings(self, body: bytes, enc: str) -> None:
        with pytest.raises(ProtocolError) as err:
            decompress(body, enc, 10_000)
        assert err.value.reason == "encoding"


class TestTp2:
    def test_tracker_batch(self, capture, resolver) -> None:  # type: ignore[no-untyped-def]
        tracker, em = capture()
        tracker.track(PageView(page_url="https://shop.example/a", page_title="A"))
        tracker.track(StructuredEvent(category="basket", action="add"))
        events = parse_tp2(tp2_body(em.events), resolver)
        assert [e.params["e"] for e in events] == ["pv", "se"]
        assert all(not e.violations for e in events)
        assert json.loads(events[1].original) == em.events[1]

    def test_one_bad_item_does_not_sink_the_batch(self, capture, resolver) -> None:  # type: ignore[no-untyped-def]
        tracker, em = capture()
        for _ in range(3):
            tracker.track(PageView(page_url="https://shop.example/"))
        em.events[1]["dtm"] = 12345            # not a string
        em.events[2]["bogus"] = "x"            # not a tracker parameter
        events = parse_tp2(tp2_body(em.events), resolver)
        assert events[0].violations == ()
        assert [v.path for v in events[1].violations] == ["$.data[1].dtm"]
        assert "bogus" in events[2].violations[0].message

    @pytest.mark.parametrize("body,reason", [
        (b"", "empty"),
        (b"\xff\xfe{}", "encoding"),
        (b"{not json", "json"),
        (b'[{"e":"pv"}]', "payload_format"),
        (b'{"schema":"iglu:com.acme/other/jsonschema/1-0-0","data":[{}]}', "payload_format"),
        (b'{"schema":"not-iglu","data":[{}]}', "payload_format"),
        (b'{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",'
         b'"data":[]}', "payload_format"),
        (b'{"schema":"iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-9",'
         b'"data":[{"e":"pv","tv":"t","p":"web"}]}', "payload_format"),
    ])
    def test_whole_body_failures(self, resolver, body: bytes, reason: str) -> None:  # type: ignore[no-untyped-def]
        with pytest.raises(ProtocolError) as err:
            parse_tp2(body, resolver)
        assert err.value.reason == reason

    def test_querystring_merges_into_every_event_and_the_body_wins(self) -> None:
        events = [RawEvent(0, {"e": "pv", "aid": "body"}, b"{}")]
        merged = merge_query(events, {"aid": "query", "nuid": "n1"})
        assert merged[0].params == {"e": "pv", "aid": "body", "nuid": "n1"}
