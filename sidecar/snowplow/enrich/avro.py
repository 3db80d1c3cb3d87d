"""Avro envelopes in the Confluent wire format, without a registry round trip per event.

confluent-kafka's ``AvroSerializer`` registers the schema under a subject once, then only
runs fastavro behind a fixed framing (magic byte 0, 4-byte schema id). Reached through
``AvroEncoder`` it costs, per event, a JSON dump of the whole schema (to find the
serializer) and the serializer's rule machinery; fastavro itself walks the schema
generically, some 50 µs per envelope. So (``TopicAvro``):

- the first event of a topic goes through ``AvroEncoder`` (registration, and its
  translation of registry errors), and its framing is kept for the topic;
- later events are written behind that framing by ``compile_writer``: the schema turned
  once into one small function per field, for the exact Python types the envelope holds
  (``str``, ``int``, ``float``, ``bool``, ``dict``, ``None``). A value of any other type,
  or one that does not fit, goes to fastavro (with the serializer's defaults, not strict),
  whose answer, bytes or exception, is final: the same bytes, the same refusals.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import fastavro

from sidecar.common.avro import AvroEncoder

from ..avro_schema import ENVELOPE_SCHEMA

FRAMING_BYTES = 5

Write = Callable[[bytearray, Any], None]


class Unsupported(Exception):
    """A value the compiled writer does not take as is: fastavro decides."""


# Length prefixes of short strings (zigzag varints of 0..63: one byte), and the same after
# a union's branch 1 (one more byte, 2), so that a short string costs one append.
_SHORT = [bytes((n << 1,)) for n in range(64)]
_SHORT_OPTIONAL = [bytes((2, n << 1)) for n in range(64)]
# Map keys (tracker parameter names, attribute names) with their prefix, as they repeat.
_KEYS: dict[str, bytes] = {}
_MAX_KEYS = 4096
# Timestamps repeat within a request (accepted_at is collector_tstamp; one stm for all).
_MILLIS: dict[int, bytes] = {}
_MAX_MILLIS = 4096


def _long(buf: bytearray, n: int) -> None:
    """Zigzag varint, as Avro writes int and long."""
    if not -(1 << 63) <= n < (1 << 63):
        raise Unsupported("out of range for long")
    z = (n << 1) ^ (n >> 63)
    if (1 << 35) <= z < (1 << 42):   # epoch millis: six bytes, unrolled, and remembered
        found = _MILLIS.get(z)
        if found is None:
            found = bytes((z & 0x7F | 0x80, z >> 7 & 0x7F | 0x80, z >> 14 & 0x7F | 0x80,
                           z >> 21 & 0x7F | 0x80, z >> 28 & 0x7F | 0x80, z >> 35))
            if len(_MILLIS) >= _MAX_MILLIS:
                _MILLIS.clear()
            _MILLIS[z] = found
        buf += found
        return
    while z > 0x7F:
        buf.append((z & 0x7F) | 0x80)
        z >>= 7
    buf.append(z)


def _varint(n: int) -> bytes:
    out = bytearray()
    _long(out, n)
    return bytes(out)


def _utf8(buf: bytearray, s: str) -> None:
    b = s.encode()
    n = len(b)
    if n < 64:
        buf += _SHORT[n]
    else:
        _long(buf, n)
    buf += b


def _key(s: str) -> bytes:
    found = _KEYS.get(s)
    if found is None:
        b = s.encode()
        found = (_SHORT[len(b)] if len(b) < 64 else _varint(len(b))) + b
        if len(_KEYS) < _MAX_KEYS:
            _KEYS[s] = found
    return found


def _primitive(kind: str, schema: Any) -> Write:
    if kind == "null":
        def write_null(buf: bytearray, v: Any) -> None:
            if v is not None:
                raise Unsupported("null")
        return write_null
    if kind == "boolean":
        def write_boolean(buf: bytearray, v: Any) -> None:
            if type(v) is not bool:
                raise Unsupported("boolean")
            buf.append(1 if v else 0)
        return write_boolean
    if kind in ("int", "long"):
        low, high = (-(1 << 31), 1 << 31) if kind == "int" else (-(1 << 63), 1 << 63)
        logical = schema.get("logicalType") if isinstance(schema, dict) else None
        if logical not in (None, "timestamp-millis", "date"):
            raise NotImplementedError(f"logical type {logical}")

        def write_integer(buf: bytearray, v: Any) -> None:
            if type(v) is not int or not low <= v < high:
                raise Unsupported(kind)
            _long(buf, v)
        return write_integer
    if kind == "double":
        pack = struct.Struct("<d").pack

        def write_double(buf: bytearray, v: Any) -> None:
            if type(v) is not float:
                raise Unsupported("double")
            buf += pack(v)
        return write_double
    if kind == "string":
        def write_string(buf: bytearray, v: Any) -> None:
            if type(v) is not str:
                raise Unsupported("string")
            _utf8(buf, v)
        return write_string
    raise NotImplementedError(f"Avro type {kind}")


# Keys that change nothing in the bytes: what Kafka Connect reads into its schema's name
# and parameters (Snowplow's layout tells Debezium's JDBC sink the column types this way).
_ANNOTATIONS = frozenset({"connect.name", "connect.parameters", "doc"})
_PLAIN_KEYS = _ANNOTATIONS | {"type", "logicalType"}


def _compile(schema: Any) -> Write:
    if isinstance(schema, list):
        return _union(schema)
    if isinstance(schema, str):
        return _primitive(schema, schema)
    kind = schema.get("type")
    if kind == "record":
        return _record(schema)
    if kind == "map":
        return _map(schema)
    if isinstance(kind, str | list | dict) and not schema.keys() - _PLAIN_KEYS:
        return _primitive(kind, schema) if isinstance(kind, str) else _compile(kind)
    raise NotImplementedError(f"Avro schema {schema!r:.80}")


def _union(branches: list[Any]) -> Write:
    # Only [null, T]: fastavro picks the first branch a value validates against, and for
    # null or T's exact type that is the branch the type says.
    if len(branches) != 2 or branches[0] != "null":
        raise NotImplementedError("unions other than [null, T]")
    inner = branches[1]
    if inner == "string" or (isinstance(inner, dict) and inner.get("type") == "string"
                             and not inner.keys() - _ANNOTATIONS - {"type"}):
        def write_optional_string(buf: bytearray, v: Any) -> None:
            if v is None:
                buf.append(0)
            elif type(v) is str:
                b = v.encode()
                if len(b) < 64:
                    buf += _SHORT_OPTIONAL[len(b)]
                else:
                    buf.append(2)
                    _long(buf, len(b))
                buf += b
            else:
                raise Unsupported("string")
        return write_optional_string
    write = _compile(inner)

    def write_optional(buf: bytearray, v: Any) -> None:
        if v is None:
            buf.append(0)
        else:
            buf.append(2)
            write(buf, v)
    return write_optional


def _record(schema: dict[str, Any]) -> Write:
    fields = [(f["name"], _compile(f["type"])) for f in schema["fields"]]

    def write_record(buf: bytearray, v: Any) -> None:
        if type(v) is not dict:
            raise Unsupported("record")
        # A missing field (fastavro would use its default) is a KeyError: fastavro decides.
        for name, write in fields:
            write(buf, v[name])
    return write_record


def _map(schema: dict[str, Any]) -> Write:
    values = schema["values"]
    strings = values == "string"
    write_value = _compile(values)

    def write_map(buf: bytearray, v: Any) -> None:
        if type(v) is not dict:
            raise Unsupported("map")
        if not v:
            buf.append(0)
            return
        _long(buf, len(v))
        if strings:   # the common case, inlined: tracker parameters, attributes
            short, keys = _SHORT, _KEYS
            for key, item in v.items():
                if type(key) is not str or type(item) is not str:
                    raise Unsupported("map of strings")
                buf += keys.get(key) or _key(key)
                b = item.encode()
                buf += short[len(b)] if len(b) < 64 else _varint(len(b))
                buf += b
        else:
            for key, item in v.items():
                if type(key) is not str:
                    raise Unsupported("map key")
                _utf8(buf, key)
                write_value(buf, item)
        buf.append(0)
    return write_map


def compile_writer(schema: dict[str, Any]) -> Callable[[dict[str, Any]], bytes]:
    """``value -> Avro body`` for ``schema``, byte for byte fastavro's ``schemaless_writer``
    (not strict); raises what fastavro raises for a value that does not fit."""
    parsed = fastavro.parse_schema(schema)
    write = _compile(schema)

    def reference(value: dict[str, Any]) -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, value)
        return out.getvalue()

    def encode(value: dict[str, Any]) -> bytes:
        buf = bytearray()
        try:
            write(buf, value)
        except (Unsupported, KeyError, UnicodeError, OverflowError):
            return reference(value)
        return bytes(buf)

    encode.reference = reference  # type: ignore[attr-defined]
    return encode


_write_envelope = compile_writer(ENVELOPE_SCHEMA)


def _writer(schema: dict[str, Any]) -> Callable[[dict[str, Any]], bytes]:
    """The compiled writer, or fastavro's for a schema it does not cover."""
    try:
        return compile_writer(schema)
    except NotImplementedError:
        parsed = fastavro.parse_schema(schema)

        def reference(value: dict[str, Any]) -> bytes:
            out = io.BytesIO()
            fastavro.schemaless_writer(out, parsed, value)
            return out.getvalue()
        return reference


class TopicAvro:
    """Values as Confluent-framed Avro, the registry asked once per topic and schema.

    ``schema`` is ``ENVELOPE_SCHEMA`` unless given; another schema must be one long-lived
    object per shape (Snowplow's layout keeps one per table and schema version): it is
    told apart by identity, and compiled once."""

    def __init__(self, encoder: AvroEncoder) -> None:
        self.encoder = encoder
        self._framing: dict[tuple[str, int], bytes] = {}
        self._writers: dict[int, Callable[[dict[str, Any]], bytes]] = {
            id(ENVELOPE_SCHEMA): _write_envelope}

    def encode(self, topic: str, value: dict[str, Any],
               schema: dict[str, Any] = ENVELOPE_SCHEMA) -> bytes:
        """Raises RegistryUnavailable (try later) or another exception (a bad value)."""
        key = (topic, id(schema))
        framing = self._framing.get(key)
        if framing is None:
            out = self.encoder.encode(topic, schema, value)
            if len(out) > FRAMING_BYTES and out[0] == 0:
                self._framing[key] = out[:FRAMING_BYTES]
                if id(schema) not in self._writers:
                    self._writers[id(schema)] = _writer(schema)
            return out
        return framing + self._writers[id(schema)](value)
