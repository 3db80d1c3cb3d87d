"""The Postgres loader's column types as Avro, and values held to them.

Debezium's JDBC sink creates a table's columns from the Connect schema of the first record:
a plain string becomes ``text``. Connect schema parameters (``connect.parameters`` in the
Avro schema, which the Avro converter hands on) and names (``connect.name``) tell it more:
``__debezium.source.column.type`` and ``__debezium.source.column.length`` make a string
``varchar(n)`` or ``char(n)`` (``ConnectStringType`` in debezium-connector-jdbc),
``io.debezium.data.Uuid`` makes it ``uuid``, ``io.debezium.data.Json`` with type JSONB makes
it ``jsonb``. So the tables the sink creates are the loader's, type for type.
"""

from __future__ import annotations

import math
import re
from typing import Any

_SIZED = re.compile(r"^(VARCHAR|CHAR)\((\d+)\)$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_PLAIN = {"INTEGER": "int", "BIGINT": "long", "DOUBLE PRECISION": "double",
          "BOOLEAN": "boolean"}
_INT_RANGE = {"INTEGER": (-(2**31), 2**31 - 1), "BIGINT": (-(2**63), 2**63 - 1)}


def avro_type(pg_type: str) -> Any:
    """The Avro type whose Connect form makes Debezium's JDBC sink create ``pg_type``."""
    sized = _SIZED.match(pg_type)
    if sized:
        return {"type": "string", "connect.parameters": {
            "__debezium.source.column.type": sized[1],
            "__debezium.source.column.length": sized[2]}}
    if pg_type == "UUID":
        return {"type": "string", "connect.name": "io.debezium.data.Uuid"}
    if pg_type == "TIMESTAMP":
        return {"type": "long", "logicalType": "timestamp-millis"}
    if pg_type == "DATE":
        return {"type": "int", "logicalType": "date"}
    if pg_type == "JSONB":
        return {"type": "string", "connect.name": "io.debezium.data.Json",
                "connect.parameters": {"__debezium.source.column.type": "JSONB"}}
    return _PLAIN[pg_type]


def avro_field(name: str, pg_type: str, not_null: bool) -> dict[str, Any]:
    t = avro_type(pg_type)
    if not_null:
        return {"name": name, "type": t}
    return {"name": name, "type": ["null", t], "default": None}


def fit(column: str, pg_type: str, value: Any) -> Any:
    """``value`` as the column holds it (a tracker's "12" for an INTEGER is 12), or
    ValueError naming the column when it does not fit: never cut, never dropped."""
    if value is None:
        return None
    sized = _SIZED.match(pg_type)
    if sized:
        text = value if isinstance(value, str) else str(value)
        if len(text) > int(sized[2]):
            raise ValueError(f"{column}: {len(text)} characters, over {pg_type}")
        return text
    if pg_type == "UUID":
        if not isinstance(value, str) or not _UUID.match(value):
            raise ValueError(f"{column}: not a UUID: {str(value)[:60]!r}")
        return value.lower()
    if pg_type in _INT_RANGE:
        n = _integer(column, value)
        low, high = _INT_RANGE[pg_type]
        if not low <= n <= high:
            raise ValueError(f"{column}: {n} is out of range for {pg_type}")
        return n
    if pg_type == "DOUBLE PRECISION":
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{column}: not a number: {str(value)[:60]!r}") from None
        if not math.isfinite(x):
            raise ValueError(f"{column}: not a finite number: {str(value)[:60]!r}")
        return x
    if pg_type == "BOOLEAN":
        if not isinstance(value, bool):
            raise ValueError(f"{column}: not a boolean: {str(value)[:60]!r}")
        return value
    if pg_type == "TIMESTAMP":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{column}: not epoch millis: {str(value)[:60]!r}")
        return value
    return value


def _integer(column: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{column}: not an integer: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value):
        return int(value)
    raise ValueError(f"{column}: not an integer: {str(value)[:60]!r}")
