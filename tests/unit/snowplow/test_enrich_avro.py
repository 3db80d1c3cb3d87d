"""Enrich's Avro writer: byte for byte what fastavro and the registry's serializer write,
and the same refusals, for any value; the registry asked once per topic."""

from __future__ import annotations

import io
import math
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.common.avro import AvroEncoder
from sidecar.snowplow.avro_schema import _STRINGS, _TIMESTAMPS, ENVELOPE_SCHEMA
from sidecar.snowplow.enrich.avro import TopicAvro, compile_writer

PARSED = fastavro.parse_schema(ENVELOPE_SCHEMA)
WRITE = compile_writer(ENVELOPE_SCHEMA)


def _fastavro(value: Any) -> bytes | type[BaseException]:
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, PARSED, value)
    except Exception as exc:
        return type(exc)
    return buf.getvalue()


def _ours(value: Any) -> bytes | type[BaseException]:
    try:
        return WRITE(value)
    except Exception as exc:
        return type(exc)


text = st.text(max_size=12) | st.text(min_size=62, max_size=66)   # lengths past one byte
long_ = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# What the envelope holds, and now and then what it must not: a writer that took a value
# fastavro refuses (or refused one it takes) would turn events into bad rows, or back.
misfit = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
                   st.booleans(), st.binary(max_size=5), st.just("\udc80"), st.just([]))


def _sometimes(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, strategy, strategy, strategy, strategy, strategy, misfit)


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    strings = st.dictionaries(text, text, max_size=12)
    payload: dict[str, Any] = {
        "event": draw(_sometimes(text)),
        "collector_tstamp": draw(_sometimes(long_)),
        **{n: draw(_sometimes(st.none() | long_)) for n in _TIMESTAMPS},
        **{n: draw(_sometimes(st.none() | text)) for n in _STRINGS},
        "domain_sessionidx": draw(_sometimes(
            st.none() | st.integers(min_value=-(2**31), max_value=2**31 - 1))),
        "se_value": draw(_sometimes(st.none() | st.floats())),
        "unstruct_event": draw(_sometimes(st.none() | text)),
        "contexts": draw(_sometimes(st.none() | text)),
        "anonymous": draw(_sometimes(st.booleans())),
        "params": draw(_sometimes(strings)),
    }
    value: dict[str, Any] = {
        "event_id": draw(_sometimes(text)), "event_type": draw(_sometimes(text)),
        "source": "snowplow", "occurred_at": draw(_sometimes(st.none() | long_)),
        "accepted_at": draw(_sometimes(long_)), "attributes": draw(_sometimes(strings)),
        "payload": payload,
    }
    if draw(st.integers(0, 9)) == 0:   # a field missing (fastavro: its default, or refused)
        target = draw(st.sampled_from([value, payload]))
        del target[draw(st.sampled_from(sorted(target)))]
    if draw(st.integers(0, 9)) == 0:
        payload["extra"] = 1
    return value


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=envelopes())
def test_same_bytes_and_same_refusals_as_fastavro(value: dict[str, Any]) -> None:
    assert _ours(value) == _fastavro(value)


def test_edges_of_the_varint_and_of_the_types() -> None:
    base = _envelope()
    for n in (0, 1, -1, 63, 64, -64, -65, 127, 128, 2**31 - 1, -(2**31), 2**62, 2**63 - 1,
              -(2**63), 2**63, -(2**63) - 1):
        for field in ("collector_tstamp", "domain_sessionidx", "dvce_created_tstamp"):
            value = _envelope(**{field: n})
            assert _ours(value) == _fastavro(value), (field, n)
    for x in (0.0, -0.0, 1.5, math.inf, -math.inf, math.nan, 3):
        value = _envelope(se_value=x)
        assert _ours(value) == _fastavro(value), x
    for s in ("", "x" * 63, "x" * 64, "é" * 32, "\U0001f600" * 16, "\udcff"):
        value = _envelope(page_url=s, params={s: s})
        assert _ours(value) == _fastavro(value), s
    assert WRITE(base) == _fastavro(base)


def _envelope(**payload: Any) -> dict[str, Any]:
    p: dict[str, Any] = {n: None for n in (*_STRINGS, *_TIMESTAMPS)}
    p.update(event="page_view", collector_tstamp=1_700_000_000_000, domain_sessionidx=None,
             se_value=None, unstruct_event=None, contexts=None, anonymous=False,
             params={"e": "pv"})
    p.update(payload)
    return {"event_id": "8f7c6a1e-0b7d-4c59-8a11-2f0e3d4c5b6a", "event_type": "page_view",
            "source": "snowplow", "occurred_at": None, "accepted_at": 1_700_000_000_000,
            "attributes": {"kind": "page_view"}, "payload": p}


class CountingRegistry:
    """An in-memory registry that counts what it is asked."""

    def __init__(self) -> None:
        self.inner = SchemaRegistryClient.new_client({"url": "mock://enrich-avro"})
        self.registrations = 0

    def register_schema_full_response(self, *args: Any, **kw: Any) -> Any:
        self.registrations += 1
        return self.inner.register_schema_full_response(*args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_registry_is_asked_once_per_topic_and_the_framing_is_its_answer() -> None:
    encoder = AvroEncoder("http://registry.invalid:8081")
    registry = CountingRegistry()
    encoder._client = registry  # type: ignore[assignment]
    avro = TopicAvro(encoder)
    for i in range(5):
        for topic in ("views", "events"):
            value = _envelope(page_url=f"https://shop.example/{i}")
            out = avro.encode(topic, value)
            schema_id = registry.inner.get_latest_version(f"{topic}-value").schema_id
            body = _fastavro(value)
            assert isinstance(schema_id, int) and isinstance(body, bytes)
            assert out == b"\0" + schema_id.to_bytes(4, "big") + body
    assert registry.registrations == 2   # once per topic


def test_a_value_the_schema_refuses_is_refused_also_after_the_first() -> None:
    encoder = AvroEncoder("http://registry.invalid:8081")
    encoder._client = SchemaRegistryClient.new_client({"url": "mock://enrich-avro-2"})
    avro = TopicAvro(encoder)
    avro.encode("views", _envelope())
    with pytest.raises((ValueError, TypeError)):
        avro.encode("views", _envelope(collector_tstamp="yesterday"))
