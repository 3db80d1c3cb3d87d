"""One scrape: measure every source, turn readings into metric families, never raise.

Each source (Connect, Kafka, PostgreSQL) is measured on its own; one that does not answer
is reported as ``conveyor_sla_source_up{source=...} 0`` with one log line, and the others
are still measured. Measuring happens at scrape time (a custom collector), so "rows landed
since the last scrape" means exactly that, and an unscraped exporter costs nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from .canaries import Canaries
from .core import Histogram, PartitionKey, RetentionTracker, lag_seconds, threshold
from .kafka import PartitionReading, Sink, SourceDown
from .settings import SlaSettings
from .warehouse import Table, TableReading

log = logging.getLogger(__name__)

SOURCES = ("connect", "kafka", "postgres")
# Always exported (0 when none), so a rule on FAILED has a series to compare before the
# first failure.
TASK_STATES = ("RUNNING", "PAUSED", "STOPPED", "FAILED", "UNASSIGNED", "RESTARTING")


class KafkaSide(Protocol):
    def sinks(self) -> list[Sink]: ...
    def partitions(self, sinks: list[Sink]) -> tuple[list[PartitionReading], list[str]]: ...
    def dead_letters(self, sinks: list[Sink]) -> dict[str, tuple[str, int]]: ...


class WarehouseSide(Protocol):
    def tables(self) -> list[Table]: ...
    def read(self, table: Table, since_s: float | None) -> TableReading: ...
    def forget_tables(self) -> None: ...
    def find(self, table: str, event_ids: list[str]) -> dict[str, float]: ...


@dataclass
class Scrape:
    """What one scrape measured, as plain values (what `collect` renders)."""

    up: dict[str, bool] = field(default_factory=dict)
    lag: list[tuple[PartitionReading, float]] = field(default_factory=list)
    sinks: list[Sink] = field(default_factory=list)
    dead_letters: dict[str, tuple[str, int]] = field(default_factory=dict)
    tables: list[TableReading] = field(default_factory=list)
    duration: dict[str, float] = field(default_factory=dict)


class SlaCollector(Collector):
    def __init__(self, settings: SlaSettings, kafka: KafkaSide | None,
                 warehouse: WarehouseSide | None,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
                 canaries: Canaries | None = None) -> None:
        self.settings = settings
        self._kafka = kafka
        self._warehouse = warehouse
        self.canaries = canaries
        self._clock_ms = clock_ms
        self._lock = threading.Lock()    # scrapes in turn: counters and windows are state
        self.retention = RetentionTracker()
        self._cutoffs: dict[str, float] = {}
        self._histograms: dict[str, Histogram] = {}
        self._down: set[str] = set()
        self.last: Scrape | None = None
        self.last_at: float | None = None

    # -- measuring ------------------------------------------------------------------------

    def _mark(self, scrape: Scrape, source: str, ok: bool, why: str = "") -> None:
        scrape.up[source] = ok
        if not ok and source not in self._down:
            log.warning("sla.source_down", extra={"source": source, "error": why})
            self._down.add(source)
        elif ok and source in self._down:
            log.info("sla.source_up", extra={"source": source})
            self._down.discard(source)

    def measure(self) -> Scrape:
        with self._lock:
            scrape = Scrape()
            self._measure_kafka(scrape)
            self._measure_warehouse(scrape)
            self._measure_canaries(scrape)
            self.last, self.last_at = scrape, time.monotonic()
            return scrape

    def _measure_kafka(self, scrape: Scrape) -> None:
        if self._kafka is None:
            return
        started = time.perf_counter()
        try:
            sinks = self._kafka.sinks()
            self._mark(scrape, "connect", True)
            scrape.sinks = sinks   # their states and thresholds, even with Kafka away
        except SourceDown as exc:
            self._mark(scrape, "connect", False, str(exc))
            return
        except Exception as exc:   # a scrape never fails: it reports the source as down
            log.exception("sla.connect_unexpected")
            self._mark(scrape, "connect", False, repr(exc))
            return
        try:
            readings, problems = self._kafka.partitions(sinks)
            scrape.dead_letters = self._kafka.dead_letters(sinks)
            self._mark(scrape, "kafka", True)
        except SourceDown as exc:
            self._mark(scrape, "kafka", False, str(exc))
            return
        except Exception as exc:
            log.exception("sla.kafka_unexpected")
            self._mark(scrape, "kafka", False, repr(exc))
            return
        for problem in problems:
            log.warning("sla.sink_not_measured", extra={"error": problem})
        now = self._clock_ms()
        keys: list[PartitionKey] = []
        for r in readings:
            key = (r.group, r.topic, r.partition)
            keys.append(key)
            self.retention.observe(key, r.state.committed, r.state.log_start)
            if r.known:
                scrape.lag.append((r, lag_seconds(r.state, r.next_record_ms, now)))
        self.retention.forget(keys)
        scrape.duration["kafka"] = time.perf_counter() - started

    def _measure_warehouse(self, scrape: Scrape) -> None:
        if self._warehouse is None:
            return
        started = time.perf_counter()
        try:
            tables = self._warehouse.tables()
        except SourceDown as exc:
            self._mark(scrape, "postgres", False, str(exc))
            return
        except Exception as exc:
            log.exception("sla.postgres_unexpected")
            self._mark(scrape, "postgres", False, repr(exc))
            return
        ok, why = True, ""
        for table in tables:
            try:
                reading = self._warehouse.read(table, self._cutoffs.get(table.name))
            except LookupError:
                # Dropped since the table list was cached: look again next scrape.
                log.info("sla.table_gone", extra={"table": table.name})
                self._warehouse.forget_tables()
                continue
            except SourceDown as exc:
                ok, why = False, str(exc)
                break
            except Exception as exc:
                log.exception("sla.table_unexpected", extra={"table": table.name})
                ok, why = False, repr(exc)
                break
            hist = self._histograms.get(table.name)
            if hist is None:
                hist = self._histograms[table.name] = Histogram(
                    tuple(self.settings.landing.buckets))
            hist.add(reading.cumulative, reading.count, reading.total_s)
            self._cutoffs[table.name] = max(reading.cutoff_s,
                                            self._cutoffs.get(table.name, reading.cutoff_s))
            scrape.tables.append(reading)
        self._mark(scrape, "postgres", ok, why)
        if ok:
            names = {t.name for t in tables}
            for gone in [n for n in self._histograms if n not in names]:
                self._histograms.pop(gone, None)
                self._cutoffs.pop(gone, None)
        scrape.duration["postgres"] = time.perf_counter() - started

    def _measure_canaries(self, scrape: Scrape) -> None:
        if self.canaries is None or self._warehouse is None or not scrape.up.get("postgres"):
            return   # with the warehouse away nothing is decided: no canary counted lost
        started = time.perf_counter()
        try:
            self.canaries.check(self._warehouse)
        except SourceDown as exc:
            self._mark(scrape, "postgres", False, str(exc))
        except Exception as exc:
            log.exception("sla.canary_check_unexpected")
            self._mark(scrape, "postgres", False, repr(exc))
        scrape.duration["canaries"] = time.perf_counter() - started

    # -- rendering ------------------------------------------------------------------------

    def describe(self) -> Iterator[Metric]:
        return iter(())   # measured at collect time only: registering must not scrape

    def collect(self) -> Iterator[Metric]:
        scrape = self.measure()
        yield from render(scrape, self)


def render(scrape: Scrape, c: SlaCollector) -> Iterator[Metric]:
    th = c.settings.thresholds
    up = GaugeMetricFamily("conveyor_sla_source_up",
                           "1 when the last scrape could read this source, else 0",
                           labels=["source"])
    for source in SOURCES:
        if source in scrape.up:
            up.add_metric([source], 1.0 if scrape.up[source] else 0.0)
    yield up

    part_labels = ["connector", "group", "topic", "partition"]
    lag = GaugeMetricFamily(
        "conveyor_sla_sink_lag_seconds",
        "Now minus the timestamp of the record at the group's committed offset; 0 caught up",
        labels=part_labels)
    behind = GaugeMetricFamily("conveyor_sla_sink_lag_records",
                               "Committed records between the group's position and the end",
                               labels=part_labels)
    for r, seconds in scrape.lag:
        values = [r.connector, r.group, r.topic, str(r.partition)]
        lag.add_metric(values, seconds)
        behind.add_metric(values, float(r.state.records_behind))
    yield lag
    yield behind

    # Task states as Connect reports them: a FAILED task writes nothing and restarts only
    # when someone restarts it, so it is an alert of its own (its lag grows as well).
    tasks = GaugeMetricFamily("conveyor_sla_sink_tasks",
                              "Tasks of a sink connector per state, as Connect reports them",
                              labels=["connector", "state"])
    connector_state = GaugeMetricFamily(
        "conveyor_sla_sink_connector_state",
        "1 for the sink connector's state as Connect reports it", labels=["connector", "state"])
    for sink in scrape.sinks:
        counts: dict[str, int] = {}
        for state in sink.task_states:
            counts[state] = counts.get(state, 0) + 1
        for state in TASK_STATES:
            tasks.add_metric([sink.connector, state], float(counts.pop(state, 0)))
        for state, n in sorted(counts.items()):   # a state newer than this list
            tasks.add_metric([sink.connector, state], float(n))
        if sink.state:
            connector_state.add_metric([sink.connector, sink.state], 1.0)
    yield tasks
    yield connector_state

    dlq = GaugeMetricFamily(
        "conveyor_sla_sink_dead_letter_records",
        "Records in the sink's dead-letter topic (sum of its partitions' end offsets)",
        labels=["connector", "topic"])
    for connector, (topic, n) in sorted(scrape.dead_letters.items()):
        dlq.add_metric([connector, topic], float(n))
    yield dlq

    lost = CounterMetricFamily(
        "conveyor_sla_retention_lost_records",
        "Records that left the log (retention) before the group had read them",
        labels=["group", "topic", "partition"])
    for (group, topic, partition), total in sorted(c.retention.totals.items()):
        lost.add_metric([group, topic, str(partition)], float(total))
    yield lost

    lag_th = GaugeMetricFamily("conveyor_sla_sink_lag_threshold_seconds",
                               "Alert threshold for this connector's lag (settings)",
                               labels=["connector"])
    for sink in scrape.sinks:
        lag_th.add_metric([sink.connector], threshold(sink.connector, th.sink_lag_seconds,
                                                      th.sink_lag_overrides))
    yield lag_th

    fresh = GaugeMetricFamily(
        "conveyor_sla_table_freshness_seconds",
        "Now (the database's clock) minus the newest accepted_at among visible rows",
        labels=["table"])
    newest = GaugeMetricFamily("conveyor_sla_table_newest_accepted_timestamp_seconds",
                               "The newest accepted_at among visible rows, epoch seconds",
                               labels=["table"])
    stale_th = GaugeMetricFamily("conveyor_sla_table_stale_threshold_seconds",
                                 "Alert threshold for this table's freshness (settings)",
                                 labels=["table"])
    for t in scrape.tables:
        stale_th.add_metric([t.table], threshold(t.table, th.table_stale_seconds,
                                                 th.table_stale_overrides))
        if t.newest_accepted_s is not None:
            fresh.add_metric([t.table], max(0.0, t.db_now_s - t.newest_accepted_s))
            newest.add_metric([t.table], t.newest_accepted_s)
    yield fresh
    yield newest
    yield stale_th

    hist = HistogramMetricFamily(
        "conveyor_sla_landing_delay_seconds",
        "landed_at - accepted_at of rows landed since the previous scrape",
        labels=["table"])
    measured = {t.table for t in scrape.tables}
    for name, h in sorted(c._histograms.items()):
        if name not in measured:
            continue
        buckets: list[tuple[str, float]] = [
            (_le(b), float(n)) for b, n in zip(h.buckets, h.counts, strict=False)]
        buckets.append(("+Inf", float(h.counts[-1])))
        hist.add_metric([name], buckets, h.total)
    yield hist

    if c.canaries is not None:
        yield from render_canaries(c.canaries)

    dur = GaugeMetricFamily("conveyor_sla_measure_duration_seconds",
                            "Wall time the last scrape spent on each source", labels=["source"])
    for source, seconds in sorted(scrape.duration.items()):
        dur.add_metric([source], seconds)
    yield dur


def render_canaries(canaries: Canaries) -> Iterator[Metric]:
    views = canaries.views()
    labels = ["path"]
    info = GaugeMetricFamily(
        "conveyor_sla_canary_info",
        "1 per canary path: the table its rows are looked for in, and this process's run id "
        "(the <run> in canary-<path>-<run>-<seq>)", labels=["path", "table", "run"])
    sent = CounterMetricFamily("conveyor_sla_canary_sent",
                               "Canaries the path's entry point took", labels=labels)
    seen = CounterMetricFamily("conveyor_sla_canary_seen",
                               "Canaries whose row was found in the table by their deadline",
                               labels=labels)
    lost = CounterMetricFamily("conveyor_sla_canary_lost",
                               "Canaries not found in the table by their deadline",
                               labels=labels)
    failed = CounterMetricFamily("conveyor_sla_canary_publish_failures",
                                 "Canaries the path's entry point refused or did not answer",
                                 labels=["path", "reason"])
    pending = GaugeMetricFamily("conveyor_sla_canary_pending",
                                "Canaries published, not yet seen and not yet lost",
                                labels=labels)
    age = GaugeMetricFamily(
        "conveyor_sla_canary_last_seen_age_seconds",
        "Now minus the publish time of the newest canary seen (since start while none was)",
        labels=labels)
    missing_th = GaugeMetricFamily("conveyor_sla_canary_missing_threshold_seconds",
                                   "Alert threshold for the last seen canary's age (settings)",
                                   labels=labels)
    latency_th = GaugeMetricFamily("conveyor_sla_canary_latency_threshold_seconds",
                                   "Alert threshold for the canaries' p99 latency (settings)",
                                   labels=labels)
    latency = HistogramMetricFamily(
        "conveyor_sla_canary_latency_seconds",
        "Publish to row: the canary row's landed_at minus the time the exporter published it",
        labels=labels)
    for v in views:
        info.add_metric([v.path, v.table, canaries.run], 1.0)
        sent.add_metric([v.path], float(v.sent))
        seen.add_metric([v.path], float(v.seen))
        lost.add_metric([v.path], float(v.lost))
        for reason, n in sorted(v.failures.items()):
            failed.add_metric([v.path, reason], float(n))
        pending.add_metric([v.path], float(v.pending))
        age.add_metric([v.path], v.age_s)
        missing_th.add_metric([v.path], v.missing_after_s)
        latency_th.add_metric([v.path], v.latency_threshold_s)
        h = v.latency
        buckets = [(_le(b), float(n)) for b, n in zip(h.buckets, h.counts, strict=False)]
        buckets.append(("+Inf", float(h.counts[-1])))
        latency.add_metric([v.path], buckets, h.total)
    yield from (info, sent, seen, lost, failed, pending, age, missing_th, latency_th, latency)


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


def health(c: SlaCollector) -> dict[str, Any]:
    """/health's readiness (``sidecar.common.ops``: booleans decide): up while it serves;
    the rest says when it last measured and which sources that scrape could read."""
    if c.last is None:
        return {"serving": True, "last_scrape_age_s": None}
    assert c.last_at is not None
    return {"serving": True, "last_scrape_age_s": round(time.monotonic() - c.last_at, 1),
            "sources": {k: ("up" if v else "down") for k, v in c.last.up.items()}}
