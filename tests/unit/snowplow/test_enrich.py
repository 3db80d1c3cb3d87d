"""Enrich: the core never raises and accounts for every record; the loop's transaction
policy (commit with offsets, rewind on abort, a refused output becomes a bad row, rebuild
on fatal) against fake Kafka clients."""

from __future__ import annotations

import gzip
import json
import threading
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.common.errors import FatalKafkaError, TransactionAborted
from sidecar.exactly_once.producer import RecordRejected
from sidecar.snowplow.badrows import MAX_BAD_ROW_BYTES
from sidecar.snowplow.enrich.runner import EnrichRunner, build_enricher
from sidecar.snowplow.iglu import Resolver, SchemaKey
from sidecar.snowplow.raw import RawPayload
from sidecar.snowplow.settings import settings_from_dict

from .conftest import BAD_ROW, tp2_body

TP2 = "/com.snowplowanalytics.snowplow/tp2"
SETTINGS = settings_from_dict({"topics": {"default": "events", "bad": "bad"},
                               "dedup": {"ledger_topic": ""},
                               "kafka": {"create_topics": False},
                               "enrich": {"instance_id": "t", "max_batch_events": 10}})
ENRICHER = build_enricher(SETTINGS)
RESOLVER = Resolver()


def _raw(body: bytes = b"", method: str = "POST", path: str = TP2, query: str = "",
         **kw: Any) -> RawPayload:
    return RawPayload(method=method, path=path, query_string=query, body=body,
                      received_at_ms=1_700_000_000_000, network_userid="n", request_id="r",
                      content_type=kw.pop("content_type", "application/json"),
                      ip="10.0.0.1", body_size=len(body), **kw)


def _check_outputs(outputs: list[Any]) -> None:
    assert outputs, "every raw record becomes at least one output"
    for o in outputs:
        assert o.outcome in ("good", "bad")
        assert len(o.value) <= MAX_BAD_ROW_BYTES
        if o.outcome == "bad":
            doc = json.loads(o.value)
            assert RESOLVER.validate(SchemaKey.parse(BAD_ROW), doc["data"]) == []


def test_gzip_and_deflate_bodies_land_as_good_events(capture) -> None:  # type: ignore[no-untyped-def]
    from snowplow_tracker import PageView
    tracker, em = capture()
    for i in range(3):
        tracker.track(PageView(page_url=f"https://shop.example/{i}"))
    body = tp2_body(em.events)
    for enc, data in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
        raw = _raw(data, content_encoding=enc)
        out = ENRICHER.enrich(raw.headers(), raw.body).outputs
        assert [o.outcome for o in out] == ["good"] * 3, out


@pytest.mark.parametrize("body,query,reason", [
    (b"[" * 3000 + b"]" * 3000, "", ("protocol", "json")),
    (b"\x1f\x8b\x08\x00broken", "", ("protocol", "encoding")),
    (b"\x00" * 1_300_000, "", ("protocol", "encoding")),
    (b"\x01\x02" * 100_000, "", ("protocol", "encoding")),
], ids=["deep-json", "broken-gzip", "nul-bytes", "control-characters"])
def test_hostile_bodies_are_bad_rows_that_fit(body: bytes, query: str,
                                              reason: tuple[str, str]) -> None:
    enc = "gzip" if body.startswith(b"\x1f\x8b") else None
    raw = _raw(body, content_encoding=enc)
    out = ENRICHER.enrich(raw.headers(), raw.body).outputs
    _check_outputs(out)
    data = json.loads(out[0].value)["data"]
    assert (data["check"], data["reason"]) == reason or data["check"] == "protocol"


def test_deep_embedded_json_and_infinite_se_value() -> None:
    deep = "[" * 3000 + "]" * 3000
    base = {"e": "ue", "tv": "py", "p": "srv", "eid": "8f7c6a1e-0b7d-4c59-8a11-2f0e3d4c5b6a"}
    for params in ({**base, "ue_pr": deep}, {**base, "e": "pv", "co": deep},
                   {**base, "ue_px": "WwoK" * 2000}):
        raw = _raw(json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/"
                                         "jsonschema/1-0-4", "data": [params]}).encode())
        out = ENRICHER.enrich(raw.headers(), raw.body).outputs
        _check_outputs(out)
        assert out[0].outcome == "bad"
    raw = _raw(method="GET", path="/i", body=b"",
               query="e=se&tv=py&p=srv&se_ca=c&se_ac=a&se_va=1e999999")
    out = ENRICHER.enrich(raw.headers(), raw.body).outputs
    assert out[0].outcome == "good"
    payload = json.loads(out[0].value)["payload"]
    assert payload["se_value"] is None and payload["params"]["se_va"] == "1e999999"


