"""Typed settings for the RabbitMQ bridge: a YAML file, overridden by the environment.

Precedence, highest first: environment variables (``CONVEYOR_RMQ__<SECTION>__<KEY>``, e.g.
``CONVEYOR_RMQ__BATCH__MAX_MESSAGES=200``), then the file, then the defaults here.

Secrets are read from the environment only and a file that contains one is rejected, so a
config file can be committed, mounted from a ConfigMap and printed without leaking anything:

- ``CONVEYOR_RABBITMQ_URL``: full AMQP URL with credentials (replaces ``rabbitmq.url``);
- ``CONVEYOR_RABBITMQ_USER`` / ``CONVEYOR_RABBITMQ_PASSWORD``: credentials for ``rabbitmq.url``;
- ``CONVEYOR_KAFKA_SASL_USERNAME`` / ``CONVEYOR_KAFKA_SASL_PASSWORD``,
  ``CONVEYOR_KAFKA_SSL_KEY_PASSWORD``;
- ``CONVEYOR_SCHEMA_REGISTRY_USER_INFO`` (``user:password`` for basic auth).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from sidecar.common import config
from sidecar.common.config import FileSettings, FrozenModel, KafkaSecrets, SchemaRegistrySettings

Format = Literal["json", "avro"]


class ExchangeDecl(FrozenModel):
    name: str
    type: Literal["direct", "topic", "fanout", "headers"] = "topic"
    durable: bool = True


class QueueDecl(FrozenModel):
    name: str
    durable: bool = True
    # e.g. {"x-queue-type": "quorum"} or a dead-letter exchange for RabbitMQ's own DLX.
    arguments: dict[str, Any] = Field(default_factory=dict)


class BindingDecl(FrozenModel):
    exchange: str
    queue: str
    routing_key: str = "#"


class Topology(FrozenModel):
    """Declared (idempotently, durable) before consuming, when ``declare`` is true."""

    declare: bool = False
    exchanges: list[ExchangeDecl] = Field(default_factory=list)
    queues: list[QueueDecl] = Field(default_factory=list)
    bindings: list[BindingDecl] = Field(default_factory=list)


class RabbitMQSettings(FrozenModel):
    url: str = "amqp://localhost:5672/%2F"
    queues: list[str] = Field(min_length=1)
    # Deliveries RabbitMQ may push before we ack. Must hold at least one batch, and ideally
    # two, so the next batch fills while the previous one commits.
    prefetch: int = Field(default=2000, ge=1, le=65535)
    heartbeat_s: int = Field(default=30, ge=0)
    connect_timeout_s: float = Field(default=10.0, gt=0)
    topology: Topology = Field(default_factory=Topology)
    # The management API, read at start-up and by --check for each queue's type, delivery
    # limit, length limit, TTL, dead-lettering and single-active-consumer setting (see
    # topology.py). Default: http://<host of url>:15672.
    management_url: str | None = None
    # Refuse to start on a queue where RabbitMQ could drop messages (a delivery or length
    # limit, a TTL or an expiry without a dead-letter exchange)...
    verify_topology: bool = True
    # ...unless you accept that loss explicitly.
    accept_message_loss: bool = False
    # A queue drained by more than one instance must be single-active-consumer (instances
    # fence each other by queue). Turn off only when exactly one instance consumes it.
    require_single_active_consumer: bool = True

    def management(self) -> str:
        if self.management_url:
            return self.management_url
        return f"http://{urlsplit(self.url).hostname or 'localhost'}:15672"

    def vhost(self) -> str:
        path = urlsplit(self.url).path
        return unquote(path[1:]) if len(path) > 1 else "/"

    @model_validator(mode="after")
    def _no_password_in_url(self) -> RabbitMQSettings:
        if urlsplit(self.url).password:
            raise ValueError("rabbitmq.url must not contain a password; set "
                             "CONVEYOR_RABBITMQ_PASSWORD (or CONVEYOR_RABBITMQ_URL) instead")
        return self


class KafkaSettings(config.KafkaSettings):
    # An instance killed mid-transaction holds back read_committed readers of the partitions
    # it wrote (the warehouse sinks, the other instances' ledger checks) until it restarts
    # and fences itself, or until this timeout aborts the transaction. A batch commits in
    # milliseconds, so a short timeout costs nothing.
    transaction_timeout_ms: int = Field(default=30_000, ge=1000)


class BatchSettings(FrozenModel):
    """A batch is one Kafka transaction; it closes at whichever limit comes first."""

    max_messages: int = Field(default=1000, ge=1)
    max_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    # The age limit matters on a quiet queue only: under load the next batch fills while
    # the previous one commits and is sent as soon as that commit returns.
    max_wait_ms: int = Field(default=50, ge=1)


class LedgerSettings(FrozenModel):
    # Shared by every instance of the same stream; "{stream}" is replaced.
    topic: str = "conveyor.ledger.rabbitmq.{stream}"
    # The window: the last N committed event_ids (and at most max_age_s old) are remembered.
    window_events: int = Field(default=500_000, ge=1000)
    max_age_s: int = Field(default=7 * 24 * 3600, ge=60)
    create_topic: bool = True
    partitions: int = Field(default=1, ge=1)
    replication_factor: int = Field(default=-1)
    # When to read the ledger to its committed end before deciding about a batch:
    # "always" also catches publisher retries (same message_id published twice, which
    # RabbitMQ does not flag as redelivered); "redelivered" only when a delivery in the
    # batch carries the redelivered flag (saves a round trip per batch; publisher
    # duplicates are then caught only when the ledger reader already has them).
    sync: Literal["always", "redelivered"] = "always"
    # How long a batch may wait for the ledger to be read to its committed end.
    # Longer than kafka.transaction_timeout_ms, so a dead instance's open transaction is
    # waited out rather than turned into an aborted batch.
    sync_timeout_s: float = Field(default=45.0, gt=0)


class DeadLetterSettings(FrozenModel):
    topic: str = "conveyor.dlq.rabbitmq.{stream}"
    # A dead-letter record larger than this keeps only the first bytes of the body (marked
    # with headers); size it, and the topic's max.message.bytes, above your largest message.
    max_record_bytes: int = Field(default=1_000_000, ge=1024)


class Route(FrozenModel):
    """One routing rule. All given conditions must match; the first matching rule wins.

    Patterns use AMQP topic-binding syntax on dot-separated words (``*`` = one word,
    ``#`` = zero or more words), or a regular expression when prefixed with ``re:``.
    Templates (``topic``, ``event_type``) may use {routing_key}, {rk[0]} (a word of it),
    {exchange}, {queue}, {type}, {app_id}, {headers[NAME]}, {stream}.
    """

    name: str | None = None
    routing_key: str | None = None
    exchange: str | None = None
    type: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    queue: str | None = None

    topic: str
    event_type: str | None = None
    format: Format = "json"
    # Payload schema file (.avsc for avro, .json JSON Schema for json), relative to the
    # config file's directory. Required for avro; optional for json (no validation then).
    schema_file: str | None = Field(default=None, alias="schema")
    # Where the Kafka record key comes from: "event_id", "routing_key", "none",
    # "header:NAME" or "payload:dotted.path". Records with the same key keep their order.
    key: str = "event_id"
    # Event time: "property:timestamp", "header:NAME", "payload:dotted.path" or "none".
    occurred_at: str = "property:timestamp"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check(self) -> Route:
        if self.format == "avro" and not self.schema_file:
            raise ValueError(f"route {self.label}: format avro needs a schema file")
        _check_source(self.key, {"event_id", "routing_key", "none"}, f"route {self.label}: key")
        _check_source(self.occurred_at, {"property:timestamp", "none"},
                      f"route {self.label}: occurred_at")
        return self

    @property
    def label(self) -> str:
        return self.name or self.topic


def _check_source(value: str, plain: set[str], what: str) -> None:
    if value in plain:
        return
    kind, _, arg = value.partition(":")
    if kind not in ("header", "payload") or not arg:
        raise ValueError(f"{what} must be one of {sorted(plain)}, header:NAME or "
                         f"payload:dotted.path, not {value!r}")


class EventIdSettings(FrozenModel):
    # Used when a message has no AMQP message_id, e.g. "id" or "meta.event_id".
    payload_field: str | None = None


class OpsSettings(FrozenModel):
    host: str = "0.0.0.0"
    port: int = Field(default=9000, ge=0, le=65535)
    # /health turns 503 ("progressing": false) while a held batch keeps failing: after this
    # many aborts in a row, or when no commit went through for this long with work held.
    unhealthy_after_aborts: int = Field(default=5, ge=1)
    stalled_after_s: float = Field(default=60.0, gt=0)


class BridgeSettings(FileSettings):
    """Everything the bridge needs, validated before anything connects."""

    # Names the event stream: instances draining the same queues share one stream name and
    # so one dedup ledger; transactional ids are derived from it (see ``transactional_id``).
    stream: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    source: str | None = None
    rabbitmq: RabbitMQSettings
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    schema_registry: SchemaRegistrySettings = Field(default_factory=SchemaRegistrySettings)
    batch: BatchSettings = Field(default_factory=BatchSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    dead_letter: DeadLetterSettings = Field(default_factory=DeadLetterSettings)
    event_id: EventIdSettings = Field(default_factory=EventIdSettings)
    routes: list[Route] = Field(default_factory=list)
    # Used when no route matches; without it such messages are dead-lettered as "no_route".
    default_route: Route | None = None
    # Bodies larger than this are dead-lettered as "oversize" before decoding.
    max_message_bytes: int = Field(default=900_000, ge=1)
    # Bodies whose JSON opens more arrays/objects at once than this are dead-lettered as
    # "undecodable" before parsing (an event nested 64 deep is a bug or an attack).
    max_json_depth: int = Field(default=64, ge=1, le=500)
    # Routed records (envelope + key + headers) larger than this are dead-lettered as
    # "oversize"; keep it at or below the topics' max.message.bytes.
    max_record_bytes: int = Field(default=1_000_000, ge=1024)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    shutdown_timeout_s: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_RMQ__")

    @model_validator(mode="after")
    def _check(self) -> BridgeSettings:
        if self.batch.max_messages > self.rabbitmq.prefetch:
            raise ValueError(f"batch.max_messages ({self.batch.max_messages}) exceeds "
                             f"rabbitmq.prefetch ({self.rabbitmq.prefetch}): a batch could "
                             "never fill; raise prefetch (twice the batch is a good start)")
        if not self.routes and self.default_route is None:
            raise ValueError("no routes and no default_route: every message would be "
                             "dead-lettered")
        return self

    # -- derived values ----------------------------------------------------------------------

    @property
    def source_name(self) -> str:
        return self.source or f"rabbitmq:{self.stream}"

    @property
    def ledger_topic(self) -> str:
        return self.ledger.topic.replace("{stream}", self.stream)

    @property
    def dead_letter_topic(self) -> str:
        return self.dead_letter.topic.replace("{stream}", self.stream)

    def transactional_id(self, queue: str) -> str:
        """``conveyor-rabbitmq-<stream>-<queue>``: names what is owned, never the host, so
        whoever takes the queue over (a restart, a rescheduled pod under a new name, a
        standby) fences the previous owner."""
        return f"conveyor-rabbitmq-{self.stream}-{queue}"

    def all_routes(self) -> list[Route]:
        return [*self.routes, *([self.default_route] if self.default_route else [])]


class Secrets(KafkaSecrets):
    """RabbitMQ's credentials besides Kafka's and the registry's, from the environment only."""

    rabbitmq_url: SecretStr | None = None
    rabbitmq_user: str | None = None
    rabbitmq_password: SecretStr | None = None

    def amqp_credentials(self, settings: BridgeSettings) -> tuple[str, str]:
        """(user, password) as the AMQP URL carries them, for the management API."""
        parts = urlsplit(self.amqp_url(settings))
        return unquote(parts.username or "guest"), unquote(parts.password or "guest")

    def amqp_url(self, settings: BridgeSettings) -> str:
        if self.rabbitmq_url is not None:
            return self.rabbitmq_url.get_secret_value()
        parts = urlsplit(settings.rabbitmq.url)
        user = self.rabbitmq_user or parts.username
        if user is None and self.rabbitmq_password is None:
            return settings.rabbitmq.url
        cred = quote(user or "guest", safe="")
        if self.rabbitmq_password is not None:
            cred += ":" + quote(self.rabbitmq_password.get_secret_value(), safe="")
        host = parts.hostname or "localhost"
        netloc = f"{cred}@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def load_settings(path: str | Path) -> BridgeSettings:
    """Read and validate a config file (plus environment), or raise ConfigError."""
    return config.load_settings(BridgeSettings, path)


def settings_from_dict(raw: dict[str, Any], base_dir: Path = Path(".")) -> BridgeSettings:
    return config.settings_from_dict(BridgeSettings, raw, base_dir)
