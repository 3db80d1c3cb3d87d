"""Payload schemas from files in the repo: Avro (``.avsc``) and JSON Schema (``.json``).

Loaded and compiled once at start (a broken schema is a ConfigError, caught by ``--check``);
``validate`` answers with the first problem found, or None, so a failing message can be
dead-lettered with a reason a human can act on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
import jsonschema
from fastavro.validation import ValidationError as AvroValidationError
from fastavro.validation import validate as avro_validate

from sidecar.common.envelope import envelope_avro_schema
from sidecar.common.errors import ConfigError

from .settings import Route

DEFAULT_NAMESPACE = "conveyor.events"


@dataclass(frozen=True)
class PayloadSchema:
    path: Path
    kind: str  # "avro" | "json"
    raw: Any
    _compiled: Any

    def validate(self, payload: Any) -> str | None:
        """None when ``payload`` conforms, else a one-line description of the first error."""
        if self.kind == "avro":
            try:
                avro_validate(payload, self._compiled, raise_errors=True)
            except AvroValidationError as exc:
                return _short(str(exc))
            return None
        err = jsonschema.exceptions.best_match(self._compiled.iter_errors(payload))
        if err is None:
            return None
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        return _short(f"{where}: {err.message}")

    def envelope_schema(self) -> dict[str, Any]:
        """The Avro envelope record whose payload is this schema (Avro routes only)."""
        raw = self.raw if isinstance(self.raw, dict) else {}
        name = raw.get("name", "Payload").rsplit(".", 1)[-1]
        namespace = raw.get("namespace") or DEFAULT_NAMESPACE
        return envelope_avro_schema(f"{name}Envelope", namespace, self.raw)


def _short(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_schema(path: Path, fmt: str) -> PayloadSchema:
    try:
        raw = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"schema {path}: cannot read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"schema {path}: not JSON ({exc})") from exc
    if fmt == "avro":
        try:
            compiled = fastavro.parse_schema(raw)
            # The envelope must be a valid schema too (name clashes would show here).
            fastavro.parse_schema(envelope_avro_schema("Check", DEFAULT_NAMESPACE, raw))
        except Exception as exc:  # fastavro raises several types for a bad schema
            raise ConfigError(f"schema {path}: not a valid Avro schema ({exc})") from exc
        return PayloadSchema(path, "avro", raw, compiled)
    try:
        cls = jsonschema.validators.validator_for(raw)
        cls.check_schema(raw)
    except jsonschema.exceptions.SchemaError as exc:
        raise ConfigError(f"schema {path}: not a valid JSON Schema ({exc.message})") from exc
    return PayloadSchema(path, "json", raw, cls(raw))


def load_route_schemas(routes: list[Route], base_dir: Path) -> dict[int, PayloadSchema]:
    """Schemas by ``id(route)``; routes without a schema file are absent."""
    cache: dict[tuple[Path, str], PayloadSchema] = {}
    out: dict[int, PayloadSchema] = {}
    for route in routes:
        if not route.schema_file:
            continue
        path = (base_dir / route.schema_file).resolve()
        key = (path, route.format)
        if key not in cache:
            cache[key] = load_schema(path, route.format)
        out[id(route)] = cache[key]
    return out
