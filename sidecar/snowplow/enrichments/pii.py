"""PII pseudonymisation: Snowplow's pii_enrichment, with a keyed hash.

Runs last, after every other enrichment. Each configured atomic field (``pii.fields``:
``user_id``, ``user_ipaddress``, ``se_label``, ...) that has a value is replaced by the
hex digest of HMAC-SHA-256 over its UTF-8 text, keyed by the key in the environment
variable ``pii.key_env`` (never in a file): the same value gives the same pseudonym, so
joins still work, and without the key nobody can rebuild the table of pseudonyms by hashing
guesses (Snowplow's salted hash is a plain digest of value + salt). ``pii.json_fields``
does the same to a value inside the self-describing event or an entity whose Iglu URI
matches ``schema_criterion`` (a glob), at ``json_path`` (``$.key.key``), when that value is
a string or a number. The original values are not kept anywhere.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import hmac
from typing import Any

from . import Step
from .config import PiiJsonField, PiiSettings


def pseudonym(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


def _entities(payload: Any, field: str) -> list[Any]:
    doc = payload.get(field)
    if field == "unstruct_event":
        return [doc] if isinstance(doc, dict) else []
    return list(doc) if isinstance(doc, list) else []


def _replace(data: Any, keys: list[str], key: bytes) -> bool:
    for k in keys[:-1]:
        if not isinstance(data, dict):
            return False
        data = data.get(k)
    if not isinstance(data, dict):
        return False
    value = data.get(keys[-1])
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    data[keys[-1]] = pseudonym(key, str(value))
    return True


def build(settings: PiiSettings, key: bytes) -> Step:
    fields = tuple(settings.fields)
    rules: list[tuple[PiiJsonField, list[str]]] = [
        (r, r.json_path[2:].split(".")) for r in settings.json_fields]

    def step(payload: Any, _params: Any) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for f in fields:
            value = payload.get(f)
            if isinstance(value, str) and value:
                out[f] = pseudonym(key, value)
        for field in {r.field for r, _ in rules}:
            entities = _entities(payload, field)
            if not entities:
                continue
            # Copies: the step is pure, the event as parsed stays untouched.
            new = copy.deepcopy(entities)
            changed = False
            for rule, keys in rules:
                if rule.field != field:
                    continue
                for entity in new:
                    if (isinstance(entity, dict)
                            and isinstance(entity.get("schema"), str)
                            and fnmatch.fnmatchcase(entity["schema"], rule.schema_criterion)):
                        changed |= _replace(entity.get("data"), keys, key)
            if changed:
                out[field] = new[0] if field == "unstruct_event" else new
        return out or None

    return step
