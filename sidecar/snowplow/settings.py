"""Typed settings for the Snowplow collector and enrich (one file serves both): YAML, then the
environment.

Precedence, highest first: environment variables (``CONVEYOR_SNOWPLOW__<SECTION>__<KEY>``,
e.g. ``CONVEYOR_SNOWPLOW__HTTP__PORT=8081``), then the file, then the defaults here. See
``examples/full.yaml`` for every key with a comment, ``examples/minimal.yaml`` for the least
that runs.

Secrets come from the environment only, and a file holding one is rejected:
``CONVEYOR_KAFKA_SASL_USERNAME`` / ``CONVEYOR_KAFKA_SASL_PASSWORD``,
``CONVEYOR_KAFKA_SSL_KEY_PASSWORD``, ``CONVEYOR_SCHEMA_REGISTRY_USER_INFO`` (``user:password``).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from sidecar.common import config
from sidecar.common.config import FileSettings, FrozenModel, KafkaSecrets, SchemaRegistrySettings

from .enrichments.config import EnrichmentsSettings
from .identity import CookieConfig
from .pipeline import Limits
from .protocol import PIXEL_PATHS, REDIRECT_PATH, TP2_PATH
from .routing import KINDS, Route, Router

_TOPIC = r"^[A-Za-z0-9._-]{1,249}$"


class HttpSettings(FrozenModel):
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    # A body above this (also once gunzipped) becomes one size bad row; the request is
    # still answered 200 because a retry could never succeed.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # Past this the collector stops reading, writes the size bad row and answers 413.
    hard_max_body_bytes: int = Field(default=16 * 1_048_576, ge=1024)
    # Behind a load balancer the client IP is the first X-Forwarded-For hop.
    use_x_forwarded_for: bool = True
    # Extra paths trackers may use (e.g. to dodge ad blockers) -> the standard path.
    paths: dict[str, str] = Field(default_factory=dict)
    cors_max_age_s: int = Field(default=3600, ge=0)
    # /r/tp2 redirects only to these hosts (or their subdomains); "*" allows any. Empty:
    # every redirect is refused with 400 (an open redirector helps phishers).
    redirect_domains: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> HttpSettings:
        for alias, target in self.paths.items():
            if not alias.startswith("/"):
                raise ValueError(f"http.paths: {alias!r} must start with '/'")
            if target not in (TP2_PATH, REDIRECT_PATH, *PIXEL_PATHS):
                raise ValueError(f"http.paths: {alias!r} -> {target!r}; the target must be "
                                 f"{TP2_PATH}, {REDIRECT_PATH} or one of "
                                 f"{', '.join(PIXEL_PATHS)}")
        if self.hard_max_body_bytes < self.max_body_bytes:
            raise ValueError("http.hard_max_body_bytes must be >= http.max_body_bytes")
        return self


class CookieSettings(FrozenModel):
    enabled: bool = True
    name: str = Field(default="sp", pattern=r"^[A-Za-z0-9_\-.]+$")
    expiration_days: float = Field(default=365, gt=0)
    # The cookie's Domain: the first of these the request's Origin is (a subdomain of),
    # else fallback_domain, else none (a host-only cookie on the collector's host).
    domains: list[str] = Field(default_factory=list)
    fallback_domain: str | None = None
    secure: bool = True
    http_only: bool = True
    same_site: Literal["None", "Lax", "Strict"] | None = "None"

    def to_config(self) -> CookieConfig:
        return CookieConfig(enabled=self.enabled, name=self.name,
                            expiration_s=int(self.expiration_days * 86400),
                            domains=tuple(self.domains), fallback_domain=self.fallback_domain,
                            secure=self.secure, http_only=self.http_only,
                            same_site=self.same_site)


class KafkaSettings(config.KafkaSettings):
    # Stable per collector instance, not per process: a restarted collector reusing it
    # fences its dead predecessor and aborts the transaction it left open at once (otherwise
    # read_committed consumers wait up to transaction_timeout_ms). "{instance}" is replaced.
    transactional_id: str = "conveyor-snowplow-{instance}"


class RouteSettings(FrozenModel):
    """One routing rule; see sidecar/snowplow/routing.py. First match wins."""

    name: str | None = None
    kind: str | list[str] | None = None
    schema_: str | list[str] | None = Field(default=None, alias="schema")
    app_id: str | list[str] | None = None
    topic: str = Field(pattern=_TOPIC)
    # json: the envelope as JSON text. avro: the Avro envelope (sidecar/snowplow/
    # avro_schema.py) through the schema registry, subject "<topic>-value".
    format: Literal["json", "avro"] = "json"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def to_route(self) -> Route:
        return Route(topic=self.topic, kinds=_tuple(self.kind), schemas=_tuple(self.schema_),
                     app_ids=_tuple(self.app_id), format=self.format,
                     name=self.name or self.topic)


class TopicsSettings(FrozenModel):
    default: str = Field(default="snowplow.events", pattern=_TOPIC)
    default_format: Literal["json", "avro"] = "json"
    bad: str = Field(default="snowplow.bad", pattern=_TOPIC)   # bad rows are always JSON
    routes: list[RouteSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> TopicsSettings:
        for r in self.routes:
            for k in _tuple(r.kind):
                if k not in KINDS:
                    raise ValueError(f"route {r.name or r.topic}: unknown kind {k!r}; "
                                     f"known: {', '.join(KINDS)}")
            if not (r.kind or r.schema_ or r.app_id):
                raise ValueError(f"route {r.name or r.topic}: give kind, schema or app_id")
        return self

    def router(self) -> Router:
        return Router([r.to_route() for r in self.routes], self.default, self.default_format)

    @property
    def uses_avro(self) -> bool:
        return self.default_format == "avro" or any(r.format == "avro" for r in self.routes)


class CommitSettings(FrozenModel):
    """Group commit: the events of concurrent requests share one Kafka transaction."""

    # After the first request of a batch arrives, wait at most this long for more. Requests
    # arriving while a transaction commits join the next one anyway, so this mostly matters
    # at low load, where it adds at most this much latency.
    max_wait_ms: float = Field(default=5.0, ge=0, le=1000)
    max_events: int = Field(default=2000, ge=1)
    # Transactions in flight at once, each on its own transactional producer (ids
    # "<transactional_id>-<n>" when more than one). While one batch waits for Kafka to
    # write its commit markers the next is already being produced: under load this
    # multiplies throughput when Kafka's commit latency, not our CPU, is the limit.
    # Keep it stable across restarts, so a restart fences every id the last run used.
    parallel_transactions: int = Field(default=2, ge=1, le=8)
    # A request waits this long for its commit, then gets 503 (the tracker retries; if the
    # commit lands after all, the retry is recognised as a duplicate).
    request_timeout_s: float = Field(default=10.0, gt=0)
    # Events queued for commit beyond this are refused at once with 503 (back-pressure).
    max_queued_events: int = Field(default=50_000, ge=1)
    # UNSAFE, for benchmarks only: answer 200 before the commit. A crash then loses
    # events the tracker has already forgotten, the exact failure this collector exists to
    # prevent.
    unsafe_ack_before_commit: bool = False


class DedupSettings(FrozenModel):
    # The compacted ledger topic of committed event ids, shared by all enrich instances
    # of one pipeline and read back on start. Empty: in-process memory only (a restart or
    # another replica then lets a tracker retry through as a duplicate).
    ledger_topic: str = Field(default="conveyor.ledger.snowplow", pattern=r"^$|" + _TOPIC)
    window_events: int = Field(default=500_000, ge=1000)
    max_age_s: int = Field(default=24 * 3600, ge=60)
    # Read the ledger to its committed end before each batch, so that even a retry reaching
    # another replica within milliseconds of the original's commit is caught. It costs a
    # ListOffsets round trip plus fetching the batch's own ledger records back, about
    # 100 ms per batch on a local broker. Off (the default), a replica learns the others'
    # ids as its ledger consumer fetches them (tens of ms), far sooner than any tracker
    # retries; its own ids and everything committed before it started are always known.
    sync_each_batch: bool = False
    sync_timeout_s: float = Field(default=10.0, gt=0)
    ledger_partitions: int = Field(default=1, ge=1)


class IgluSettings(FrozenModel):
    # Static Iglu repositories (directories holding schemas/<vendor>/<name>/jsonschema/<v>),
    # searched in order before the bundled one. Relative paths: from the config file.
    repositories: list[Path] = Field(default_factory=list)
    bundled: bool = True


class RawSettings(FrozenModel):
    """The raw topic between collector and enrich: one record per request (or part)."""

    topic: str = Field(default="conveyor.raw.snowplow", pattern=_TOPIC)
    # A record's body is at most this (keep it under the topic's max.message.bytes, with
    # room for the headers). A POST over it, or over http.max_body_bytes, is split along
    # event boundaries; what cannot be split is kept as a sample: a size bad row.
    max_record_bytes: int = Field(default=900_000, ge=1024)


class EnrichSettings(FrozenModel):
    """The enrich process: raw records in, good events and bad rows out, exactly once."""

    # Per enrich instance, never shared by two running ones (they would fence each other).
    # Zombies are fenced by the consumer group's generation (KIP-447), so the id need not
    # follow partitions; keeping it stable per instance lets a restart abort its dead
    # predecessor's open transaction at once instead of after transaction_timeout_ms.
    # Default instance: CONVEYOR_INSTANCE_ID, else the host name (not the top-level
    # instance_id, which names the collector when both read one file).
    instance_id: str | None = None
    transactional_id: str = "conveyor-snowplow-enrich-{instance}"
    group_id: str = Field(default="conveyor-snowplow-enrich", min_length=1)
    # A transaction takes at most this many raw records, and is closed early once their
    # events reach max_batch_events: bounded work and memory per transaction.
    max_batch_records: int = Field(default=500, ge=1)
    max_batch_events: int = Field(default=5000, ge=1)
    poll_timeout_ms: int = Field(default=100, ge=1, le=10_000)
    # Static membership (group.instance.id = the instance): a restarted instance takes its
    # partitions back at once; a dead one gives them up after this.
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    # /health and /metrics.
    host: str = "0.0.0.0"
    port: int = Field(default=9000, ge=0, le=65535)
    # /health turns 503 when records wait and no transaction committed for this long.
    stalled_after_s: float = Field(default=60.0, gt=0)


class AtomicSettings(FrozenModel):
    """Snowplow's own table layout beside the per-kind topics (sidecar/snowplow/atomic):
    each good event also as an atomic.events row, and each of its entities (the
    self-describing event, contexts, derived contexts) as a row of its schema's table, all
    in the event's transaction. Off by default: it doubles what a good event writes."""

    enabled: bool = False
    events_topic: str = Field(default="snowplow-atomic.events", pattern=_TOPIC)
    # An entity's topic is this plus its table's name (com_acme_product_1).
    entity_topic_prefix: str = Field(default="snowplow-atomic.", min_length=1)


