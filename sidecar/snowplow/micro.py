"""Snowplow Micro for Conveyor: the good events and bad rows of the last minutes, for a
developer instrumenting an app (``conveyor-bridge snowplow-micro --config snowplow.yaml``).

It tails what enrich wrote (the config's good topics, Avro through the schema registry or
JSON, and its bad-row topic) from ``--window`` ago, keeps the last minutes in memory, and
answers Snowplow Micro's API, so tools written against Micro work:

- ``GET /micro/all``: ``{"total": n, "good": n, "bad": n}``;
- ``GET /micro/good``: the good events, newest first, filtered by ``schema`` (the
  self-describing event's Iglu URI, or a prefix of it), ``app_id``, ``event_type`` and
  ``contexts`` (an entity's Iglu URI prefix), at most ``limit``;
- ``GET /micro/bad``: the bad rows, newest first, filtered by ``reason``/``check`` and
  ``app_id`` where the row's original says it;
- ``GET /micro/reset``: forget everything seen so far (the tail goes on);
- ``/health``.

It reads only: no group joined, no offset committed, so it can run beside the real sinks.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

DEFAULT_WINDOW_S = 600.0
DEFAULT_MAX = 10_000


def _schema_of(value: Any) -> str | None:
    """The Iglu URI inside a self-describing JSON (text or parsed), if any."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if isinstance(value, dict):
        data = value.get("data")
        if isinstance(data, dict) and isinstance(data.get("schema"), str):
            # Snowplow's unstruct_event wrapper: {"schema": ".../unstruct_event/...",
            # "data": {"schema": <the event's>, "data": {...}}}
            return str(data["schema"])
        if isinstance(value.get("schema"), str):
            return str(value["schema"])
    return None


def _context_schemas(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    items = value.get("data") if isinstance(value, dict) else value
    if not isinstance(items, list):
        return []
    return [str(i["schema"]) for i in items if isinstance(i, dict) and isinstance(
        i.get("schema"), str)]


@dataclass(frozen=True)
class GoodEvent:
    event_id: str
    event_type: str
    app_id: str | None
    schema: str | None
    contexts: tuple[str, ...]
    topic: str
    seen_at: float
    event: dict[str, Any]

    @classmethod
    def from_envelope(cls, doc: Mapping[str, Any], topic: str, seen_at: float) -> GoodEvent:
        payload = doc.get("payload")
        if not isinstance(payload, dict):
            payload = {}
        return cls(event_id=str(doc.get("event_id", "")),
                   event_type=str(doc.get("event_type", "")),
                   app_id=payload.get("app_id") if isinstance(payload.get("app_id"), str)
                   else None,
                   schema=_schema_of(payload.get("unstruct_event")),
                   contexts=tuple(_context_schemas(payload.get("contexts"))),
                   topic=topic, seen_at=seen_at, event=_plain(dict(doc)))

    def as_json(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "event_type": self.event_type,
                "app_id": self.app_id, "schema": self.schema, "contexts": list(self.contexts),
                "topic": self.topic, "event": self.event}


@dataclass(frozen=True)
class BadRow:
    check: str | None
    reason: str | None
    message: str | None
    app_id: str | None
    seen_at: float
    row: dict[str, Any]

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any], seen_at: float) -> BadRow:
        data = doc.get("data")
        if not isinstance(data, dict):
            data = {}
        app_id = None
        original = data.get("original")
        if isinstance(original, dict) and isinstance(original.get("data"), str):
            try:
                parsed = json.loads(original["data"])
                if isinstance(parsed, dict) and isinstance(parsed.get("aid"), str):
                    app_id = parsed["aid"]
            except ValueError:
                pass

        def text(key: str) -> str | None:
            v = data.get(key)
            return v if isinstance(v, str) else None

        return cls(text("check"), text("reason"), text("message"), app_id, seen_at,
                   _plain(dict(doc)))


