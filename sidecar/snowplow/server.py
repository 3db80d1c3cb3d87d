"""The HTTP shell: aiohttp routes that read requests, call the core, wait for the commit.

Routes (as Snowplow collectors serve them):

- ``GET|HEAD /i``, ``/ice.png``: one event in the querystring; answers a 1x1 GIF;
- ``POST /com.snowplowanalytics.snowplow/tp2``: a payload_data batch; answers ``ok``;
- ``OPTIONS *``: CORS preflight echoing the Origin, with credentials;
- ``GET /health``: 200 while serving, 503 once draining for shutdown;
- ``GET /sink-health``: 200 only while Kafka takes our transactions;
- ``GET /metrics``: Prometheus; ``GET /robots.txt``: disallow all.

Tracker routes answer 200 only after the request's events (good ones and bad rows) are
committed in Kafka, and 503 when they cannot be: never 200 for something not durable.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sidecar.common.envelope import now_ms

from .committer import GroupCommitter
from .identity import cors_headers, preflight_headers
from .iglu import Resolver
from .metrics import Metrics
from .pipeline import CollectorCore, RawRequest
from .protocol import PIXEL_PATHS, TP2_PATH
from .settings import CollectorSettings, Secrets
from .sink import KafkaSink, SinkUnavailable

log = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAPAAAP///wAAACH5BAUAAAAALAAAAAABAAEAAAICRAEAOw==")
ROBOTS = "User-agent: *\nDisallow: /\n"
READ_CHUNK = 64 * 1024
# Kafka not reachable at start: retry every this many seconds (tracker routes answer 503).
START_RETRY_S = 2.0
PROBE_EVERY_S = 5.0
COLLECTOR_NAME = "conveyor-snowplow/0.1.0"


class Collector:
    """The running collector: core + sink + committer + HTTP app."""

    def __init__(self, settings: CollectorSettings, sink: KafkaSink | None = None,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.resolver = Resolver(settings.iglu_repositories, bundled=settings.iglu.bundled)
        self.core = CollectorCore(
            self.resolver, settings.topics.router(), settings.topics.bad,
            cookie=settings.cookie.to_config(), limits=settings.limits_config(),
            use_forwarded_for=settings.http.use_x_forwarded_for, collector=COLLECTOR_NAME)
        self.sink = sink or KafkaSink(settings, Secrets())
        # Start-up and topic creation; commits run on the committer's own threads.
        self._kafka_thread = ThreadPoolExecutor(1, thread_name_prefix="kafka-setup")
        self.committer = GroupCommitter(self.sink, settings.commit, self.metrics)
        self.ready = False
        self.draining = False
        self._probe_ok = False
        self._tasks: list[asyncio.Task[None]] = []
        self._paths = {TP2_PATH: TP2_PATH, **{p: p for p in PIXEL_PATHS},
                       **settings.http.paths}

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
            self.ready = self._probe_ok = True
            self.metrics.sink_healthy.set(1)
            log.info("snowplow.ready", extra={"transactional_id": self.settings.transactional_id,
                                              "dedup_ids": len(self.sink.window)})
            return

    async def _probe_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(PROBE_EVERY_S)
            # Default executor, not the Kafka thread: a probe must not queue behind a commit.
            self._probe_ok = await loop.run_in_executor(None, self.sink.probe)
            self.metrics.dedup_window.set(len(self.sink.window))

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
            else:
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
        route = "tp2" if path == TP2_PATH else "pixel"
        received = now_ms()
        if not self.ready:
            return self._done(route, started, web.Response(
                status=503, text="not ready: kafka",
                headers={**cors_headers(request.headers.get("Origin")), "Retry-After": "2"}))
        headers = {k.lower(): v for k, v in request.headers.items()}
        body: bytes | None = None
        size = 0
        too_large = over_hard = False
        if request.method == "POST":
            body, size, too_large, over_hard = await self._read_body(request)
        raw = RawRequest(method=request.method, path=path, query_string=request.query_string,
                         headers=headers, body=body, received_at_ms=received,
                         remote=request.remote, body_size=size if body is not None else None,
                         body_too_large=too_large)
        processed = self.core.process(raw)
        extra = cors_headers(request.headers.get("Origin"))
        try:
            await self.committer.submit(processed.outputs)
        except SinkUnavailable as exc:
            return self._done(route, started, web.Response(
                status=503, text=f"unavailable: {exc}"[:200], headers={**extra,
                                                                       "Retry-After": "1"}))
        if processed.identity.set_cookie:
            extra["Set-Cookie"] = processed.identity.set_cookie
        if over_hard:
            # The sample and the size are durable as a bad row; the rest was never read.
            extra["Connection"] = "close"
            return self._done(route, started, web.Response(status=413, text="too large",
                                                           headers=extra))
        if processed.pixel:
            extra["Cache-Control"] = "no-cache, no-store, must-revalidate"
            resp = web.Response(body=PIXEL, content_type="image/gif", headers=extra)
        else:
            resp = web.Response(text="ok", headers=extra)
        return self._done(route, started, resp)

    def _done(self, route: str, started: float, resp: web.Response) -> web.Response:
        self.metrics.requests.labels(route, str(resp.status)).inc()
        self.metrics.request_seconds.labels(route).observe(time.monotonic() - started)
        return resp

    async def _read_body(self, request: web.Request) -> tuple[bytes, int, bool, bool]:
        """(body or its first bytes, full size, over max_body_bytes, over the hard limit)."""
        http = self.settings.http
        chunks: list[bytes] = []
        kept = size = 0
        async for chunk in request.content.iter_chunked(READ_CHUNK):
            size += len(chunk)
            if kept <= http.max_body_bytes:
                chunks.append(chunk)
                kept += len(chunk)
            if size > http.hard_max_body_bytes:
                return b"".join(chunks), size, True, True
        return b"".join(chunks), size, size > http.max_body_bytes, False


async def serve(settings: CollectorSettings, stop: asyncio.Event,
                collector: Collector | None = None) -> None:
    """Run until ``stop`` is set, then shut down gracefully (see ``Collector.stop``)."""
    collector = collector or Collector(settings)
    runner = web.AppRunner(collector.app(), access_log=None,
                           shutdown_timeout=settings.shutdown_timeout_s)
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
