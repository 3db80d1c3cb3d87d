"""Prometheus metrics of enrich, on its ops port (``enrich.port``) at ``/metrics``.

Its own registry, with the process's CPU and memory (``process_cpu_seconds_total``): the
benchmark divides CPU seconds by events, a figure that holds on a shared machine where
wall-clock rates do not.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
P = "conveyor_snowplow_enrich"


class EnrichMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=r)
        self.records = Counter(f"{P}_records", "Raw records read and committed", registry=r)
        self.events = Counter(f"{P}_events",
                              "Outputs once committed: good, bad, duplicate (skipped)",
                              ["outcome"], registry=r)
        self.bad_rows = Counter(f"{P}_bad_rows", "Bad rows committed, by check and reason",
                                ["check", "reason"], registry=r)
        self.rejected = Counter(f"{P}_rejected",
                                "Outputs Kafka refused for good, replaced by bad rows",
                                ["outcome"], registry=r)
        self.refusal_splits = Counter(
            f"{P}_refusal_splits",
            "Transactions Kafka refused without naming a record, split to find it",
            registry=r)
        self.batch_records = Histogram(f"{P}_batch_records", "Raw records per transaction",
                                       buckets=_BATCH_BUCKETS, registry=r)
        self.commit_seconds = Histogram(f"{P}_commit_seconds",
                                        "Encode, dedup and transaction, per batch",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.commit_failures = Counter(f"{P}_commit_failures",
                                       "Batches not committed (read again), by reason",
                                       ["reason"], registry=r)
        self.last_commit = Gauge(f"{P}_last_commit_timestamp_seconds",
                                 "When the last transaction committed", registry=r)
        self.lag_idle = Gauge(f"{P}_idle", "1 when the last poll found nothing to do",
                              registry=r)
