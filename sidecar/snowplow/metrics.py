"""Prometheus metrics of the collector, served on its own port at ``/metrics``.

Each collector gets its own registry, so tests can run several in one process. The
registry includes the process's own CPU and memory (``process_cpu_seconds_total``,
``process_resident_memory_bytes``): the benchmark divides CPU seconds by events.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=r)
        self.requests = Counter("conveyor_snowplow_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=r)
        self.request_seconds = Histogram("conveyor_snowplow_request_seconds",
                                         "Tracker request latency, read to response",
                                         ["route"], buckets=_LATENCY_BUCKETS, registry=r)
        self.events = Counter("conveyor_snowplow_events",
                              "Raw records committed (outcome=raw; events are counted by "
                              "enrich)",
                              ["outcome"], registry=r)
        self.bad_rows = Counter("conveyor_snowplow_bad_rows", "Bad rows committed, by check",
                                ["check", "reason"], registry=r)
        self.rejected = Counter("conveyor_snowplow_rejected_events",
                                "Events answered 503 (not committed; the tracker retries)",
                                ["reason"], registry=r)
        self.batch_events = Histogram("conveyor_snowplow_batch_events",
                                      "Events per Kafka transaction (group commit)",
                                      buckets=_BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram("conveyor_snowplow_batch_requests",
                                        "HTTP requests per Kafka transaction",
                                        buckets=_BATCH_BUCKETS, registry=r)
        self.commit_seconds = Histogram("conveyor_snowplow_commit_seconds",
                                        "Dedup check plus Kafka transaction, per batch",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.commit_phase_seconds = Histogram("conveyor_snowplow_commit_phase_seconds",
                                              "Time per batch in each phase: dedup (ledger), "
                                              "transaction (produce + commit)", ["phase"],
                                              buckets=_LATENCY_BUCKETS, registry=r)
        self.commit_failures = Counter("conveyor_snowplow_commit_failures",
                                       "Batches not committed, by reason", ["reason"], registry=r)
        self.queued_events = Gauge("conveyor_snowplow_queued_events",
                                   "Events waiting for a transaction", registry=r)
        self.sink_healthy = Gauge("conveyor_snowplow_sink_healthy",
                                  "1 when Kafka takes our transactions", registry=r)