def test_a_truncated_record_is_a_size_bad_row() -> None:
    raw = _raw(b"x" * 100, truncated=True)
    raw = RawPayload(**{**{f: getattr(raw, f) for f in RawPayload.__slots__},
                        "body_size": 5_000_000})
    out = ENRICHER.enrich(raw.headers(), raw.body).outputs
    data = json.loads(out[0].value)["data"]
    assert (data["check"], data["reason"]) == ("size", "request_too_large")
    assert data["original"]["size"] == 5_000_000 and data["original"]["truncated"]


header_names = st.sampled_from(["sp-v", "sp-m", "sp-p", "sp-q", "sp-t", "sp-nuid", "sp-ct",
                                "sp-ce", "sp-size", "sp-trunc", "sp-ei", "sp-part", "sp-anon",
                                "x"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(headers=st.one_of(st.none(), st.lists(
           st.tuples(header_names, st.one_of(st.none(), st.binary(max_size=40))), max_size=12)),
       value=st.one_of(st.none(), st.binary(max_size=500)))
def test_any_record_never_raises(headers: Any, value: bytes | None) -> None:
    _check_outputs(ENRICHER.enrich(headers, value, 1_700_000_000_000).outputs)


json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                      st.text(max_size=20))
json_value = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                         st.dictionaries(st.text(max_size=5), c,
                                                                         max_size=4)),
                          max_leaves=20)


@st.composite
def request(draw: st.DrawFn) -> RawPayload:
    kind = draw(st.sampled_from(["get", "post-json", "post-bytes", "redirect", "other"]))
    ctype = draw(st.sampled_from(["application/json", "text/plain; charset=utf-8",
                                  "text/plain", "application/x-www-form-urlencoded",
                                  "application/json; charset=latin-1", "", "\x00"]))
    enc = draw(st.sampled_from([None, None, "gzip", "deflate", "br", "identity"]))
    if kind in ("get", "redirect"):
        q = draw(st.text(max_size=200))
        return _raw(method="GET", path="/i" if kind == "get" else "/r/tp2", query=q,
                    body=b"", content_type=None)
    if kind == "post-json":
        events = draw(st.lists(st.dictionaries(
            st.sampled_from(["e", "tv", "p", "eid", "ue_pr", "ue_px", "cx", "co", "dtm",
                             "se_va", "x"]), st.one_of(st.text(max_size=40), json_value),
            max_size=8), max_size=5))
        doc = draw(st.sampled_from([
            {"schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
             "data": events}, {"data": events}, events]))
        body = json.dumps(doc).encode()
    else:
        body = draw(st.binary(max_size=400))
    if enc == "gzip" and draw(st.booleans()):
        body = gzip.compress(body)
    elif enc == "deflate" and draw(st.booleans()):
        body = zlib.compress(body)
    return _raw(body, path=TP2 if kind != "other" else "/nope", content_type=ctype or None,
                content_encoding=enc, query=draw(st.sampled_from(["", "aid=x", "%ZZ", "a=\udcff"])))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=request())
def test_any_request_never_raises_and_is_accounted_for(raw: RawPayload) -> None:
    _check_outputs(ENRICHER.enrich(raw.headers(), raw.body).outputs)


# -- the loop over fake clients ---------------------------------------------------------------

class Msg:
    def __init__(self, partition: int, offset: int, raw: RawPayload) -> None:
        self._p, self._o, self._raw = partition, offset, raw

    def topic(self) -> str:
        return "conveyor.raw.snowplow"

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def headers(self) -> list[tuple[str, bytes]]:
        return self._raw.headers()

    def value(self) -> bytes:
        return self._raw.body

    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


class FakeConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[int, int]] = []
        self.closed = False

    def subscribe(self, topics: list[str]) -> None: ...

    def consumer_group_metadata(self) -> str:
        return "generation-1"

    def seek(self, tp: Any) -> None:
        self.seeks.append((tp.partition, tp.offset))

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    def __init__(self) -> None:
        self.fail: list[Exception] = []
        self.committed: list[tuple[list[Any], list[tuple[int, int]]]] = []

    def init(self) -> None: ...

    def close(self, timeout: float = 0) -> None: ...

    def commit(self, records: list[Any], *, offsets: Any = None,
               group_metadata: Any = None) -> None:
        assert group_metadata == "generation-1"
        if self.fail:
            raise self.fail.pop(0)
        self.committed.append((list(records), [(tp.partition, tp.offset) for tp in offsets]))


