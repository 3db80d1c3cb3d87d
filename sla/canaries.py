"""Canaries, the I/O part: a publisher per path, one thread per path publishing on its
schedule, and the check a scrape runs against the warehouse.

- **RabbitMQ**: a JSON message to ``exchange`` with ``routing_key``, published with
  confirms and ``mandatory`` (a message no queue is bound for is a failure, not a silent
  drop), AMQP ``message_id`` = the canary's id (the bridge's event_id) and ``app_id`` =
  ``conveyor-canary`` (the bridge carries it as ``attributes.amqp.app_id``).
- **Snowplow**: one structured event (``e=se``) POSTed to the collector's tp2 endpoint as
  a tracker would, ``aid`` = ``conveyor-canary``, ``ttm`` = the publish time (the row's
  ``occurred_at``), anonymous (no cookie, no IP recorded). The tracker protocol wants a
  UUID for ``eid``, so the readable id travels in ``se_la`` and the eid is derived from it.

A publish that fails is counted with its reason and never stops the thread; the exporter
serves its page whatever the publishers do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from .canary import APP_ID, PathBook, canary_id, next_due, snowplow_event_id
from .core import Histogram
from .settings import CanaryPath, RabbitMQCanary, SlaSecrets, SlaSettings, SnowplowCanary

log = logging.getLogger(__name__)

PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
TP2_PATH = "/com.snowplowanalytics.snowplow/tp2"
TRACKER_VERSION = "conveyor-sla-1"


class PublishFailed(Exception):
    """The path's entry point did not take the canary; ``reason`` is a metric label."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Publisher(Protocol):
    def publish(self, readable_id: str, run: str, published_s: float) -> str:
        """Publish one canary; return the event_id its row will carry. Raise PublishFailed."""
        ...

    def close(self) -> None: ...


