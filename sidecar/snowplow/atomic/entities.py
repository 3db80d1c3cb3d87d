"""Entity tables as the Postgres loader lays them out: one table per schema vendor, name and
model (``com_conveyor_grocer_basket_item_1``), the loader's meta columns
(``schema_vendor`` ... ``root_tstamp``), then one column per property of the schema, typed
by the loader's rules (``shredding/Type.scala``, first rule that applies wins):

=====================================================  ============================
property                                               column
=====================================================  ============================
``enum`` mixing numbers, strings or booleans           JSONB
a union of types, or an array                          JSONB
string, ``format: date-time``                          TIMESTAMP
string, ``format: date``                               DATE
integer with a ``maximum`` above 2^31 - 1              BIGINT
integer with a ``maximum``, or an integer ``enum``     INTEGER
integer without either                                 BIGINT
number                                                 DOUBLE PRECISION
boolean                                                BOOLEAN
string, ``minLength == maxLength``                     CHAR(n)
string, ``format: uuid``                               UUID
string with ``maxLength``                              VARCHAR(maxLength)
string ``enum``                                        VARCHAR(longest value)
string                                                 VARCHAR(4096)
anything else (an object, no type)                     JSONB
=====================================================  ============================

A column is NOT NULL when the schema requires the property and does not allow null.

Two differences from the loader, both forced by the path through Kafka and said here so
nobody has to find them: the loader flattens a nested object into ``parent.child`` columns,
and an Avro field name cannot hold a dot, so a nested object lands as one JSONB column; and
every entity table has ``entity_index`` after the meta columns (the entity's place in its
event), because ``(root_id, entity_index)`` is the key the sink upserts on, so a retried
write lands an entity once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from ..iglu import SchemaKey
from . import types

DEFAULT_VARCHAR = 4096
_INT_MAX = 2**31 - 1
_EPOCH = date(1970, 1, 1)
_AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    pg_type: str
    not_null: bool
    # The property the column holds (None for meta columns and entity_index).
    path: str | None = None


META = (
    Column("schema_vendor", "VARCHAR(128)", True),
    Column("schema_name", "VARCHAR(128)", True),
    Column("schema_format", "VARCHAR(128)", True),
    Column("schema_version", "VARCHAR(128)", True),
    Column("root_id", "UUID", True),
    Column("root_tstamp", "TIMESTAMP", True),
)
INDEX = Column("entity_index", "INTEGER", True)


def snake_case(name: str) -> str:
    """Iglu schema-ddl's ``StringUtils.snakeCase``: ``pageViewId`` -> ``page_view_id``."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    name = re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name)
    return name.replace("-", "_").lower()


def table_name(key: SchemaKey) -> str:
    """schema-ddl's ``getTableName``: vendor with dots and dashes as underscores, the name in
    snake case, the model: ``com_conveyor_grocer_basket_item_1``."""
    vendor = re.sub(r"[.\-]", "_", key.vendor).lower()
    return f"{vendor}_{snake_case(key.name)}_{key.model}"


def _types(prop: Mapping[str, Any]) -> set[str]:
    t = prop.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {x for x in t if isinstance(x, str)}
    return set()


def _maybe_null(types_: set[str], want: str) -> bool:
    """schema-ddl's ``possiblyWithNull``: the type is ``want``, or ``want`` and null."""
    return bool(types_) and types_ - {"null"} == {want}


def _enum(prop: Mapping[str, Any]) -> list[Any] | None:
    e = prop.get("enum")
    return [v for v in e if v is not None] if isinstance(e, list) else None