def _runner() -> tuple[EnrichRunner, FakeConsumer, FakeProducer]:
    consumer, producer = FakeConsumer(), FakeProducer()
    runner = EnrichRunner(SETTINGS, consumer_factory=lambda conf: consumer,
                          producer_factory=lambda conf, tid: producer, ledger_factory=None)
    runner._start()
    return runner, consumer, producer


def _pixel(i: int) -> RawPayload:
    return _raw(method="GET", path="/i", body=b"",
                query=f"e=pv&tv=py&p=web&eid=8f7c6a1e-0b7d-4c59-8a11-{i:012d}")


def test_outputs_and_offsets_commit_together_in_bounded_batches() -> None:
    runner, _, producer = _runner()
    msgs = [Msg(i % 2, 100 + i, _pixel(i)) for i in range(25)]
    assert runner.process(msgs)
    assert [len(r) for r, _ in producer.committed] == [10, 10, 5]   # max_batch_events
    assert producer.committed[-1][1] == [(0, 125), (1, 124)]
    assert producer.committed[0][1] == [(0, 109), (1, 110)]
    # the same records again (a replay after a crash before the offsets moved): duplicates
    assert runner.process(msgs)
    assert [len(r) for r, _ in producer.committed[3:]] == [0, 0, 0]


def test_an_aborted_batch_is_rewound_and_nothing_is_counted() -> None:
    runner, consumer, producer = _runner()
    producer.fail = [TransactionAborted("injected")]
    msgs = [Msg(0, 7 + i, _pixel(i)) for i in range(3)]
    assert not runner.process(msgs)
    assert consumer.seeks == [(0, 7)] and producer.committed == []
    assert runner.process(msgs)   # read again: committed once
    assert len(producer.committed[0][0]) == 3
    assert runner.readiness() == {"kafka": True, "progressing": True}


def test_an_output_kafka_refuses_becomes_a_bad_row_and_the_rest_commits() -> None:
    runner, _, producer = _runner()
    producer.fail = [RecordRejected(1, "MSG_SIZE_TOO_LARGE")]
    assert runner.process([Msg(0, i, _pixel(i)) for i in range(3)])
    records = producer.committed[0][0]
    assert [r.topic for r in records] == ["events", "bad", "events"]
    data = json.loads(records[1].value)["data"]
    assert (data["check"], data["reason"]) == ("size", "rejected_by_kafka")


def test_fatal_errors_rebuild_the_clients() -> None:
    runner, consumer, producer = _runner()
    producer.fail = [FatalKafkaError("fenced")]
    with pytest.raises(FatalKafkaError):
        runner.process([Msg(0, 0, _pixel(0))])
    stop = threading.Event()
    calls = []

    def consume(n: int, timeout: float) -> list[Any]:
        calls.append(n)
        if len(calls) == 1:
            raise FatalKafkaError("generation gone")
        stop.set()
        return []

    consumer.consume = consume  # type: ignore[attr-defined]
    runner.run(stop)
    assert consumer.closed and len(calls) == 2   # dropped, rebuilt, read again


class FatalMsg(Msg):
    """What librdkafka delivers once the consumer hit a fatal error: code _FATAL, and the
    error object's own fatal() False."""

    def error(self) -> Any:
        from confluent_kafka import KafkaError
        return KafkaError(KafkaError._FATAL, "fatal error: FENCED_INSTANCE_ID", fatal=False)


def test_a_fatal_consumer_error_rebuilds_the_clients_instead_of_warning() -> None:
    runner, _, _ = _runner()
    with pytest.raises(FatalKafkaError, match="FENCED_INSTANCE_ID"):
        runner.process([FatalMsg(0, 0, _pixel(0))])


