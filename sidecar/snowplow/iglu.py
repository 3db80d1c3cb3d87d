"""Iglu schema resolution from repositories on disk, and JSON Schema validation.

A repository is a directory laid out the way Iglu Central and static Iglu repositories are:
``schemas/<vendor>/<name>/jsonschema/<model>-<revision>-<addition>``. The collector ships
one inside the package (``sidecar/snowplow/iglu``: the Snowplow schemas the tracker
protocol needs, our bad-row format and a few example business schemas); deployments add
their own repositories in front of it (``iglu.repositories`` in the settings).

Resolution is by exact version, as in Iglu: ``1-0-0`` and ``1-0-1`` are different schemas.
Iglu schemas are JSON Schema draft 4, whatever their ``$schema`` says (the self-describing
meta-schema URI is not one the libraries know).

Two validators per schema, both compiled once and cached per schema key:
- fastjsonschema turns the schema into Python code: it answers "valid?" for every event
  on the hot path, about ten times faster than walking the schema;
- jsonschema's ``Draft4Validator`` (with its format checker) is the reference: it runs only
  when the fast one finds a problem, to list every violation with its path for the bad row,
  and its verdict is final (if it finds nothing, the instance is valid).

A schema that is only an object of string properties (or an array of such objects), as
``payload_data`` is with its 80 tracker parameters and the unstruct_event and contexts
wrappers are, is answered before either: such an instance is valid exactly when its keys
are allowed, the required ones are there and the values are strings (matching their
pattern, if any), which set operations tell in a fraction of the generated code's time
(it tests each of the 80 properties in turn). Only "valid" is answered there; any doubt
goes on to the validators above.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastjsonschema
from jsonschema import Draft4Validator
from jsonschema.exceptions import SchemaError

BUNDLED_REPOSITORY = Path(__file__).parent / "iglu"

_KEY_RE = re.compile(
    r"^iglu:(?P<vendor>[a-zA-Z0-9\-_.]+)/(?P<name>[a-zA-Z0-9\-_]+)/"
    r"(?P<format>[a-zA-Z0-9\-_]+)/(?P<version>[0-9]+-[0-9]+-[0-9]+)$"
)
DRAFT4 = "http://json-schema.org/draft-04/schema#"
# Errors reported per failing instance: enough to fix the tracker, bounded for the bad row.
MAX_ERRORS = 10


class IgluError(Exception):
    """A schema could not be used; ``reason`` is the bad-row reason code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True, slots=True)
class SchemaKey:
    vendor: str
    name: str
    format: str
    version: str

    @classmethod
    def parse(cls, uri: object) -> SchemaKey:
        if isinstance(uri, str) and len(uri) <= 256:
            return _parse_cached(uri)
        return cls._parse(uri)

    @classmethod
    def _parse(cls, uri: object) -> SchemaKey:
        if not isinstance(uri, str):
            raise IgluError("invalid_schema_key",
                            f"schema key must be a string, got {_kind(uri)}")
        m = _KEY_RE.match(uri)
        if m is None:
            raise IgluError("invalid_schema_key",
                            "not an Iglu schema key (iglu:vendor/name/format/M-R-A): "
                            f"{uri[:200]!r}")
        return cls(m["vendor"], m["name"], m["format"], m["version"])

    @property
    def uri(self) -> str:
        return f"iglu:{self.vendor}/{self.name}/{self.format}/{self.version}"

    @property
    def model(self) -> int:
        return int(self.version.split("-", 1)[0])

    @property
    def path(self) -> str:
        return f"schemas/{self.vendor}/{self.name}/{self.format}/{self.version}"


@dataclass(frozen=True, slots=True)
class Violation:
    """One reason an instance does not match its schema, as it goes into a bad row."""

    path: str
    message: str
    schema: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "schema": self.schema}


