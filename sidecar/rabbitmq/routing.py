"""Routing rules: which Kafka topic a delivery goes to, under which key and event type.

Pure: plain values in, plain values out. Rules are tried in order and the first whose every
condition matches wins; the default route (if any) catches the rest. Patterns use the AMQP
topic-binding syntax RabbitMQ users already know (``*`` one word, ``#`` zero or more words,
words separated by dots) or a regular expression (``re:...``, full match).
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .settings import Route

TEMPLATE_FIELDS = frozenset({"routing_key", "rk", "exchange", "queue", "type", "app_id",
                             "headers", "stream"})
# Kafka's legal topic characters; anything else in a rendered topic becomes "_".
_ILLEGAL_TOPIC_CHARS = re.compile(r"[^A-Za-z0-9._-]")
MAX_TOPIC_LEN = 249

Matcher = Callable[[str], bool]


class RouteError(ValueError):
    """The delivery matched a rule but its topic or key could not be rendered."""


def compile_pattern(pattern: str) -> Matcher:
    """A matcher for AMQP topic-style ``pattern`` (or ``re:REGEX``)."""
    if pattern.startswith("re:"):
        rx = re.compile(pattern[3:])
        return lambda value: rx.fullmatch(value) is not None
    words = tuple(pattern.split("."))
    if "#" not in words and "*" not in words:
        return lambda value: value == pattern
    return lambda value: _match_words(words, tuple(value.split(".")))


def _match_words(pat: Sequence[str], words: Sequence[str]) -> bool:
    # Iterative matcher with backtracking on the last '#' (like glob '*' over words):
    # linear in practice, never exponential.
    p = w = 0
    star_p, star_w = -1, 0
    while w < len(words):
        if p < len(pat) and pat[p] == "#":
            star_p, star_w = p, w
            p += 1
        elif p < len(pat) and (pat[p] == "*" or pat[p] == words[w]):
            p += 1
            w += 1
        elif star_p >= 0:
            p = star_p + 1
            star_w += 1
            w = star_w
        else:
            return False
    while p < len(pat) and pat[p] == "#":
        p += 1
    return p == len(pat)


def check_template(template: str, what: str) -> None:
    """Reject unknown fields at config time instead of dead-lettering every message later."""
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name is None:
            continue
        root = re.split(r"[.\[]", field_name, maxsplit=1)[0]
        if root not in TEMPLATE_FIELDS:
            raise ValueError(f"{what}: unknown template field {{{field_name}}}; "
                             f"use one of {sorted(TEMPLATE_FIELDS)}")


@dataclass(frozen=True, slots=True)
class RoutingInput:
    """What routing may look at: the delivery's address and properties, not its body."""

    queue: str
    exchange: str
    routing_key: str
    type: str | None = None
    app_id: str | None = None
    headers: Mapping[str, Any] | None = None

    def fields(self, stream: str) -> dict[str, Any]:
        return {
            "routing_key": self.routing_key,
            "rk": self.routing_key.split("."),
            "exchange": self.exchange,
            "queue": self.queue,
            "type": self.type,
            "app_id": self.app_id,
            "headers": {k: _header_text(v) for k, v in (self.headers or {}).items()},
            "stream": stream,
        }


def _header_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class _StrictFields(dict[str, Any]):
    def __missing__(self, key: str) -> Any:
        raise RouteError(f"template field {{{key}}} unknown")


def _has_fields(template: str) -> bool:
    return any(name is not None for _, name, _, _ in string.Formatter().parse(template))


def render(template: str, fields: Mapping[str, Any]) -> str:
    for name in ("type", "app_id"):
        if f"{{{name}" in template and fields.get(name) is None:
            raise RouteError(f"template needs AMQP property {name!r}, which is not set")
    try:
        return template.format_map(_StrictFields(fields))
    except (KeyError, IndexError) as exc:
        raise RouteError(f"template {template!r}: no value for {exc}") from exc


