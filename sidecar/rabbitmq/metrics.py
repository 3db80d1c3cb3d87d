"""Prometheus metrics of the RabbitMQ bridge (``/metrics``), in a registry of their own so
several bridges can live in one process (tests) without clashing."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

NS = "conveyor_rabbitmq"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.consumed = Counter(f"{NS}_consumed", "Deliveries taken from RabbitMQ.",
                                ["queue"], registry=r)
        self.produced = Counter(
            f"{NS}_produced", "Records committed to Kafka, by kind (routed, dead_letter, "
            "ledger).", ["queue", "kind"], registry=r)
        self.transactions = Counter(f"{NS}_transactions", "Kafka transactions by outcome.",
                                    ["queue", "outcome"], registry=r)
        self.transaction_seconds = Histogram(
            f"{NS}_transaction_seconds", "Time from batch close to commit_transaction() "
            "returning.", ["queue"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.batch_size = Histogram(f"{NS}_batch_messages", "Deliveries per transaction.",
                                    ["queue"], registry=r,
                                    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000))
        self.dedup_hits = Counter(f"{NS}_dedup_hits", "Deliveries recognised as already "
                                  "committed (redeliveries made no-ops).", ["queue"], registry=r)
        self.dead_lettered = Counter(f"{NS}_dead_lettered", "Deliveries written to the "
                                     "dead-letter topic, by reason.", ["queue", "reason"],
                                     registry=r)
        self.unacked = Gauge(f"{NS}_unacked_in_flight", "Deliveries received and not yet "
                             "acked or nacked.", ["queue"], registry=r)
        self.errors = Counter(f"{NS}_errors", "Errors by kind (amqp_connection, "
                              "kafka_aborted, kafka_rejected, kafka_fatal, ledger, "
                              "schema_registry).",
                              ["queue", "kind"], registry=r)
        self.ledger_ids = Gauge(f"{NS}_ledger_window_ids", "event_ids held in the dedup "
                                "window.", ["queue"], registry=r)
        self.consecutive_aborts = Gauge(
            f"{NS}_consecutive_aborts", "Transactions aborted in a row for the batch held "
            "now (0 after a commit).", ["queue"], registry=r)
        self.held = Gauge(f"{NS}_held_messages", "Deliveries in batches waiting for a "
                          "transaction (held through a Kafka outage, never nacked).",
                          ["queue"], registry=r)
        self.last_commit_age = Gauge(f"{NS}_last_commit_age_seconds", "Seconds since the "
                                     "last committed transaction (-1: none yet).", ["queue"],
                                     registry=r)
        self.ownerships = Counter(f"{NS}_ownerships", "Times this instance took ownership of "
                                  "the queue's transactional.id (fencing the previous owner).",
                                  ["queue"], registry=r)
        self.connected = Gauge(f"{NS}_connected", "1 when connected, by side "
                               "(rabbitmq, kafka).", ["queue", "side"], registry=r)
