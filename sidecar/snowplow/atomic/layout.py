"""What one good event adds in Snowplow's layout: its atomic.events row and its entities.

Enrich writes these records in the event's own transaction, right after the event's
per-kind record, and only when that record is written: a duplicate the ledger skips adds
none, and a record refused by Kafka turns the event, all of it, into a bad row. So each
layout holds exactly the events the other holds.

Entities are the self-describing event (``unstruct_event``), the tracker's contexts and
the enrichments' derived contexts, in that order; ``entity_index`` is the position in that
order, and with ``root_id`` the primary key of every entity table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.common.envelope import now_ms

from ..iglu import Resolver, SchemaKey
from . import entities, events


@dataclass(frozen=True, slots=True)
class Extra:
    """One more Avro record an event writes, with the schema its value fits."""

    topic: str
    key: bytes
    value: dict[str, Any]
    schema: dict[str, Any]


class AtomicLayout:
    def __init__(self, resolver: Resolver, events_topic: str, entity_topic_prefix: str, *,
                 v_collector: str, v_etl: str, clock: Callable[[], int] = now_ms) -> None:
        self.resolver = resolver
        self.events_topic = events_topic
        self.entity_topic_prefix = entity_topic_prefix
        self.v_collector, self.v_etl = v_collector, v_etl
        self._clock = clock
        self._layouts: dict[SchemaKey, entities.EntityLayout] = {}

    def records(self, payload: Mapping[str, Any], event_id: str) -> tuple[Extra, ...]:
        """The event's atomic row and entity rows; ValueError names a value that does not
        fit its column (the event becomes a bad row)."""
        key = event_id.encode()
        row = events.row(payload, event_id=event_id, etl_tstamp_ms=self._clock(),
                         v_collector=self.v_collector, v_etl=self.v_etl)
        out = [Extra(self.events_topic, key, row, events.SCHEMA)]
        root_tstamp = payload["collector_tstamp"]
        for index, entity in enumerate(_entities(payload)):
            layout = self._layout(SchemaKey.parse(entity["schema"]))
            value = layout.row(entity["data"], event_id, root_tstamp, index)
            out.append(Extra(self.entity_topic_prefix + layout.table, key, value,
                             layout.avro_schema))
        return tuple(out)

    def _layout(self, key: SchemaKey) -> entities.EntityLayout:
        found = self._layouts.get(key)
        if found is None:
            found = self._layouts[key] = entities.layout(key, self.resolver.lookup(key))
        return found


def _entities(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    unstruct = payload.get("unstruct_event")
    found = [unstruct] if isinstance(unstruct, Mapping) else []
    for name in ("contexts", "derived_contexts"):
        found += [e for e in payload.get(name) or () if isinstance(e, Mapping)]
    return found
