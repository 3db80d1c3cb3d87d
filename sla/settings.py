"""Typed settings for the SLA exporter: a YAML file, overridden by the environment.

Precedence, highest first: environment variables (``CONVEYOR_SLA__<SECTION>__<KEY>``, e.g.
``CONVEYOR_SLA__POSTGRES__HOST=db``), then the file, then the defaults here.

Secrets come from the environment only; the file has no place for them (an unknown key such
as ``postgres.password`` is refused), so a config can be committed and printed:

- ``CONVEYOR_POSTGRES_USER`` / ``CONVEYOR_POSTGRES_PASSWORD``: the warehouse login;
- ``CONVEYOR_KAFKA_SASL_USERNAME`` / ``CONVEYOR_KAFKA_SASL_PASSWORD``,
  ``CONVEYOR_KAFKA_SSL_KEY_PASSWORD``: Kafka, as for the bridges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from sidecar.common import config
from sidecar.common.config import FileSettings, FrozenModel, KafkaSecrets, KafkaSettings

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


class LandingSettings(FrozenModel):
    # A row's landed_at is stamped when the sink converts it, just before the batch's
    # transaction commits; rows are counted only once this much older than the database's
    # clock, so a batch still being written is counted at the next scrape, not missed.
    settle_seconds: float = Field(default=5.0, ge=0)
    buckets: list[float] = Field(default_factory=lambda: list(DEFAULT_BUCKETS))

    @field_validator("buckets")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        if not v or v != sorted(set(v)):
            raise ValueError("buckets must be distinct and increasing")
        return v


class SlaSettings(FileSettings):
    listen_host: str = "0.0.0.0"
    port: int = 9103
    log_level: str = "INFO"
    kafka: KafkaSettings = KafkaSettings()
    connect: ConnectSettings = ConnectSettings()
    postgres: PostgresSettings = PostgresSettings()
    thresholds: Thresholds = Thresholds()
    landing: LandingSettings = LandingSettings()
    # Connectors, topic metadata and table columns change rarely: looked up at most this often.
    metadata_ttl_seconds: float = Field(default=30.0, ge=0)
    # How long one scrape waits for the records at committed offsets.
    record_read_timeout_seconds: float = Field(default=5.0, gt=0)

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_SLA__", env_nested_delimiter="__",
                                      extra="forbid", frozen=True)


class SlaSecrets(KafkaSecrets):
    postgres_user: str | None = None
    postgres_password: SecretStr | None = None

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
