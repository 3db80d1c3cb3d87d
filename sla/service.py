"""Wiring: settings -> the Kafka and warehouse sides -> the collector -> an HTTP server
with ``/metrics`` and ``/health``."""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .exporter import SlaCollector, health
from .kafka import (
    Cached,
    KafkaReader,
    PartitionReading,
    Sink,
    dead_letter_totals,
    list_sinks,
    read_partitions,
)
from .settings import SlaSecrets, SlaSettings
from .warehouse import Table, TableReading, Warehouse

log = logging.getLogger(__name__)


class ConnectKafkaSide:
    def __init__(self, settings: SlaSettings, secrets: SlaSecrets) -> None:
        assert settings.connect.url is not None
        url, cs = settings.connect.url, settings.connect
        self._sinks = Cached(lambda: list_sinks(url, cs.connectors, cs.timeout_seconds),
                             settings.metadata_ttl_seconds)
        self.reader = KafkaReader(secrets.kafka_client_config(settings),
                                  settings.record_read_timeout_seconds)
        self._topics = Cached(self.reader.topics, settings.metadata_ttl_seconds)

    def sinks(self) -> list[Sink]:
        result: list[Sink] = self._sinks.get()
        return result

    def partitions(self, sinks: list[Sink]) -> tuple[list[PartitionReading], list[str]]:
        return read_partitions(self.reader, sinks, self._topics.get())

    def dead_letters(self, sinks: list[Sink]) -> dict[str, tuple[str, int]]:
        return dead_letter_totals(self.reader, sinks, self._topics.get())

    def close(self) -> None:
        self.reader.close()


class PostgresSide:
    def __init__(self, settings: SlaSettings, secrets: SlaSecrets) -> None:
        pg = settings.postgres
        self._landing = settings.landing
        self.db = Warehouse(secrets.postgres_conninfo(pg), pg.schema_name)
        self._tables = Cached(lambda: self.db.tables(pg.tables, pg.max_tables),
                              settings.metadata_ttl_seconds)

    def tables(self) -> list[Table]:
        result: list[Table] = self._tables.get()
        return result

    def read(self, table: Table, since_s: float | None) -> TableReading:
        return self.db.read(table, since_s, self._landing.settle_seconds,
                            self._landing.buckets)

    def forget_tables(self) -> None:
        self._tables.invalidate()

    def close(self) -> None:
        self.db.close()


def build(settings: SlaSettings, secrets: SlaSecrets | None = None) -> SlaCollector:
    secrets = secrets or SlaSecrets()
    kafka = ConnectKafkaSide(settings, secrets) if settings.connect.url else None
    return SlaCollector(settings, kafka, PostgresSide(settings, secrets))


def make_server(collector: SlaCollector, host: str, port: int) -> ThreadingHTTPServer:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/health":
                ok, detail = health(collector)
                self._send(200 if ok else 503, "application/json",
                           json.dumps(detail).encode())
            else:
                self._send(404, "text/plain", b"/metrics or /health\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass   # a scrape every few seconds is not news

    return ThreadingHTTPServer((host, port), Handler)