def _is_int(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (
        isinstance(v, float) and v.is_integer())


def pg_type(prop: Mapping[str, Any]) -> str:
    """The loader's column type for one JSON Schema property (table in the module doc)."""
    ts = _types(prop)
    enum = _enum(prop)
    fmt = prop.get("format")
    # The loader's isComplexEnum: two of "a number", "not a number", "a boolean" hold for
    # some values (so an enum of booleans alone is complex, as in the loader).
    if enum and sum((any(_is_num(v) for v in enum), any(not _is_num(v) for v in enum),
                     any(isinstance(v, bool) for v in enum))) >= 2:
        return "JSONB"
    if len(ts - {"null"}) > 1 or "array" in ts:
        return "JSONB"
    if _maybe_null(ts, "string") and fmt == "date-time":
        return "TIMESTAMP"
    if _maybe_null(ts, "string") and fmt == "date":
        return "DATE"
    if _maybe_null(ts, "integer"):
        maximum: Any = prop.get("maximum")
        if _is_int(maximum):
            return "BIGINT" if maximum > _INT_MAX else "INTEGER"
        if enum is None:
            return "BIGINT"
        return "INTEGER" if all(_is_int(v) and abs(v) <= _INT_MAX for v in enum) else "BIGINT"
    if not ts and enum and all(_is_int(v) for v in enum):
        return "INTEGER" if all(abs(v) <= _INT_MAX for v in enum) else "BIGINT"
    if _maybe_null(ts, "number"):
        return "DOUBLE PRECISION"
    if _maybe_null(ts, "boolean") or (not ts and enum and all(isinstance(v, bool)
                                                              for v in enum)):
        return "BOOLEAN"
    lo: Any = prop.get("minLength")
    hi: Any = prop.get("maxLength")
    if _maybe_null(ts, "string") and _is_int(lo) and lo == hi and lo > 0:
        return f"CHAR({int(lo)})"
    if _maybe_null(ts, "string") and fmt == "uuid":
        return "UUID"
    if _maybe_null(ts, "string") and _is_int(hi) and hi > 0:
        return f"VARCHAR({int(hi)})"
    if _maybe_null(ts, "string") and enum is None:
        return f"VARCHAR({DEFAULT_VARCHAR})"
    if enum and all(isinstance(v, str) for v in enum):
        return f"VARCHAR({max(1, max(len(v) for v in enum))})"
    return "JSONB"


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _can_be_null(prop: Mapping[str, Any]) -> bool:
    e = prop.get("enum")
    return "null" in _types(prop) or (isinstance(e, list) and None in e)


def columns(key: SchemaKey, schema: Mapping[str, Any]) -> list[Column]:
    """The entity table's columns: meta, entity_index, then the schema's properties, the
    NOT NULL ones first, each group by name (the order of schema-ddl's FlatSchema).

    ValueError when two properties map to one column or a name cannot be an Avro field."""
    props = schema.get("properties")
    required = schema.get("required")
    required = set(required) if isinstance(required, list) else set()
    own: dict[str, Column] = {}
    for prop_name, prop in (props.items() if isinstance(props, Mapping) else ()):
        if not isinstance(prop, Mapping):
            prop = {}
        name = snake_case(prop_name)
        if not _AVRO_NAME.match(name) or name in {c.name for c in (*META, INDEX)}:
            raise ValueError(f"{key.uri}: property {prop_name!r} cannot be a column "
                             f"({name!r})")
        if name in own:
            raise ValueError(f"{key.uri}: properties {own[name].path!r} and {prop_name!r} "
                             f"both map to column {name!r}")
        not_null = prop_name in required and not _can_be_null(prop)
        own[name] = Column(name, pg_type(prop), not_null, prop_name)
    ordered = sorted(own.values(), key=lambda c: (not c.not_null, c.name))
    return [*META, INDEX, *ordered]


class EntityLayout:
    """One schema model's table: its name, the Avro schema of its rows, and rows."""

    def __init__(self, key: SchemaKey, schema: Mapping[str, Any]) -> None:
        self.key = key
        self.table = table_name(key)
        self.columns = columns(key, schema)
        self.avro_schema: dict[str, Any] = {
            "type": "record", "name": self.table, "namespace": "snowplow.atomic",
            "fields": [types.avro_field(c.name, c.pg_type, c.not_null) for c in self.columns],
        }
        self._own = [c for c in self.columns if c.path is not None]

    def row(self, data: Any, root_id: str, root_tstamp_ms: int, index: int) -> dict[str, Any]:
        """The row of one entity of this schema; ValueError names a value that does not fit
        its column (the event becomes a bad row)."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{self.key.uri}: entity data is not an object")
        out: dict[str, Any] = {
            "schema_vendor": self.key.vendor, "schema_name": self.key.name,
            "schema_format": self.key.format, "schema_version": self.key.version,
            "root_id": types.fit("root_id", "UUID", root_id),
            "root_tstamp": root_tstamp_ms, "entity_index": index,
        }
        for c in self._own:
            value = _value(c, data.get(c.path))
            if value is None and c.not_null:
                raise ValueError(f"{self.table}.{c.name}: required and missing")
            out[c.name] = value
        return out


def _value(c: Column, value: Any) -> Any:
    where = c.name
    if value is None:
        return None
    if c.pg_type == "JSONB":
        return _json(where, value)
    if c.pg_type == "TIMESTAMP":
        if not isinstance(value, str):
            raise ValueError(f"{where}: not a date-time: {str(value)[:60]!r}")
        try:
            t = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{where}: not a date-time: {value[:60]!r}") from None
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        try:
            return int(t.timestamp() * 1000)
        except (OverflowError, OSError):
            raise ValueError(f"{where}: date-time out of range: {value[:60]!r}") from None
    if c.pg_type == "DATE":
        if not isinstance(value, str):
            raise ValueError(f"{where}: not a date: {str(value)[:60]!r}")
        try:
            return (date.fromisoformat(value) - _EPOCH).days
        except ValueError:
            raise ValueError(f"{where}: not a date: {value[:60]!r}") from None
    if c.pg_type.startswith(("VARCHAR", "CHAR")) and not isinstance(value, str):
        # A string column of a schema that allows other values (an enum of strings with
        # a number the validator let through) keeps the JSON text of the value.
        value = _json(where, value)
    return types.fit(where, c.pg_type, value)


def _json(where: str, value: Any) -> str:
    """The JSON text of a value; an integer past 64 bits is still JSON (the stdlib writes
    it), a NaN or infinity is not (orjson would write null: refused instead)."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: not JSON: {e}") from None


def layout(key: SchemaKey, schema: Mapping[str, Any]) -> EntityLayout:
    return EntityLayout(key, schema)