def test_bad_rows_of_a_split_post_count_events_within_the_request() -> None:
    """The collector splits an oversized POST into parts; a bad row of an event in a later
    part says where the event was in the POST the tracker sent, not in the part."""
    from sidecar.snowplow.identity import CookieConfig
    from sidecar.snowplow.intake import IntakeConfig, intake

    events: list[dict[str, Any]] = [
        {"e": "pv", "tv": "py", "p": "web", "eid": f"8f7c6a1e-0b7d-4c59-8a11-{i:012d}",
         "url": "https://shop.example/" + "x" * 200} for i in range(30)]
    # no tracker version; an eid that is no UUID; a number where payload_data wants text
    broken: dict[int, dict[str, Any]] = {7: {"tv": ""}, 19: {"eid": "not-a-uuid"},
                                         28: {"tv": 7}}
    for i, change in broken.items():
        events[i] = {**events[i], **change}
    body = tp2_body(events)
    cfg = IntakeConfig("raw", CookieConfig(), split_bytes=2000)
    records = intake(cfg, method="POST", path=TP2, query_string="", headers={
        "content-type": "application/json"}, body=body, body_size=len(body),
        received_at_ms=1_700_000_000_000, remote="10.0.0.1").outputs
    assert len(records) >= 3
    firsts = [RawPayload.from_record(list(r.headers), r.value).first_event_index
              for r in records]
    assert firsts[0] == 0 and firsts == sorted(firsts) and len(set(firsts)) == len(firsts)
    bad = [json.loads(o.value)["data"] for r in records
           for o in ENRICHER.enrich(list(r.headers), r.value).outputs if o.outcome == "bad"]
    assert [row["event_index"] for row in bad] == sorted(broken)
    assert [row["event_id"] for row in bad] == [events[7]["eid"], None, events[28]["eid"]]
    assert bad[2]["violations"][0]["path"].startswith("$.data[28]")


def test_a_redirects_uri_redirect_event_is_good() -> None:
    """What a click redirect records, as Snowplow's trackers and enrich describe it: a
    self-describing event of the uri_redirect schema (bundled from Iglu Central)."""
    from urllib.parse import urlencode

    target = "https://shop.example/deal?id=7&utm_source=mail"
    event = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
             "data": {"schema": "iglu:com.snowplowanalytics.snowplow/uri_redirect/"
                                "jsonschema/1-0-0", "data": {"uri": target}}}
    query = urlencode({"e": "ue", "tv": "r-tp2", "p": "web", "u": target,
                       "eid": "8f7c6a1e-0b7d-4c59-8a11-2f0e3d4c5b6a",
                       "ue_pr": json.dumps(event)})
    raw = _raw(method="GET", path="/r/tp2", query=query, body=b"", content_type=None)
    out = ENRICHER.enrich(raw.headers(), raw.body).outputs
    assert [o.outcome for o in out] == ["good"], [json.loads(o.value) for o in out]
    envelope = json.loads(out[0].value)
    assert envelope["event_type"] == "com.snowplowanalytics.snowplow/uri_redirect"
    assert envelope["payload"]["unstruct_event"]["data"] == {"uri": target}



def test_a_plain_click_redirect_becomes_a_uri_redirect_event() -> None:
    """A link ``/r/tp2?u=URL`` with no event of its own, as email campaigns carry them:
    Snowplow's redirect adapter makes the click the event (e=ue, uri_redirect, tv r-tp2)."""
    from urllib.parse import urlencode

    target = "https://shop.example/deal?id=7"
    raw = _raw(method="GET", path="/r/tp2", query=urlencode({"u": target, "aid": "mail"}),
               body=b"", content_type=None)
    (out,) = ENRICHER.enrich(raw.headers(), raw.body).outputs
    assert out.outcome == "good", json.loads(out.value)
    envelope = json.loads(out.value)
    assert envelope["event_type"] == "com.snowplowanalytics.snowplow/uri_redirect"
    assert envelope["payload"]["unstruct_event"]["data"] == {"uri": target}
    assert envelope["payload"]["v_tracker"] == "r-tp2" and envelope["payload"]["app_id"] == "mail"


def test_a_redirect_carrying_an_event_adds_the_click_as_its_entity() -> None:
    from urllib.parse import urlencode

    from sidecar.snowplow.protocol import redirect_event

    target = "https://shop.example/x"
    device = {"schema": "iglu:com.conveyor.grocer/device/jsonschema/1-0-0",
              "data": {"device_id": "d", "kind": "phone"}}
    co = json.dumps({"schema": "iglu:com.snowplowanalytics.snowplow/contexts/jsonschema/1-0-1",
                     "data": [device]})
    params = redirect_event({"e": "pv", "u": target, "co": co, "tv": "js-3"})
    assert "u" not in params and params["e"] == "pv" and params["tv"] == "js-3"
    entities = json.loads(params["co"])["data"]
    assert entities[0] == device and entities[1]["data"] == {"uri": target}
    # A broken co is left for validation to turn into the bad row, not swallowed here.
    assert redirect_event({"e": "pv", "u": target, "co": "{"})["co"] == "{"
    raw = _raw(method="GET", path="/r/tp2", query=urlencode(
        {"e": "pv", "u": target, "url": target, "eid": "8f7c6a1e-0b7d-4c59-8a11-2f0e3d4c5b6b"}),
        body=b"", content_type=None)
    (out,) = ENRICHER.enrich(raw.headers(), raw.body).outputs
    assert out.outcome == "good", json.loads(out.value)