def iso_ms(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")


def render_payload(template: Any, values: Mapping[str, str]) -> Any:
    """The payload template with ``{name}`` placeholders replaced in every string value;
    a string that is exactly ``{published_ms}`` becomes a number (Avro longs want one)."""
    if isinstance(template, str):
        if template == "{published_ms}":
            return int(values["published_ms"])
        out = template
        for name, value in values.items():
            out = out.replace("{" + name + "}", value)
        return out
    if isinstance(template, Mapping):
        return {k: render_payload(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [render_payload(v, values) for v in template]
    return template


class RabbitMQPublisher:
    """One connection and confirming channel, rebuilt after any failure (a broken pika
    connection is dropped, never patched). Used by one thread only, as pika requires."""

    def __init__(self, settings: RabbitMQCanary, url: str) -> None:
        self._settings = settings
        self._url = url
        self._conn: Any = None
        self._channel: Any = None

    def _open(self) -> Any:
        import pika

        if self._channel is not None and self._channel.is_open:
            return self._channel
        self.close()
        params = pika.URLParameters(self._url)
        timeout = self._settings.timeout_seconds
        params.socket_timeout = timeout
        params.stack_timeout = timeout
        params.blocked_connection_timeout = timeout
        params.connection_attempts = 1
        params.client_properties = {"connection_name": "conveyor-sla canary"}
        try:
            self._conn = pika.BlockingConnection(params)
            self._channel = self._conn.channel()
            self._channel.confirm_delivery()
        except Exception as exc:
            self.close()
            # pika's message names host and port, never the password.
            raise PublishFailed("connection", type(exc).__name__) from exc
        return self._channel

    def publish(self, readable_id: str, run: str, published_s: float) -> str:
        """Publish with confirms. A connection found dead at publishing (the broker closed it
        while idle: heartbeats go unanswered between canaries spaced wider than the
        heartbeat) is rebuilt and the canary published once more; should the first one have
        reached the broker after all, the bridge takes the second as a duplicate of the same
        message_id."""
        fresh = self._channel is None
        try:
            return self._publish(readable_id, run, published_s)
        except PublishFailed as exc:
            if fresh or exc.reason != "connection":
                raise
        return self._publish(readable_id, run, published_s)

    def _publish(self, readable_id: str, run: str, published_s: float) -> str:
        import pika
        from pika import exceptions as px

        channel = self._open()
        body = json.dumps(render_payload(self._settings.payload, {
            "event_id": readable_id, "published_at": iso_ms(published_s),
            "published_ms": str(int(published_s * 1000)), "run": run,
        }), separators=(",", ":")).encode()
        props = pika.BasicProperties(
            message_id=readable_id, app_id=APP_ID, type="conveyor.canary",
            content_type="application/json", delivery_mode=2, timestamp=int(published_s))
        try:
            channel.basic_publish(self._settings.exchange, self._settings.routing_key, body,
                                  properties=props, mandatory=True)
        except px.UnroutableError as exc:
            raise PublishFailed("unroutable", self._settings.routing_key) from exc
        except px.NackError as exc:
            raise PublishFailed("nacked") from exc
        except Exception as exc:   # connection or channel gone: rebuilt on the next canary
            self.close()
            raise PublishFailed("connection", type(exc).__name__) from exc
        return readable_id

    def close(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            with contextlib.suppress(Exception):   # already broken: nothing to close cleanly
                conn.close()


class SnowplowPublisher:
    def __init__(self, settings: SnowplowCanary) -> None:
        self._url = settings.collector_url.rstrip("/") + TP2_PATH
        self._client = httpx.Client(timeout=settings.timeout_seconds)

    @staticmethod
    def body(readable_id: str, run: str, published_s: float) -> dict[str, Any]:
        ms = str(int(published_s * 1000))
        return {"schema": PAYLOAD_DATA, "data": [{
            "e": "se", "eid": snowplow_event_id(readable_id), "tv": TRACKER_VERSION,
            "p": "srv", "aid": APP_ID, "tna": APP_ID, "dtm": ms, "stm": ms, "ttm": ms,
            "se_ca": "conveyor", "se_ac": "canary", "se_la": readable_id, "se_pr": run,
        }]}

    def publish(self, readable_id: str, run: str, published_s: float) -> str:
        body = self.body(readable_id, run, published_s)
        try:
            # SP-Anonymous: the collector sets no cookie and records no IP for it.
            response = self._client.post(self._url, json=body,
                                         headers={"SP-Anonymous": "*"})
        except httpx.TimeoutException as exc:
            raise PublishFailed("timeout") from exc
        except httpx.HTTPError as exc:
            raise PublishFailed("connection", type(exc).__name__) from exc
        if response.status_code != 200:
            raise PublishFailed(f"http_{response.status_code}")
        return str(body["data"][0]["eid"])

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class PathView:
    """One path as a scrape renders it (copied under the lock)."""

    path: str
    table: str
    sent: int
    seen: int
    lost: int
    pending: int
    failures: dict[str, int]
    age_s: float
    latency: Histogram
    missing_after_s: float
    latency_threshold_s: float


class Finder(Protocol):
    def find(self, table: str, event_ids: list[str]) -> dict[str, float]:
        """event_id -> landed_at (epoch s) of the rows found; raise SourceDown."""
        ...


class Canaries:
    """The books of every enabled path, the threads that publish into them, and the check
    each scrape runs."""

    def __init__(self, settings: SlaSettings, publishers: Mapping[str, Publisher],
                 clock: Callable[[], float] = time.time, run: str | None = None) -> None:
        self.run = run or uuid.uuid4().hex[:8]
        self._paths: dict[str, CanaryPath] = dict(settings.canary.paths())
        self._publishers = dict(publishers)
        self._clock = clock
        self._lock = threading.Lock()
        now = clock()
        self.books = {name: PathBook(name, p.deadline_seconds, now,
                                     tuple(settings.canary.buckets),
                                     settings.canary.max_pending)
                      for name, p in self._paths.items()}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- publishing ------------------------------------------------------------------------

    def publish_once(self, path: str, seq: int) -> bool:
        """Publish canary ``seq`` of ``path`` and book the outcome; never raises."""
        readable = canary_id(path, self.run, seq)
        at = self._clock()
        try:
            event_id = self._publishers[path].publish(readable, self.run, at)
        except PublishFailed as exc:
            with self._lock:
                self.books[path].failed(exc.reason)
            log.warning("sla.canary_publish_failed", extra={"path": path, "error": str(exc)})
            return False
        except Exception as exc:
            with self._lock:
                self.books[path].failed("internal")
            log.exception("sla.canary_publish_unexpected",
                          extra={"path": path, "error": repr(exc)})
            return False
        with self._lock:
            self.books[path].published(event_id, at)
        return True

    def _loop(self, path: str) -> None:
        interval = self._paths[path].interval_seconds
        due, seq = self._clock(), 0
        while not self._stop.is_set():
            wait = due - self._clock()
            if wait > 0 and self._stop.wait(wait):
                break
            seq += 1
            self.publish_once(path, seq)
            due = next_due(due, interval, self._clock())

    def start(self) -> None:
        for path in self._paths:
            t = threading.Thread(target=self._loop, args=(path,), name=f"canary-{path}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        if self._paths:
            log.info("sla.canaries_started", extra={"paths": sorted(self._paths),
                                                    "run": self.run})

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)
        for p in self._publishers.values():
            try:
                p.close()
            except Exception:
                log.exception("sla.canary_close")

    # -- checking --------------------------------------------------------------------------

    def check(self, finder: Finder) -> None:
        """Look for every undecided canary in its table and decide what can be decided.
        A table that cannot be read raises (SourceDown) before anything is decided."""
        for path, settings in self._paths.items():
            with self._lock:
                wanted = self.books[path].looking_for()
            if not wanted:
                continue
            # "Now" before the query: a canary is lost only if its deadline had passed
            # before the look that did not find it began.
            now = self._clock()
            visible = finder.find(settings.table, wanted)
            with self._lock:
                decided = self.books[path].observe(now, visible)
            for event_id in decided.lost:
                log.warning("sla.canary_lost", extra={"path": path, "event_id": event_id})

    def views(self) -> list[PathView]:
        now = self._clock()
        out = []
        with self._lock:
            for path, b in self.books.items():
                p = self._paths[path]
                h = Histogram(b.latency.buckets, list(b.latency.counts), b.latency.total)
                out.append(PathView(path, p.table, b.sent, b.seen, b.lost, len(b.pending),
                                    dict(b.failures), b.age(now), h,
                                    p.missing_after_seconds, p.latency_threshold_seconds))
        return out


def build(settings: SlaSettings, secrets: SlaSecrets) -> Canaries | None:
    """The canaries of the enabled paths, or None when none is."""
    paths = settings.canary.paths()
    if not paths:
        return None
    publishers: dict[str, Publisher] = {}
    if "rabbitmq" in paths:
        rmq = settings.canary.rabbitmq
        publishers["rabbitmq"] = RabbitMQPublisher(rmq, secrets.amqp_url(rmq))
    if "snowplow" in paths:
        publishers["snowplow"] = SnowplowPublisher(settings.canary.snowplow)
    return Canaries(settings, publishers)
