"""Schema resolution from repositories on disk and JSON Schema validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator

from sidecar.snowplow.iglu import IgluError, Resolver, SchemaKey

from .conftest import ORDER


def _write(repo: Path, vendor: str, name: str, version: str, body: dict, self_: dict | None = None
           ) -> None:
    path = repo / "schemas" / vendor / name / "jsonschema" / version
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"self": self_ or {"vendor": vendor, "name": name, "format": "jsonschema",
                             "version": version}, **body}
    path.write_text(json.dumps(doc))


class TestSchemaKey:
    def test_parse(self) -> None:
        key = SchemaKey.parse(ORDER)
        assert (key.vendor, key.name, key.format, key.version, key.model) == (
            "com.conveyor.grocer", "order_placed", "jsonschema", "1-0-0", 1)
        assert key.uri == ORDER

    @pytest.mark.parametrize("bad", ["iglu:a/b/jsonschema/1-0", "a/b/jsonschema/1-0-0",
                                     "iglu:a/b c/jsonschema/1-0-0", 42, None])
    def test_invalid(self, bad: object) -> None:
        with pytest.raises(IgluError) as err:
            SchemaKey.parse(bad)
        assert err.value.reason == "invalid_schema_key"


class TestResolver:
    def test_every_bundled_schema_compiles(self, resolver: Resolver) -> None:
        keys = {k.uri for k in resolver.iter_keys()}
        assert "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4" in keys
        assert "iglu:com.conveyor.snowplow/bad_row/jsonschema/1-0-0" in keys
        assert "iglu:com.snowplowanalytics.snowplow/uri_redirect/jsonschema/1-0-0" in keys
        assert resolver.check_all() == {}

    def test_uri_redirect_as_on_iglu_central(self, resolver: Resolver) -> None:
        key = SchemaKey.parse("iglu:com.snowplowanalytics.snowplow/uri_redirect/jsonschema/1-0-0")
        assert resolver.validate(key, {"uri": "https://shop.example/deal?id=7"}) == []
        for data in ({}, {"uri": 7}, {"uri": "https://shop.example/" + "x" * 8192},
                     {"uri": "https://shop.example/", "target": "_blank"}):
            assert resolver.validate(key, data), data

    def test_unknown_schema(self, resolver: Resolver) -> None:
        with pytest.raises(IgluError) as err:
            resolver.validator(SchemaKey.parse("iglu:com.acme/nope/jsonschema/1-0-0"))
        assert err.value.reason == "schema_not_found"

    def test_exact_versions_only(self, resolver: Resolver) -> None:
        with pytest.raises(IgluError):
            resolver.validator(SchemaKey.parse(ORDER.replace("1-0-0", "1-0-1")))

    def test_violations_name_the_path_and_schema(self, resolver: Resolver) -> None:
        out = resolver.validate(SchemaKey.parse(ORDER),
                                {"order_id": "o", "total": -1, "currency": "eur", "items": 1},
                                at="$.ue")
        assert {v.path for v in out} == {"$.ue.total", "$.ue.currency"}
        assert all(v.schema == ORDER for v in out)

    def test_validators_are_compiled_once(self, resolver: Resolver) -> None:
        key = SchemaKey.parse(ORDER)
        assert resolver.validator(key) is resolver.validator(key)

    def test_own_repositories_come_first(self, tmp_path: Path) -> None:
        _write(tmp_path, "com.conveyor.grocer", "order_placed", "1-0-0",
               {"type": "object", "required": ["only_here"]})
        r = Resolver([tmp_path])
        assert r.validate(SchemaKey.parse(ORDER), {})[0].message.startswith("'only_here'")
        assert tmp_path in r.repositories

    def test_a_schema_filed_under_the_wrong_path_is_refused(self, tmp_path: Path) -> None:
        _write(tmp_path, "com.acme", "a", "1-0-0", {"type": "object"},
               self_={"vendor": "com.acme", "name": "b", "format": "jsonschema",
                      "version": "1-0-0"})
        r = Resolver([tmp_path], bundled=False)
        with pytest.raises(IgluError) as err:
            r.validator(SchemaKey.parse("iglu:com.acme/a/jsonschema/1-0-0"))
        assert err.value.reason == "invalid_schema"
        assert "iglu:com.acme/a/jsonschema/1-0-0" in r.check_all()

    def test_broken_schema_files(self, tmp_path: Path) -> None:
        path = tmp_path / "schemas/com.acme/broken/jsonschema/1-0-0"
        path.parent.mkdir(parents=True)
        path.write_text("{nope")
        _write(tmp_path, "com.acme", "badtype", "1-0-0", {"type": 12})
        r = Resolver([tmp_path], bundled=False)
        assert set(r.check_all()) == {"iglu:com.acme/broken/jsonschema/1-0-0",
                                      "iglu:com.acme/badtype/jsonschema/1-0-0"}

    def test_self_describing_needs_schema_and_data(self, resolver: Resolver) -> None:
        with pytest.raises(IgluError):
            resolver.validate_self_describing({"data": {}})
        assert resolver.validate_self_describing(
            {"schema": ORDER, "data": {"order_id": "o", "total": 1, "currency": "EUR",
                                       "items": 1}}) == []


PAYLOAD_DATA = SchemaKey.parse("iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4")
_param_names = st.sampled_from(["e", "tv", "p", "eid", "url", "ue_px", "cx", "stm", "nope", ""])
_item = st.one_of(
    st.dictionaries(_param_names, st.text(max_size=3), max_size=6),
    st.dictionaries(_param_names, st.one_of(st.text(max_size=3), st.integers(), st.none(),
                                            st.booleans(), st.lists(st.text(), max_size=1)),
                    max_size=6),
    st.fixed_dictionaries({"e": st.just("pv"), "tv": st.just("py"), "p": st.just("web")}),
    st.text(max_size=3), st.integers(), st.none(), st.lists(st.text(), max_size=2))


_RESOLVER = Resolver()
WRAPPERS = [SchemaKey.parse(f"iglu:com.snowplowanalytics.snowplow/{name}")
            for name in ("unstruct_event/jsonschema/1-0-0", "contexts/jsonschema/1-0-0",
                         "contexts/jsonschema/1-0-1")]
_REFERENCE = {key: Draft4Validator(_RESOLVER.lookup(key)) for key in (PAYLOAD_DATA, *WRAPPERS)}
_sdj = st.dictionaries(
    st.sampled_from(["schema", "data", "x"]),
    st.one_of(st.sampled_from(["iglu:com.acme/thing/jsonschema/1-0-0", "iglu:bad key",
                               "iglu:com.acme/thing/jsonschema/1-0", ""]),
              st.integers(), st.none(), st.dictionaries(st.text(max_size=2), st.integers(),
                                                        max_size=2)),
    max_size=3)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.lists(_item, max_size=4), _item))
def test_the_string_object_shortcut_agrees_with_the_reference(data: object) -> None:
    """payload_data (80 plain string parameters) is answered by set operations first: it
    must call valid exactly what draft 4 calls valid."""
    reference = _REFERENCE[PAYLOAD_DATA]
    assert _RESOLVER.is_valid(PAYLOAD_DATA, data) == reference.is_valid(data)
    assert (_RESOLVER.validate(PAYLOAD_DATA, data) == []) == reference.is_valid(data)


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(_sdj, st.lists(_sdj, max_size=3), st.integers()))
def test_the_wrapper_shortcut_agrees_with_the_reference(data: object) -> None:
    """The unstruct_event and contexts wrappers (a schema string with a pattern, and any
    data) are answered the same way."""
    for key in WRAPPERS:
        assert (_RESOLVER.validate(key, data) == []) == _REFERENCE[key].is_valid(data), key


def test_the_shortcut_only_takes_schemas_it_can_decide(tmp_path: Path) -> None:
    loose = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 2}},
             "additionalProperties": False}
    _write(tmp_path, "v", "loose", "1-0-0", loose)
    resolver = Resolver([tmp_path], bundled=False)
    key = SchemaKey.parse("iglu:v/loose/jsonschema/1-0-0")
    assert resolver.is_valid(key, {"a": "ab"}) and not resolver.is_valid(key, {"a": "abc"})