def sanitize_topic(name: str) -> str:
    topic = _ILLEGAL_TOPIC_CHARS.sub("_", name)
    if not topic or topic in (".", "..") or len(topic) > MAX_TOPIC_LEN:
        raise RouteError(f"rendered topic {name!r} is not a legal Kafka topic name")
    return topic


@dataclass(frozen=True, slots=True)
class Target:
    """Where one delivery goes."""

    route: Route
    topic: str
    event_type: str


class _CompiledRoute:
    __slots__ = ("conditions", "route")

    def __init__(self, route: Route) -> None:
        self.route = route
        conds: list[Callable[[RoutingInput], bool]] = []
        if route.routing_key is not None:
            m_rk = compile_pattern(route.routing_key)
            conds.append(lambda d: m_rk(d.routing_key))
        if route.exchange is not None:
            m_ex = compile_pattern(route.exchange)
            conds.append(lambda d: m_ex(d.exchange))
        if route.queue is not None:
            m_q = compile_pattern(route.queue)
            conds.append(lambda d: m_q(d.queue))
        if route.type is not None:
            m_t = compile_pattern(route.type)
            conds.append(lambda d: d.type is not None and m_t(d.type))
        for name, pattern in route.headers.items():
            conds.append(_header_condition(name, compile_pattern(pattern)))
        self.conditions = tuple(conds)
        check_template(route.topic, f"route {route.label}: topic")
        if route.event_type:
            check_template(route.event_type, f"route {route.label}: event_type")

    def matches(self, d: RoutingInput) -> bool:
        return all(cond(d) for cond in self.conditions)


def _header_condition(name: str, matcher: Matcher) -> Callable[[RoutingInput], bool]:
    def cond(d: RoutingInput) -> bool:
        value = (d.headers or {}).get(name)
        return value is not None and matcher(_header_text(value))
    return cond


class Router:
    """First matching rule wins; then the default route; else ``None`` (dead-letter)."""

    def __init__(self, routes: Sequence[Route], default: Route | None, stream: str) -> None:
        self._routes = [_CompiledRoute(r) for r in routes]
        self._default = _CompiledRoute(default) if default is not None else None
        self._stream = stream
        # Topics without template fields are rendered once, not per message.
        self._static = {id(c.route): sanitize_topic(c.route.topic)
                        for c in [*self._routes, *([self._default] if self._default else [])]
                        if not _has_fields(c.route.topic)}

    def route(self, d: RoutingInput) -> Target | None:
        """The target for ``d``, or None when nothing matches. Raises RouteError when the
        matching rule's templates cannot be rendered for this delivery."""
        chosen = next((r.route for r in self._routes if r.matches(d)), None)
        if chosen is None and self._default is not None:
            chosen = self._default.route
        if chosen is None:
            return None
        static = self._static.get(id(chosen))
        fields = d.fields(self._stream) if static is None or chosen.event_type else {}
        topic = static if static is not None else sanitize_topic(render(chosen.topic, fields))
        if chosen.event_type:
            event_type = render(chosen.event_type, fields)
        else:
            event_type = d.type or d.routing_key or d.queue
        return Target(route=chosen, topic=topic, event_type=event_type)


def lookup_path(doc: Any, dotted: str) -> Any:
    """``doc["a"]["b"]`` for ``"a.b"``; None when any step is missing."""
    cur = doc
    for part in dotted.split("."):
        if isinstance(cur, Mapping):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return None
        if cur is None:
            return None
    return cur


def partition_key(source: str, *, event_id: str, routing_key: str,
                  headers: Mapping[str, Any] | None, payload: Any) -> bytes | None:
    """The Kafka record key from ``source`` (see ``Route.key``). A missing header or payload
    field falls back to the event_id, so the record still lands (order for it is moot)."""
    value: Any
    if source == "event_id":
        value = event_id
    elif source == "routing_key":
        value = routing_key
    elif source == "none":
        return None
    else:
        kind, _, arg = source.partition(":")
        value = (headers or {}).get(arg) if kind == "header" else lookup_path(payload, arg)
        if value is None:
            value = event_id
    if isinstance(value, bytes):
        return value
    return str(value).encode()