class Resolver:
    """Finds schemas in the repositories (first one wins) and validates instances.

    Thread-safe: the cache is filled under a lock so the server and ``--check`` can share it.
    """

    def __init__(self, repositories: Iterable[Path] = (), *, bundled: bool = True) -> None:
        repos = [Path(r) for r in repositories]
        if bundled:
            repos.append(BUNDLED_REPOSITORY)
        self.repositories = repos
        self._validators: dict[SchemaKey, Draft4Validator] = {}
        self._fast: dict[SchemaKey, Callable[[Any], Any]] = {}
        # The fast validators again by the key's text, as events name their schemas: a
        # string's hash is cached, a SchemaKey's is four strings hashed again each time.
        self._fast_by_uri: dict[str, Callable[[Any], Any]] = {}
        self._missing: set[SchemaKey] = set()
        self._lock = threading.Lock()

    def lookup(self, key: SchemaKey) -> dict[str, Any]:
        """The schema document for ``key``, or ``IgluError('schema_not_found')``."""
        if key.format != "jsonschema":
            raise IgluError("schema_not_found", f"{key.uri}: only jsonschema schemas are supported")
        for repo in self.repositories:
            file = repo / key.path
            if file.is_file():
                try:
                    doc = json.loads(file.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise IgluError("invalid_schema",
                                    f"{key.uri}: unreadable schema: {exc}") from exc
                if not isinstance(doc, dict):
                    raise IgluError("invalid_schema", f"{key.uri}: schema is not a JSON object")
                return doc
        raise IgluError("schema_not_found",
                        f"{key.uri} is in none of the Iglu repositories ({len(self.repositories)})")

    def validator(self, key: SchemaKey) -> Draft4Validator:
        found = self._validators.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._validators.get(key)
            if found is not None:
                return found
            doc = self.lookup(key)
            _check_self(key, doc)
            try:
                Draft4Validator.check_schema(doc)
            except SchemaError as exc:
                raise IgluError("invalid_schema", f"{key.uri}: not a valid JSON Schema: "
                                                  f"{exc.message}") from exc
            compiled = Draft4Validator(doc, format_checker=Draft4Validator.FORMAT_CHECKER)
            try:
                fast = fastjsonschema.compile({**doc, "$schema": DRAFT4})
            except (fastjsonschema.JsonSchemaDefinitionException, ValueError, TypeError,
                    RecursionError):
                fast = _always_ask_reference  # a construct it cannot compile: use the reference
            # The reference last: whoever finds it (without the lock) finds the rest too.
            self._fast[key] = self._fast_by_uri[key.uri] = _with_shortcut(doc, fast)
            self._validators[key] = compiled
            return compiled

    def is_valid(self, key: SchemaKey, instance: Any) -> bool:
        """The fast check; on a failure the reference validator has the final word."""
        fast = self._fast.get(key)
        if fast is None:
            self.validator(key)
            fast = self._fast[key]
        try:
            fast(instance)
            return True
        except fastjsonschema.JsonSchemaValueException:
            return not any(True for _ in self.validator(key).iter_errors(instance))

    def validate(self, key: SchemaKey, instance: Any, at: str = "$") -> list[Violation]:
        """Violations of ``instance`` against the schema ``key`` (empty when valid)."""
        fast = self._fast.get(key)
        if fast is None:
            self.validator(key)
            fast = self._fast[key]
        try:
            fast(instance)
            return []
        except fastjsonschema.JsonSchemaValueException:
            pass
        out: list[Violation] = []
        for err in self.validator(key).iter_errors(instance):
            out.append(Violation(at + _json_path(err.absolute_path), err.message[:500], key.uri))
            if len(out) >= MAX_ERRORS:
                break
        return out

    def validate_self_describing(self, sdj: Any, at: str = "$") -> list[Violation]:
        """Resolve ``sdj['schema']`` and validate ``sdj['data']`` against it."""
        if not isinstance(sdj, dict) or "schema" not in sdj or "data" not in sdj:
            raise IgluError("invalid_schema_key", f"{at}: not a self-describing JSON "
                                                  "({\"schema\": ..., \"data\": ...})")
        uri = sdj["schema"]
        # A key already compiled, named exactly as its text: valid needs nothing more.
        fast = self._fast_by_uri.get(uri) if type(uri) is str else None
        if fast is not None:
            try:
                fast(sdj["data"])
                return []
            except fastjsonschema.JsonSchemaValueException:
                pass
        key = SchemaKey.parse(uri)
        return self.validate(key, sdj["data"], at + ".data")

    def iter_keys(self) -> Iterator[SchemaKey]:
        """Every schema key present in the repositories (for ``--check``)."""
        seen: set[SchemaKey] = set()
        for repo in self.repositories:
            root = repo / "schemas"
            if not root.is_dir():
                continue
            for file in sorted(root.glob("*/*/*/*")):
                if not file.is_file():
                    continue
                vendor, name, fmt, version = file.relative_to(root).parts
                key = SchemaKey.parse(f"iglu:{vendor}/{name}/{fmt}/{version}")
                if key not in seen:
                    seen.add(key)
                    yield key

    def check_all(self) -> dict[str, str]:
        """Compile every schema; returns ``{uri: problem}`` for the ones that fail."""
        problems: dict[str, str] = {}
        for key in self.iter_keys():
            try:
                self.validator(key)
            except IgluError as exc:
                problems[key.uri] = exc.message
        return problems


@functools.lru_cache(maxsize=4096)
def _parse_cached(uri: str) -> SchemaKey:
    # Every event names its schemas; the same few keys come back all day.
    return SchemaKey._parse(uri)


# Keywords that do not constrain an instance.
_ANNOTATIONS = frozenset({"$schema", "self", "description", "title"})


def _string_object(doc: Any) -> Callable[[Any], bool] | None:
    """For ``{"type": "object", "properties": {...}, "required": [...],
    "additionalProperties": false}`` and nothing else, whose properties are each a string
    (``{"type": "string"}``, maybe with a ``pattern``) or anything (``{}``): is this
    instance valid? (payload_data's parameters; the unstruct_event and contexts wrappers.)"""
    if (not isinstance(doc, dict) or doc.get("type") != "object"
            or doc.get("additionalProperties") is not False
            or doc.keys() - _ANNOTATIONS - {"type", "properties", "required",
                                             "additionalProperties"}):
        return None
    props = doc.get("properties", {})
    required = doc.get("required", [])
    if (not isinstance(props, dict) or not isinstance(required, list)
            or not all(isinstance(r, str) for r in required)):
        return None
    strings: list[tuple[str, re.Pattern[str] | None]] = []
    for name, prop in props.items():
        if prop == {}:
            continue
        if not isinstance(prop, dict) or prop.get("type") != "string" or prop.keys() - {
                "type", "pattern"} or not isinstance(prop.get("pattern", ""), str):
            return None
        try:
            strings.append((name, re.compile(prop["pattern"]) if "pattern" in prop else None))
        except re.error:
            return None
    allowed, needed = frozenset(props), frozenset(required)

    if len(strings) == len(props) and not any(pattern for _, pattern in strings):
        def plain(item: Any) -> bool:   # every property a plain string: no lookups
            if type(item) is not dict:
                return False
            keys = item.keys()
            if not (keys <= allowed and needed <= keys):
                return False
            for value in item.values():  # noqa: SIM110 (all() over a generator costs more)
                if type(value) is not str:
                    return False
            return True
        return plain

    def valid(item: Any) -> bool:
        if type(item) is not dict:
            return False
        keys = item.keys()
        if not (keys <= allowed and needed <= keys):
            return False
        for name, pattern in strings:
            if name in item:
                value = item[name]
                if type(value) is not str or (pattern is not None
                                              and pattern.search(value) is None):
                    return False
        return True
    return valid


def _string_objects(doc: dict[str, Any]) -> Callable[[Any], bool] | None:
    """The same for an object schema, or an array of them with at most ``minItems``."""
    one = _string_object(doc)
    if one is not None:
        return one
    if doc.get("type") != "array" or doc.keys() - _ANNOTATIONS - {"type", "items",
                                                                   "minItems"}:
        return None
    least = doc.get("minItems", 0)
    item = _string_object(doc.get("items"))
    if item is None or type(least) is not int:
        return None

    def valid(instance: Any) -> bool:
        if type(instance) is not list or len(instance) < least:
            return False
        for i in instance:  # noqa: SIM110 (all() over a generator costs more)
            if not item(i):
                return False
        return True
    return valid


def _with_shortcut(doc: dict[str, Any], fast: Callable[[Any], Any]) -> Callable[[Any], Any]:
    shortcut = _string_objects(doc)
    if shortcut is None:
        return fast

    def check(instance: Any) -> Any:
        if shortcut(instance):
            return instance
        return fast(instance)   # invalid, or a case the shortcut does not decide
    return check


def _always_ask_reference(instance: Any) -> None:
    raise fastjsonschema.JsonSchemaValueException("not compiled; ask the reference validator")


def _check_self(key: SchemaKey, doc: dict[str, Any]) -> None:
    # A schema filed under the wrong path would silently validate the wrong events.
    self_ = doc.get("self")
    if not isinstance(self_, dict):
        raise IgluError("invalid_schema", f"{key.uri}: schema has no 'self' block")
    found = (self_.get("vendor"), self_.get("name"), self_.get("format"), self_.get("version"))
    if found != (key.vendor, key.name, key.format, key.version):
        raise IgluError("invalid_schema", f"{key.uri}: its 'self' block says {found}")


def _json_path(parts: Iterable[Any]) -> str:
    out = []
    for p in parts:
        out.append(f"[{p}]" if isinstance(p, int) else f".{p}")
    return "".join(out)


def _kind(value: object) -> str:
    return type(value).__name__
