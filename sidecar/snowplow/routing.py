"""Which topic a good event goes to: ordered rules, first match wins, then the default.

A rule matches on any of (all given conditions must hold):
- ``kind``: the event kind, ``page_view``, ``page_ping``, ``struct``, ``self_describing``,
  ``transaction``, ``transaction_item``, ``ad_impression``;
- ``schema``: a glob on the self-describing event's Iglu key, e.g.
  ``iglu:com.conveyor.grocer/order_placed/jsonschema/1-*-*`` (all 1-x-x versions) or
  ``iglu:com.conveyor.grocer/*`` (a whole vendor);
- ``app_id``: a glob on the tracker's ``aid``.

Each condition accepts one value or a list (any of them). Routing is decided per event, so
one tp2 batch may fan out to several topics, all inside one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Protocol

KINDS = ("page_view", "page_ping", "struct", "self_describing", "transaction",
         "transaction_item", "ad_impression")


class Routable(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def schema(self) -> str | None: ...
    @property
    def app_id(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Route:
    topic: str
    kinds: tuple[str, ...] = ()
    schemas: tuple[str, ...] = ()
    app_ids: tuple[str, ...] = ()
    format: str = "json"
    name: str = field(default="")

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown:
            raise ValueError(f"route to {self.topic!r}: unknown kind(s) {unknown}; "
                             f"known: {', '.join(KINDS)}")
        if not (self.kinds or self.schemas or self.app_ids):
            raise ValueError(f"route to {self.topic!r} has no condition; use default_topic")

    def matches(self, kind: str, schema: str | None, app_id: str | None) -> bool:
        if self.kinds and kind not in self.kinds:
            return False
        if self.schemas and (schema is None
                             or not any(fnmatchcase(schema, pat) for pat in self.schemas)):
            return False
        return not (self.app_ids and (app_id is None or not any(fnmatchcase(app_id, pat)
                                                                  for pat in self.app_ids)))


@dataclass(frozen=True, slots=True)
class Destination:
    topic: str
    format: str
    route: str


class Router:
    def __init__(self, routes: Sequence[Route], default_topic: str,
                 default_format: str = "json") -> None:
        self.routes = tuple(routes)
        self.default = Destination(default_topic, default_format, "default")
        self._destinations = tuple(Destination(r.topic, r.format, r.name or f"route-{i}")
                                   for i, r in enumerate(self.routes))

    def route(self, kind: str, schema: str | None, app_id: str | None) -> Destination:
        for r, dest in zip(self.routes, self._destinations, strict=True):
            if r.matches(kind, schema, app_id):
                return dest
        return self.default

    def topics(self) -> list[str]:
        """Every topic a good event can go to (for creating them and ``--check``)."""
        seen = dict.fromkeys([*(r.topic for r in self.routes), self.default.topic])
        return list(seen)
