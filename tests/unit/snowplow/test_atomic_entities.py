"""Entity tables in the Postgres loader's layout: names, the loader's type rules one by one,
rows, and that any schema and value give a row fastavro writes or a ValueError."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.snowplow.atomic import entities
from sidecar.snowplow.iglu import SchemaKey

KEY = SchemaKey.parse("iglu:com.acme-corp.shop/checkoutStep/jsonschema/2-1-0")
ROOT = "5d0a7f26-7a0e-4a38-9d6b-1f0d9d8b7a10"


def test_table_names_are_schema_ddls() -> None:
    assert entities.table_name(KEY) == "com_acme_corp_shop_checkout_step_2"
    key = SchemaKey.parse("iglu:com.snowplowanalytics.snowplow/ua_parser_context/jsonschema/1-0-0")
    assert entities.table_name(key) == "com_snowplowanalytics_snowplow_ua_parser_context_1"
    assert entities.snake_case("useragentFamily") == "useragent_family"
    assert entities.snake_case("HTTPStatus") == "http_status"


@pytest.mark.parametrize(("prop", "pg"), [
    ({"enum": [1, "a"]}, "JSONB"),
    ({"enum": [True, False]}, "JSONB"),                 # the loader's isComplexEnum
    ({"type": ["string", "integer"]}, "JSONB"),
    ({"type": "array", "items": {"type": "string"}}, "JSONB"),
    ({"type": "string", "format": "date-time"}, "TIMESTAMP"),
    ({"type": ["string", "null"], "format": "date"}, "DATE"),
    ({"type": "integer", "maximum": 2**31}, "BIGINT"),
    ({"type": "integer", "maximum": 100}, "INTEGER"),
    ({"type": "integer"}, "BIGINT"),
    ({"type": "integer", "enum": [1, 2]}, "INTEGER"),
    ({"enum": [1, 2, 3]}, "INTEGER"),
    ({"type": "number"}, "DOUBLE PRECISION"),
    ({"type": ["number", "null"]}, "DOUBLE PRECISION"),
    ({"type": "boolean"}, "BOOLEAN"),
    ({"type": "string", "minLength": 2, "maxLength": 2}, "CHAR(2)"),
    ({"type": "string", "format": "uuid"}, "UUID"),
    ({"type": "string", "maxLength": 64}, "VARCHAR(64)"),
    ({"type": "string", "enum": ["ab", "abcd"]}, "VARCHAR(4)"),
    ({"type": "string"}, "VARCHAR(4096)"),
    ({"type": "object", "properties": {"a": {"type": "string"}}}, "JSONB"),
    ({}, "JSONB"),
])
def test_each_type_rule_of_the_loader(prop: dict[str, Any], pg: str) -> None:
    assert entities.pg_type(prop) == pg


def test_columns_are_meta_index_then_required_then_optional_by_name() -> None:
    schema = {"properties": {"zeta": {"type": "string"}, "stepId": {"type": "integer"},
                             "alpha": {"type": ["string", "null"]},
                             "when": {"type": "string", "format": "date-time"}},
              "required": ["when", "stepId", "alpha"]}
    cols = entities.columns(KEY, schema)
    assert [c.name for c in cols[:7]] == ["schema_vendor", "schema_name", "schema_format",
                                          "schema_version", "root_id", "root_tstamp",
                                          "entity_index"]
    assert [(c.name, c.pg_type, c.not_null) for c in cols[7:]] == [
        ("step_id", "BIGINT", True), ("when", "TIMESTAMP", True),
        ("alpha", "VARCHAR(4096)", False),           # required but may be null
        ("zeta", "VARCHAR(4096)", False)]


def test_two_properties_on_one_column_or_an_unnameable_one_are_refused() -> None:
    with pytest.raises(ValueError, match="both map to column 'step_id'"):
        entities.columns(KEY, {"properties": {"stepId": {}, "step_id": {}}})
    with pytest.raises(ValueError, match="cannot be a column"):
        entities.columns(KEY, {"properties": {"a b": {}}})
    with pytest.raises(ValueError, match="cannot be a column"):
        entities.columns(KEY, {"properties": {"rootId": {}}})


def _roundtrip(schema: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    buf = io.BytesIO()
    parsed = fastavro.parse_schema(schema)
    fastavro.schemaless_writer(buf, parsed, value)
    buf.seek(0)
    back = fastavro.schemaless_reader(buf, parsed)
    assert isinstance(back, dict)
    return back


def test_a_row_holds_each_value_as_its_column_does() -> None:
    layout = entities.layout(KEY, {
        "properties": {"stepId": {"type": "integer", "maximum": 9},
                       "when": {"type": "string", "format": "date-time"},
                       "day": {"type": "string", "format": "date"},
                       "tags": {"type": "array"}, "ok": {"type": "boolean"},
                       "code": {"type": "string", "minLength": 2, "maxLength": 2}},
        "required": ["stepId"]})
    row = layout.row({"stepId": 3, "when": "2026-12-03T10:00:00.250Z", "day": "1970-01-11",
                      "tags": ["a", 1], "ok": True, "code": "DE", "extra": "dropped"},
                     ROOT, 1_700_000_000_000, 2)
    assert row["schema_vendor"] == "com.acme-corp.shop" and row["schema_version"] == "2-1-0"
    assert (row["root_id"], row["root_tstamp"], row["entity_index"]) == (
        ROOT, 1_700_000_000_000, 2)
    assert row["step_id"] == 3 and row["day"] == 10 and row["ok"] is True
    assert row["when"] == 1_796_292_000_250 and row["tags"] == '["a",1]'
    assert "extra" not in row
    back = _roundtrip(layout.avro_schema, row)
    assert back["code"] == "DE" and back["step_id"] == 3
    with pytest.raises(ValueError, match="step_id: required and missing"):
        layout.row({}, ROOT, 1, 0)
    with pytest.raises(ValueError, match="code: 3 characters, over CHAR"):
        layout.row({"stepId": 1, "code": "DEU"}, ROOT, 1, 0)
    with pytest.raises(ValueError, match="when: not a date-time"):
        layout.row({"stepId": 1, "when": "yesterday"}, ROOT, 1, 0)


_PROP = st.fixed_dictionaries({}, optional={
    "type": st.one_of(st.sampled_from(["string", "integer", "number", "boolean", "array",
                                       "object", "null"]),
                      st.lists(st.sampled_from(["string", "integer", "null"]), max_size=3)),
    "format": st.sampled_from(["date-time", "date", "uuid", "email"]),
    "maxLength": st.integers(-1, 300), "minLength": st.integers(-1, 300),
    "maximum": st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False)),
    "enum": st.lists(st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                               st.text(max_size=8)), min_size=1, max_size=4),
})
_JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                               st.floats(), st.text(max_size=40)),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


@settings(max_examples=400, deadline=None)
@given(props=st.dictionaries(st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,8}", fullmatch=True),
                             _PROP, max_size=4),
       required=st.lists(st.text(min_size=1, max_size=9), max_size=3),
       data=st.dictionaries(st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,8}", fullmatch=True),
                            _JSON, max_size=5))
def test_any_schema_and_value_give_a_writable_row_or_a_value_error(
        props: dict[str, Any], required: list[str], data: dict[str, Any]) -> None:
    # Values for the schema's own properties too, not only for random names.
    data = {**{name: value for name, value in zip(props, data.values(), strict=False)},
            **data}
    try:
        layout = entities.layout(KEY, {"properties": props, "required": required})
        row = layout.row(data, ROOT, 1_700_000_000_000, 0)
    except ValueError:
        return
    fastavro.parse_schema(layout.avro_schema)
    back = _roundtrip(layout.avro_schema, row)
    assert back["root_id"] == ROOT
    for c in layout.columns:
        assert c.name in row
        if c.not_null:
            assert row[c.name] is not None