def _plain(value: Any) -> Any:
    """JSON-safe: Avro timestamps (datetime) as ISO text, bytes as text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


@dataclass
class Store:
    """The last ``window_s`` of good events and bad rows, at most ``max_items`` of each."""

    window_s: float = DEFAULT_WINDOW_S
    max_items: int = DEFAULT_MAX
    clock: Callable[[], float] = time.monotonic
    good: deque[GoodEvent] = field(default_factory=deque)
    bad: deque[BadRow] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_good(self, e: GoodEvent) -> None:
        with self.lock:
            self.good.append(e)
            while len(self.good) > self.max_items:
                self.good.popleft()

    def add_bad(self, b: BadRow) -> None:
        with self.lock:
            self.bad.append(b)
            while len(self.bad) > self.max_items:
                self.bad.popleft()

    def _expire(self) -> None:
        cutoff = self.clock() - self.window_s
        for q in (self.good, self.bad):
            while q and q[0].seen_at < cutoff:
                q.popleft()

    def counts(self) -> dict[str, int]:
        with self.lock:
            self._expire()
            return {"total": len(self.good) + len(self.bad), "good": len(self.good),
                    "bad": len(self.bad)}

    def reset(self) -> None:
        with self.lock:
            self.good.clear()
            self.bad.clear()

    def good_events(self, *, schema: str | None = None, app_id: str | None = None,
                    event_type: str | None = None, contexts: str | None = None,
                    limit: int | None = None) -> list[GoodEvent]:
        with self.lock:
            self._expire()
            items = list(reversed(self.good))
        out = [e for e in items
               if (schema is None or (e.schema or "").startswith(schema))
               and (app_id is None or e.app_id == app_id)
               and (event_type is None or e.event_type == event_type)
               and (contexts is None or any(c.startswith(contexts) for c in e.contexts))]
        return out[:limit] if limit is not None else out

    def bad_rows(self, *, reason: str | None = None, check: str | None = None,
                 app_id: str | None = None, limit: int | None = None) -> list[BadRow]:
        with self.lock:
            self._expire()
            items = list(reversed(self.bad))
        out = [b for b in items
               if (reason is None or b.reason == reason)
               and (check is None or b.check == check)
               and (app_id is None or b.app_id == app_id)]
        return out[:limit] if limit is not None else out


class BadQuery(ValueError):
    pass


def _one(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def answer(store: Store, url: str) -> tuple[int, Any]:
    """(status, JSON body) for a request path with its query string; never raises."""
    parts = urlsplit(url)
    params = parse_qs(parts.query)
    try:
        limit_text = _one(params, "limit")
        limit = None
        if limit_text is not None:
            if not limit_text.isdigit():
                raise BadQuery(f"limit must be a whole number, got {limit_text!r}")
            limit = int(limit_text)
        if parts.path == "/micro/all":
            return 200, store.counts()
        if parts.path == "/micro/good":
            return 200, [e.as_json() for e in store.good_events(
                schema=_one(params, "schema"), app_id=_one(params, "app_id"),
                event_type=_one(params, "event_type"), contexts=_one(params, "contexts"),
                limit=limit)]
        if parts.path == "/micro/bad":
            return 200, [b.row for b in store.bad_rows(
                reason=_one(params, "reason"), check=_one(params, "check"),
                app_id=_one(params, "app_id"), limit=limit)]
        if parts.path == "/micro/reset":
            store.reset()
            return 200, store.counts()
        if parts.path == "/health":
            return 200, {"status": "ok", **store.counts()}
    except BadQuery as exc:
        return 400, {"error": str(exc)}
    return 404, {"error": f"no such endpoint {parts.path}; try /micro/all, /micro/good, "
                          "/micro/bad, /micro/reset"}


def serve(store: Store, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answer(store, self.path)
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="micro-http", daemon=True).start()
    return server


class Tail:
    """Reads the topics from ``window_s`` ago into the store, until ``stop``."""

    def __init__(self, store: Store, kafka_conf: Mapping[str, Any], good_topics: Iterable[str],
                 bad_topic: str, registry_url: str | None,
                 registry_auth: str | None = None) -> None:
        self.store = store
        self._conf = dict(kafka_conf)
        self.good_topics = sorted(set(good_topics))
        self.bad_topic = bad_topic
        self._registry_url = registry_url
        self._registry_auth = registry_auth
        self.unreadable = 0

    def _decoder(self) -> Callable[[str, bytes], Any]:
        if not self._registry_url:
            return lambda _topic, value: json.loads(value)
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        conf = {"url": self._registry_url}
        if self._registry_auth:
            conf["basic.auth.user.info"] = self._registry_auth
        avro = AvroDeserializer(SchemaRegistryClient(conf))

        def decode(topic: str, value: bytes) -> Any:
            if value[:1] == b"\x00":      # the Confluent wire format's magic byte
                return avro(value, SerializationContext(topic, MessageField.VALUE))
            return json.loads(value)
        return decode

    def run(self, stop: threading.Event) -> None:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({**self._conf, "group.id": "conveyor-micro",
                             "enable.auto.commit": False, "isolation.level": "read_committed",
                             "auto.offset.reset": "latest"})
        decode = self._decoder()
        try:
            since_ms = int((time.time() - self.store.window_s) * 1000)
            wanted = [*self.good_topics, self.bad_topic]
            known: set[str] = set()
            next_refresh = 0.0
            while not stop.is_set():
                if time.monotonic() >= next_refresh:
                    meta = consumer.list_topics(timeout=10)
                    fresh = [t for t in wanted if t in meta.topics and t not in known]
                    if fresh:
                        parts = [TopicPartition(t, p, since_ms) for t in fresh
                                 for p in meta.topics[t].partitions]
                        starts = consumer.offsets_for_times(parts, timeout=10)
                        current = consumer.assignment()
                        consumer.assign([*current, *[TopicPartition(s.topic, s.partition,
                                                                    s.offset if s.offset >= 0
                                                                    else -1) for s in starts]])
                        known.update(fresh)
                    next_refresh = time.monotonic() + 10
                for msg in consumer.consume(500, timeout=0.5):
                    topic, value = msg.topic(), msg.value()
                    if msg.error() or value is None or topic is None:
                        continue
                    self._take(topic, value, decode)
        finally:
            consumer.close()

    def _take(self, topic: str, value: bytes, decode: Callable[[str, bytes], Any]) -> None:
        now = self.store.clock()
        try:
            doc = decode(topic, value)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            if topic == self.bad_topic:
                self.store.add_bad(BadRow.from_doc(doc, now))
            else:
                self.store.add_good(GoodEvent.from_envelope(doc, topic, now))
        except Exception as exc:  # one odd record must not stop the tail
            self.unreadable += 1
            log.debug("micro.unreadable", extra={"topic": topic, "error": str(exc)})


def main_command() -> Any:
    import click

    @click.command(name="snowplow-micro")
    @click.option("--config", "config_path", required=True,
                  type=click.Path(exists=True, dir_okay=False),
                  help="The collector/enrich config: its Kafka, schema registry and topics.")
    @click.option("--host", default="127.0.0.1", show_default=True)
    # Snowplow Micro's own default, 9090, is Prometheus's here.
    @click.option("--port", default=9190, show_default=True, type=int)
    @click.option("--window", "window_s", default=DEFAULT_WINDOW_S, show_default=True,
                  type=float, help="Seconds of events kept (and read back at start).")
    @click.option("--max", "max_items", default=DEFAULT_MAX, show_default=True, type=int,
                  help="Good events (and bad rows) kept at most.")
    def main(config_path: str, host: str, port: int, window_s: float, max_items: int) -> None:
        """The good events and bad rows enrich wrote in the last minutes, served with
        Snowplow Micro's API, for developers instrumenting an app.

        \b
        GET /micro/all                       {"total", "good", "bad"}
        GET /micro/good?schema=iglu:com.acme/checkout&app_id=shop&limit=10
            (also event_type=page_view, contexts=iglu:com.acme/user)
        GET /micro/bad?reason=schema_not_found&app_id=shop
        GET /micro/reset                     forget what was seen so far

        \b
        Reads only (no consumer group, no commits): run it beside the real pipeline.
        Example: conveyor-bridge snowplow-micro --config sidecar/snowplow/examples/compose.yaml
        """
        import signal

        from sidecar.common import logs
        from sidecar.common.errors import ConfigError

        from .settings import Secrets, load_settings

        try:
            settings = load_settings(config_path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        logs.configure(settings.log_level)
        secrets = Secrets()
        topics = settings.topics
        good = {topics.default, *(r.topic for r in topics.routes)}
        auth = secrets.schema_registry_user_info
        store = Store(window_s=window_s, max_items=max_items)
        tail = Tail(store, secrets.kafka_client_config(settings), good, topics.bad,
                    settings.schema_registry.url if topics.uses_avro else None,
                    auth.get_secret_value() if auth else None)
        server = serve(store, host, port)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        click.echo(f"snowplow-micro on http://{host}:{server.server_address[1]}/micro/all "
                   f"(topics {', '.join(sorted(good))}, bad rows {topics.bad})", err=True)
        try:
            tail.run(stop)
        finally:
            server.shutdown()

    return main


main = main_command()
