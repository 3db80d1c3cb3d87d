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

import fnmatch
import hmac
from typing import Any

from . import Step
from .config import PiiJsonField, PiiSettings


def pseudonym(key: bytes, value: str) -> str:
    return hmac.digest(key, value.encode("utf-8", "surrogatepass"), "sha256").hex()


def _entities(payload: Any, field: str) -> list[Any]:
    doc = payload.get(field)
    if field == "unstruct_event":
        return [doc] if isinstance(doc, dict) else []
    return list(doc) if isinstance(doc, list) else []


def _replaced(data: Any, keys: list[str], key: bytes) -> Any:
    """A copy of ``data`` with the value at ``keys`` pseudonymised (only the objects along
    the path are copied), or None when there is no string or number there."""
    if not isinstance(data, dict):
        return None
    head = keys[0]
    if len(keys) == 1:
        value = data.get(head)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return None
        return {**data, head: pseudonym(key, str(value))}
    inner = _replaced(data.get(head), keys[1:], key)
    return None if inner is None else {**data, head: inner}


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
            # Copies along the paths only: the step is pure, the event as parsed stays as
            # it is.
            new = list(entities)
            changed = False
            for rule, keys in rules:
                if rule.field != field:
                    continue
                for i, entity in enumerate(new):
                    if (isinstance(entity, dict)
                            and isinstance(entity.get("schema"), str)
                            and fnmatch.fnmatchcase(entity["schema"], rule.schema_criterion)):
                        data = _replaced(entity.get("data"), keys, key)
                        if data is not None:
                            new[i] = {**entity, "data": data}
                            changed = True
            if changed:
                out[field] = new[0] if field == "unstruct_event" else new
        return out or None

    return step
