"""The collector's HTTP shell: aiohttp routes that read requests and wait for the commit.

Routes (as Snowplow collectors serve them):

- ``GET|HEAD /i``, ``/ice.png``: one event in the querystring; answers a 1x1 GIF;
- ``POST /com.snowplowanalytics.snowplow/tp2``: a payload_data batch; answers ``ok``;
- ``GET /r/tp2?u=<url>``: a click redirect: the event is recorded, then 302 to ``u`` when
  its host is on ``http.redirect_domains`` (else 400: no open redirector);
- ``OPTIONS *``: CORS preflight echoing the Origin, with credentials;
- ``GET /health``: 200 while serving, 503 once draining for shutdown;
- ``GET /sink-health``: 200 only while Kafka takes our transactions;
- ``GET /metrics``: Prometheus; ``GET /robots.txt``: disallow all.

The collector is thin: each request becomes one raw record (``raw.py``; a POST larger than
a record becomes several, split along event boundaries) on the raw topic, unparsed, and
the tracker gets 200 once that record is committed, 503 only when Kafka cannot take it.
Parsing, validation, dedup and routing happen in enrich, where a failure is a bad row.
The body is read as sent (``auto_decompress=False``): aiohttp would otherwise inflate a
gzip body before we see it, and enrich would inflate it a second time.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.common.envelope import now_ms

from .committer import GroupCommitter
from .identity import cors_headers, preflight_headers
from .intake import IntakeConfig, intake
from .metrics import Metrics
from .protocol import PIXEL_PATHS, REDIRECT_PATH, TP2_PATH, redirect_target
from .settings import CollectorSettings, Secrets
from .sink import RawSink, SinkUnavailable

log = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAPAAAP///wAAACH5BAUAAAAALAAAAAABAAEAAAICRAEAOw==")
ROBOTS = "User-agent: *\nDisallow: /\n"
READ_CHUNK = 64 * 1024
# Kafka not reachable at start: retry every this many seconds (tracker routes answer 503).
START_RETRY_S = 2.0
PROBE_EVERY_S = 5.0
COLLECTOR_NAME = "conveyor-snowplow/0.2.0"
# How the HTTP server must be run (tests start theirs with these too): bodies as sent.
SERVER_KWARGS: dict[str, Any] = {"auto_decompress": False}


class Collector:
    """The running collector: core + sink + committer + HTTP app."""

    def __init__(self, settings: CollectorSettings, sink: RawSink | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.intake = IntakeConfig(
            raw_topic=settings.raw.topic, cookie=settings.cookie.to_config(),
            use_forwarded_for=settings.http.use_x_forwarded_for,
            split_bytes=settings.split_bytes, sample_bytes=settings.sample_bytes,
            inflate_bytes=settings.http.hard_max_body_bytes)
        self.sink = sink or RawSink(settings, Secrets())
        # Start-up and topic creation; commits run on the committer's own threads.
        self._kafka_thread = ThreadPoolExecutor(1, thread_name_prefix="kafka-setup")
        self.committer = GroupCommitter(self.sink, settings.commit, self.metrics)
        self.ready = False
        self.draining = False
        self._probe_ok = False
        self._tasks: list[asyncio.Task[None]] = []
        self._paths = {TP2_PATH: TP2_PATH, REDIRECT_PATH: REDIRECT_PATH,
                       **{p: p for p in PIXEL_PATHS}, **settings.http.paths}

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.committer.start()
        self._tasks.append(loop.create_task(self._connect(), name="kafka-start"))
        self._tasks.append(loop.create_task(self._probe_loop(), name="kafka-probe"))

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.draining:
            try:
                await loop.run_in_executor(self._kafka_thread, self.sink.start)
            except Exception as exc:
                log.warning("snowplow.kafka_not_ready", extra={"error": str(exc)})
                await asyncio.sleep(START_RETRY_S)
                continue
            limit = getattr(self.sink, "record_limit", None)
            if limit is not None:
                # Records sized to what the raw topic takes: a body that would not fit is
                # split (or sampled) here rather than refused by Kafka.
                self.intake = dataclasses.replace(
                    self.intake, split_bytes=min(self.intake.split_bytes, limit),
                    sample_bytes=min(self.intake.sample_bytes, limit))
            self.ready = self._probe_ok = True
            self.metrics.sink_healthy.set(1)
            log.info("snowplow.ready", extra={"transactional_id": self.settings.transactional_id,
                                              "raw_topic": self.settings.raw.topic})
            return

    async def _probe_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PROBE_EVERY_S)
            # Default executor, not the Kafka thread: a probe must not queue behind a commit.
            self._probe_ok = await loop.run_in_executor(None, self.sink.probe)

    @property
    def sink_healthy(self) -> bool:
        return self.ready and self._probe_ok and self.committer.healthy

    async def stop(self) -> None:
        """After the listener closed and in-flight requests finished: commit the rest."""
        self.draining = True
        for t in self._tasks:
            t.cancel()
        await self.committer.close()
        await asyncio.get_running_loop().run_in_executor(None, self.sink.close)
        self._kafka_thread.shutdown(wait=False)

    # -- the app --------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._preflight_middleware])
        app.router.add_get("/health", self.health)
        app.router.add_get("/sink-health", self.sink_health)
        app.router.add_get("/metrics", self.metrics_page)
        app.router.add_get("/robots.txt", self.robots)
        for path, target in self._paths.items():
            if target == TP2_PATH:
                app.router.add_post(path, self.track)
            else:   # pixel and redirect; add_get also answers HEAD
                app.router.add_get(path, self.track)
        return app

    async def health(self, request: web.Request) -> web.Response:
        status = 503 if self.draining else 200
        self.metrics.requests.labels("health", str(status)).inc()
        return web.Response(status=status, text="draining" if self.draining else "ok")

    async def sink_health(self, request: web.Request) -> web.Response:
        ok = self.sink_healthy
        status = 200 if ok else 503
        self.metrics.requests.labels("sink-health", str(status)).inc()
        return web.Response(status=status, text="ok" if ok else "kafka unavailable")

    async def metrics_page(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def robots(self, request: web.Request) -> web.Response:
        return web.Response(text=ROBOTS)

    @web.middleware
    async def _preflight_middleware(self, request: web.Request,
                                    handler: Any) -> web.StreamResponse:
        # Any path answers a preflight (as Snowplow collectors do); a route per path would
        # turn a GET of an unknown path into 405 instead of 404.
        if request.method == "OPTIONS":
            return await self.preflight(request)
        return await handler(request)

    async def preflight(self, request: web.Request) -> web.Response:
        self.metrics.requests.labels("options", "200").inc()
        return web.Response(headers=preflight_headers(request.headers.get("Origin"),
                                                      self.settings.http.cors_max_age_s))

    async def track(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        path = self._paths[request.path]
        route = "tp2" if path == TP2_PATH else "redirect" if path == REDIRECT_PATH else "pixel"
        received = now_ms()
        origin = request.headers.get("Origin")
        extra = cors_headers(origin)
        if not self.ready:
            return self._done(route, started, web.Response(
                status=503, text="not ready: kafka", headers={**extra, "Retry-After": "2"}))
        target = None
        if path == REDIRECT_PATH:
            target = redirect_target(request.query_string, self.settings.http.redirect_domains)
            if target is None:
                # Nothing recorded: a redirect we would not follow is not a click.
                return self._done(route, started, web.Response(
                    status=400, text="redirect target missing or not allowed", headers=extra))
        body: bytes | None = None
        size = 0
        over_hard = False
        if request.method == "POST":
            body, size, over_hard = await self._read_body(request)
        taken = intake(self.intake, method=request.method, path=path,
                       query_string=request.rel_url.raw_query_string,
                       headers=request.headers, body=body, body_size=size,
                       received_at_ms=received, remote=request.remote,
                       over_hard_limit=over_hard)
        try:
            await self.committer.submit(taken.outputs)
        except SinkUnavailable as exc:
            return self._done(route, started, web.Response(
                status=503, text=f"unavailable: {exc}"[:200], headers={**extra,
                                                                       "Retry-After": "1"}))
        if taken.identity.set_cookie:
            extra["Set-Cookie"] = taken.identity.set_cookie
        if over_hard:
            # The sample and the size are durable (a size bad row); the rest was never read.
            extra["Connection"] = "close"
            return self._done(route, started, web.Response(status=413, text="too large",
                                                           headers=extra))
        if target is not None:
            extra["Location"] = target
            extra["Cache-Control"] = "no-cache, no-store, must-revalidate"
            return self._done(route, started, web.Response(status=302, headers=extra))
        if path != TP2_PATH:
            extra["Cache-Control"] = "no-cache, no-store, must-revalidate"
            resp = web.Response(body=PIXEL, content_type="image/gif", headers=extra)
        else:
            resp = web.Response(text="ok", headers=extra)
        return self._done(route, started, resp)

    def _done(self, route: str, started: float, resp: web.Response) -> web.Response:
        self.metrics.requests.labels(route, str(resp.status)).inc()
        self.metrics.request_seconds.labels(route).observe(time.monotonic() - started)
        return resp

    async def _read_body(self, request: web.Request) -> tuple[bytes, int, bool]:
        """(body, or its first bytes past the hard limit; bytes read; over the hard limit)."""
        hard = self.settings.http.hard_max_body_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(READ_CHUNK):
            size += len(chunk)
            chunks.append(chunk)
            if size > hard:
                return b"".join(chunks), size, True
        return b"".join(chunks), size, False


async def serve(settings: CollectorSettings, stop: asyncio.Event,
                collector: Collector | None = None) -> None:
    """Run until ``stop`` is set, then shut down gracefully (see ``Collector.stop``)."""
    collector = collector or Collector(settings)
    runner = web.AppRunner(collector.app(), access_log=None,
                           shutdown_timeout=settings.shutdown_timeout_s, **SERVER_KWARGS)
    await runner.setup()
    site = web.TCPSite(runner, settings.http.host, settings.http.port, reuse_address=True,
                       backlog=1024)
    await collector.start()
    await site.start()
    log.info("snowplow.listening", extra={"host": settings.http.host, "port": settings.http.port,
                                          "ack": "UNSAFE-before-commit"
                                          if settings.commit.unsafe_ack_before_commit
                                          else "after-commit"})
    await stop.wait()
    log.info("snowplow.draining", extra={"delay_s": settings.drain_delay_s})
    collector.draining = True
    if settings.drain_delay_s:
        await asyncio.sleep(settings.drain_delay_s)
    # Closes the listener, then waits for in-flight requests, which wait for their commit.
    await runner.cleanup()
    await collector.stop()
    log.info("snowplow.stopped")
