"""Wiring: settings -> the Kafka and warehouse sides -> the collector (served on
``/metrics`` and ``/health`` by ``sidecar.common.ops``, as the bridges are)."""

from __future__ import annotations

import logging

from . import canaries as canaries_mod
from .exporter import SlaCollector
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
        self.reader = KafkaReader(secrets.kafka_client_config(settings),
                                  settings.record_read_timeout_seconds)
        self._sinks = Cached(
            lambda: list_sinks(url, cs.connectors, self.reader.time_left(cs.timeout_seconds)),
            settings.metadata_ttl_seconds)
        self._topics = Cached(self.reader.topics, settings.metadata_ttl_seconds)
        self._budget_s = settings.kafka_budget_seconds

    def sinks(self) -> list[Sink]:
        # Connect's listing, then the offsets, bounds, records and dead-letter totals: one
        # scrape's budget for all of them.
        self.reader.budget(self._budget_s)
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

    def find(self, table: str, event_ids: list[str]) -> dict[str, float]:
        return self.db.find(table, event_ids)

    def close(self) -> None:
        self.db.close()


def build(settings: SlaSettings, secrets: SlaSecrets | None = None,
          canaries: bool = True) -> SlaCollector:
    """The collector; with ``canaries`` the enabled canary paths too (not started: the
    caller starts and stops their threads)."""
    secrets = secrets or SlaSecrets()
    kafka = ConnectKafkaSide(settings, secrets) if settings.connect.url else None
    return SlaCollector(settings, kafka, PostgresSide(settings, secrets),
                        canaries=canaries_mod.build(settings, secrets) if canaries else None)
