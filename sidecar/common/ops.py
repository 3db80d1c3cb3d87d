"""``/health`` and Prometheus ``/metrics`` on a small background HTTP server.

The bridges' main loops are blocking (pika, librdkafka), so the ops endpoints run on their
own thread. ``/health`` answers 200 only while the readiness callable says so, with a JSON
body naming what is (not) connected; load balancers and compose healthchecks use it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# Booleans decide the status (all must be true); other values only explain it.
Readiness = Callable[[], Mapping[str, object]]
# An extra page: called per request, returns (content type, body).
Page = Callable[[], tuple[str, bytes]]


class OpsServer:
    """Serves /health and /metrics (and any extra ``pages``, by path) until ``stop()``."""

    def __init__(self, host: str, port: int, readiness: Readiness,
                 registry: CollectorRegistry = REGISTRY,
                 pages: Mapping[str, Page] | None = None) -> None:
        handler = _handler(readiness, registry, dict(pages or {}))
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http",
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> OpsServer:
        self._thread.start()
        log.info("ops.listening", extra={"port": self.port})
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(readiness: Readiness, registry: CollectorRegistry,
             pages: Mapping[str, Page]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if path in pages:
                try:
                    ctype, body = pages[path]()
                except Exception as exc:  # a page's bug must not take /health down with it
                    log.exception("ops.page_failed", extra={"path": path})
                    self._send(500, "text/plain", f"{path} failed: {exc}\n".encode())
                    return
                self._send(200, ctype, body)
            elif path == "/health":
                checks = readiness()
                ok = all(v for v in checks.values() if isinstance(v, bool))
                body = json.dumps({"status": "ok" if ok else "unavailable", **checks}).encode()
                self._send(200 if ok else 503, "application/json", body)
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self._send(404, "text/plain", b"not found\n")

        def _send(self, status: int, ctype: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds would drown the real log lines

    return Handler