class LimitsSettings(FrozenModel):
    max_event_bytes: int = Field(default=900_000, ge=1024)
    bad_row_original_bytes: int = Field(default=262_144, ge=256)


class CollectorSettings(FileSettings):
    """Everything the collector needs, validated before anything listens or connects."""

    http: HttpSettings = Field(default_factory=HttpSettings)
    cookie: CookieSettings = Field(default_factory=CookieSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicsSettings = Field(default_factory=TopicsSettings)
    schema_registry: SchemaRegistrySettings = Field(default_factory=SchemaRegistrySettings)
    commit: CommitSettings = Field(default_factory=CommitSettings)
    dedup: DedupSettings = Field(default_factory=DedupSettings)
    iglu: IgluSettings = Field(default_factory=IgluSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    raw: RawSettings = Field(default_factory=RawSettings)
    enrich: EnrichSettings = Field(default_factory=EnrichSettings)
    # Enrich's enrichments (sidecar/snowplow/enrichments/config.py), each off by default.
    enrichments: EnrichmentsSettings = Field(default_factory=EnrichmentsSettings)
    atomic: AtomicSettings = Field(default_factory=AtomicSettings)
    # Seconds /health reports 503 before the listener closes on SIGTERM, so a load
    # balancer stops sending first. Then in-flight requests finish and commit.
    drain_delay_s: float = Field(default=0.0, ge=0)
    shutdown_timeout_s: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_SNOWPLOW__")

    @property
    def transactional_id(self) -> str:
        return self.kafka.transactional_id.replace("{instance}", self.instance)

    @property
    def iglu_repositories(self) -> list[Path]:
        return [p if p.is_absolute() else self.base_dir / p for p in self.iglu.repositories]

    @property
    def enrich_instance(self) -> str:
        return (self.enrich.instance_id or os.environ.get("CONVEYOR_INSTANCE_ID")
                or socket.gethostname())

    @property
    def enrich_transactional_id(self) -> str:
        return self.enrich.transactional_id.replace("{instance}", self.enrich_instance)

    def limits_config(self) -> Limits:
        return Limits(max_body_bytes=self.http.max_body_bytes,
                      max_inflated_bytes=self.http.hard_max_body_bytes,
                      max_event_bytes=self.limits.max_event_bytes,
                      max_original_bytes=self.limits.bad_row_original_bytes)

    @property
    def split_bytes(self) -> int:
        """A POST body over this is split (or, if it cannot be, kept as a sample)."""
        return min(self.http.max_body_bytes, self.raw.max_record_bytes)

    @property
    def sample_bytes(self) -> int:
        """How much of a body too large to keep the raw record holds."""
        return min(self.limits.bad_row_original_bytes, self.raw.max_record_bytes)

    @property
    def uses_avro(self) -> bool:
        """Enrich writes Avro (a route says so, or Snowplow's layout is on)."""
        return self.topics.uses_avro or self.atomic.enabled

    def enrich_topics(self) -> list[str]:
        """The topics enrich writes that are known before the first event (an entity
        schema's topic is created when its first entity comes)."""
        atomic = [self.atomic.events_topic] if self.atomic.enabled else []
        return [*self.topics.router().topics(), *atomic, self.topics.bad]

    def all_topics(self) -> list[str]:
        return [self.raw.topic, *self.enrich_topics()]


# The collector needs no secret of its own: Kafka's and the registry's are all.
Secrets = KafkaSecrets


def load_settings(path: str | Path) -> CollectorSettings:
    """Read and validate a config file (plus environment), or raise ConfigError."""
    return config.load_settings(CollectorSettings, path)


def settings_from_dict(raw: dict[str, Any], base_dir: Path = Path(".")) -> CollectorSettings:
    return config.settings_from_dict(CollectorSettings, raw, base_dir)


def _tuple(value: str | list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)
