"""Typed settings for the SLA exporter: a YAML file, overridden by the environment.

Precedence, highest first: environment variables (``CONVEYOR_SLA__<SECTION>__<KEY>``, e.g.
``CONVEYOR_SLA__POSTGRES__HOST=db``), then the file, then the defaults here.

Secrets come from the environment only; the file has no place for them (an unknown key such
as ``postgres.password`` is refused), so a config can be committed and printed:

- ``CONVEYOR_POSTGRES_USER`` / ``CONVEYOR_POSTGRES_PASSWORD``: the warehouse login;
- ``CONVEYOR_KAFKA_SASL_USERNAME`` / ``CONVEYOR_KAFKA_SASL_PASSWORD``,
  ``CONVEYOR_KAFKA_SSL_KEY_PASSWORD``: Kafka, as for the bridges;
- ``CONVEYOR_RABBITMQ_URL``, or ``CONVEYOR_RABBITMQ_USER`` / ``CONVEYOR_RABBITMQ_PASSWORD``
  for ``canary.rabbitmq.url``: where the RabbitMQ canary is published, as for the bridge.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from sidecar.common import config
from sidecar.common.config import FileSettings, FrozenModel, KafkaSecrets, KafkaSettings

from .canary import DEFAULT_CANARY_BUCKETS
from .core import DEFAULT_BUCKETS


class ConnectSettings(FrozenModel):
    # Sink connectors are found here; each one's group is connect-<name>. None: no Kafka
    # measures (the exporter still measures tables).
    url: str | None = "http://localhost:8083"
    # Globs over connector names; only matching sinks are measured.
    connectors: list[str] = Field(default_factory=lambda: ["*"])
    timeout_seconds: float = Field(default=5.0, gt=0)


class PostgresSettings(FrozenModel):
    host: str = "localhost"
    port: int = 5432
    dbname: str = "warehouse"
    schema_name: str = Field(default="public", alias="schema")
    # Globs over table names; a table is measured when it matches and has accepted_at.
    tables: list[str] = Field(default_factory=lambda: ["*"])
    # At most this many tables (the first by name): a bound on one scrape's queries.
    max_tables: int = Field(default=200, ge=1)
    # Each query is cut off after this long, so a huge table without an index costs a
    # scrape this much at worst, never a hung exporter.
    statement_timeout_ms: int = Field(default=2000, ge=100)
    connect_timeout_seconds: int = Field(default=5, ge=1)


class Thresholds(FrozenModel):
    """Alert thresholds, exported as series so a rule compares each table or connector with
    its own: the owner of a table sets its threshold here, not in a rule per table."""

    sink_lag_seconds: float = Field(default=300.0, gt=0)
    table_stale_seconds: float = Field(default=600.0, gt=0)
    # {glob: seconds}, the first match wins.
    sink_lag_overrides: dict[str, float] = Field(default_factory=dict)
    table_stale_overrides: dict[str, float] = Field(default_factory=dict)


def _increasing_buckets(v: list[float]) -> list[float]:
    if not v or v != sorted(set(v)):
        raise ValueError("buckets must be distinct and increasing")
    return v


class LandingSettings(FrozenModel):
    # A row's landed_at is stamped when the sink converts it, just before the batch's
    # transaction commits; rows are counted only once this much older than the database's
    # clock, so a batch still being written is counted at the next scrape, not missed.
    settle_seconds: float = Field(default=5.0, ge=0)
    buckets: list[float] = Field(default_factory=lambda: list(DEFAULT_BUCKETS))

    @field_validator("buckets")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        return _increasing_buckets(v)


class CanaryPath(FrozenModel):
    """What every canary path has: whether it runs, how often, where its rows land, and
    when a canary not seen counts as lost."""

    enabled: bool = False
    interval_seconds: float = Field(default=15.0, gt=0)
    # Its rows are looked for here (by event_id; the table needs event_id and landed_at).
    table: str
    # Not visible this long after it was published: lost. The promise is 15 minutes.
    deadline_seconds: float = Field(default=900.0, gt=0)
    # Exported as thresholds for the alert rules (monitoring/rules/sla.yml): the newest
    # seen canary older than this pages (ConveyorCanaryMissing); a p99 latency over this
    # opens a ticket (ConveyorCanaryLatencyHigh).
    missing_after_seconds: float = Field(default=300.0, gt=0)
    latency_threshold_seconds: float = Field(default=120.0, gt=0)
    # How long one publish may take before it counts as failed.
    timeout_seconds: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _deadline_after_interval(self) -> CanaryPath:
        if self.deadline_seconds <= self.interval_seconds:
            raise ValueError("deadline_seconds must be longer than interval_seconds")
        return self


class RabbitMQCanary(CanaryPath):
    # Credentials from the environment (CONVEYOR_RABBITMQ_USER / _PASSWORD, or the whole
    # URL in CONVEYOR_RABBITMQ_URL), never here.
    url: str = "amqp://localhost:5672/%2F"
    # Where the bridge's queue is bound, and a routing key one of its routes maps to a topic
    # that a sink lands (a route of its own is best: sla/README.md, "Turning it on").
    exchange: str = "events"
    routing_key: str = "conveyor.canary"
    table: str = "rabbitmq_conveyor_canary"
    # The JSON body, after substituting {event_id}, {published_at} (ISO-8601 UTC, ms),
    # {published_ms} and {run} in its string values. It must satisfy the route's schema;
    # the route's occurred_at should read {published_at}, so the row holds the publish time.
    payload: dict[str, Any] = Field(default_factory=lambda: {
        "canary_id": "{event_id}", "published_at": "{published_at}"})

    @field_validator("url")
    @classmethod
    def _no_password(cls, v: str) -> str:
        if urlsplit(v).password is not None:
            raise ValueError("the password must come from the environment "
                             "(CONVEYOR_RABBITMQ_PASSWORD or CONVEYOR_RABBITMQ_URL)")
        return v


class SnowplowCanary(CanaryPath):
    # The collector, as trackers reach it; the canary is a structured event (e=se) POSTed
    # to /com.snowplowanalytics.snowplow/tp2, so it lands in the table of struct events.
    collector_url: str = "http://localhost:8080"
    table: str = "snowplow_struct"


class CanarySettings(FrozenModel):
    rabbitmq: RabbitMQCanary = RabbitMQCanary()
    snowplow: SnowplowCanary = SnowplowCanary()
    buckets: list[float] = Field(default_factory=lambda: list(DEFAULT_CANARY_BUCKETS))
    # Undecided canaries kept per path at most (checks failing for a long time).
    max_pending: int = Field(default=10_000, ge=10)

    @field_validator("buckets")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        return _increasing_buckets(v)

    def paths(self) -> dict[str, CanaryPath]:
        """The enabled paths by name."""
        return {name: p for name, p in (("rabbitmq", self.rabbitmq),
                                        ("snowplow", self.snowplow)) if p.enabled}


class StatusSettings(FrozenModel):
    """The status page (``/status``) and ``--summary``: both read Prometheus."""

    # Prometheus's HTTP API as this process reaches it; unset: no page, no summary.
    prometheus_url: str | None = None
    # Prometheus's address for people (the page links to it); default: prometheus_url.
    prometheus_public_url: str | None = None
    timeout_seconds: float = Field(default=5.0, gt=0)


class SlaSettings(FileSettings):
    listen_host: str = "0.0.0.0"
    port: int = 9103
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings()
    connect: ConnectSettings = ConnectSettings()
    postgres: PostgresSettings = PostgresSettings()
    thresholds: Thresholds = Thresholds()
    landing: LandingSettings = LandingSettings()
    canary: CanarySettings = CanarySettings()
    status: StatusSettings = StatusSettings()
    # Connectors, topic metadata and table columns change rarely: looked up at most this often.
    metadata_ttl_seconds: float = Field(default=30.0, ge=0)
    # How long one scrape waits for the records at committed offsets.
    record_read_timeout_seconds: float = Field(default=5.0, gt=0)
    # All that one scrape asks of Connect and Kafka (the sink listing, offsets, log bounds,
    # records, dead-letter totals), in total: with PostgreSQL's it must fit in Prometheus'
    # scrape timeout (8 s in monitoring/prometheus.yml). Spent: Kafka is reported down.
    kafka_budget_seconds: float = Field(default=5.0, gt=0)

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_SLA__", env_nested_delimiter="__",
                                      extra="forbid", frozen=True)


class SlaSecrets(KafkaSecrets):
    postgres_user: str | None = None
    postgres_password: SecretStr | None = None
    rabbitmq_url: SecretStr | None = None
    rabbitmq_user: str | None = None
    rabbitmq_password: SecretStr | None = None

    def amqp_url(self, canary: RabbitMQCanary) -> str:
        """The canary's AMQP URL with the environment's credentials (as the bridge builds
        its own); it never leaves the publisher."""
        if self.rabbitmq_url is not None:
            return self.rabbitmq_url.get_secret_value()
        parts = urlsplit(canary.url)
        if self.rabbitmq_user is None and self.rabbitmq_password is None:
            return canary.url
        cred = quote(self.rabbitmq_user or parts.username or "guest", safe="")
        if self.rabbitmq_password is not None:
            cred += ":" + quote(self.rabbitmq_password.get_secret_value(), safe="")
        netloc = f"{cred}@{parts.hostname or 'localhost'}" + (
            f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    def postgres_conninfo(self, pg: PostgresSettings) -> dict[str, Any]:
        """psycopg connect() keywords; the password never leaves this dict."""
        info: dict[str, Any] = {
            "host": pg.host, "port": pg.port, "dbname": pg.dbname,
            "connect_timeout": pg.connect_timeout_seconds,
            "options": f"-c statement_timeout={pg.statement_timeout_ms}",
            "application_name": "conveyor-sla",
        }
        if self.postgres_user:
            info["user"] = self.postgres_user
        if self.postgres_password is not None:
            info["password"] = self.postgres_password.get_secret_value()
        return info


def load(path: str | Path | None) -> SlaSettings:
    if path is None:
        return config.settings_from_dict(SlaSettings, {})
    return config.load_settings(SlaSettings, path)
