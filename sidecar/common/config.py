"""Settings plumbing both bridges share: a YAML file overridden by the environment, Kafka
settings that refuse secrets, and the secrets themselves, read from the environment only.

Each bridge declares its own settings class on top of ``FileSettings`` (with its own
environment prefix) and calls ``load_settings`` / ``settings_from_dict`` with it, so both
report a bad file in the same words.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .errors import ConfigError

# librdkafka keys whose values are secrets: refused in the file, accepted from the environment.
SECRET_KAFKA_KEYS = frozenset({"sasl.password", "ssl.key.password", "ssl.keystore.password",
                               "sasl.oauthbearer.client.secret", "ssl.key.pem"})


class FrozenModel(BaseModel):
    """A settings section: unknown keys are mistakes, and nothing changes once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaSettings(FrozenModel):
    bootstrap_servers: str = "localhost:9092"
    # Passed to every client as-is: security.protocol, sasl.mechanism, ssl.ca.location, ...
    client: dict[str, str | int | float | bool] = Field(default_factory=dict)
    # Extra keys for the transactional producer only (linger.ms, compression.type, ...).
    producer: dict[str, str | int | float | bool] = Field(default_factory=dict)
    transaction_timeout_ms: int = Field(default=60_000, ge=1000)
    # Create the topics routes name on first use (-1: the broker's defaults), so a topic
    # template can fan out without a ticket per topic. Off when topics are managed.
    create_topics: bool = True
    topic_partitions: int = -1
    topic_replication_factor: int = -1

    @model_validator(mode="after")
    def _no_secrets(self) -> KafkaSettings:
        leaked = SECRET_KAFKA_KEYS & (set(self.client) | set(self.producer))
        if leaked:
            raise ValueError(f"{sorted(leaked)} must come from the environment "
                             "(CONVEYOR_KAFKA_SASL_PASSWORD, CONVEYOR_KAFKA_SSL_KEY_PASSWORD)")
        return self


class SchemaRegistrySettings(FrozenModel):
    # Any Confluent-compatible registry; only used when a route has format avro.
    url: str = "http://localhost:8081/apis/ccompat/v7"


class FileSettings(BaseSettings):
    """A bridge's settings: the file's values, each overridable from the environment."""

    # Stable per instance (not per process): a restart must reuse it to fence its zombie.
    instance_id: str | None = None
    # Where relative paths in the file are resolved: the file's directory.
    base_dir: Path = Field(default=Path("."), exclude=True)

    # Subclasses name their own env_prefix, e.g. "CONVEYOR_RMQ__" for CONVEYOR_RMQ__BATCH__...
    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="forbid", frozen=True)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource,
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # environment beats the file

    @property
    def instance(self) -> str:
        return self.instance_id or os.environ.get("CONVEYOR_INSTANCE_ID") or socket.gethostname()


class _HasKafka(Protocol):
    @property
    def kafka(self) -> KafkaSettings: ...


class KafkaSecrets(BaseSettings):
    """Secrets, from the environment only (never from the file)."""

    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_key_password: SecretStr | None = None
    schema_registry_user_info: SecretStr | None = None

    model_config = SettingsConfigDict(env_prefix="CONVEYOR_", extra="ignore", frozen=True)

    def kafka_client_config(self, settings: _HasKafka) -> dict[str, Any]:
        """librdkafka settings shared by every client: producers, ledger consumers, admin."""
        conf: dict[str, Any] = {"bootstrap.servers": settings.kafka.bootstrap_servers,
                                **settings.kafka.client}
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password is not None:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_key_password is not None:
            conf["ssl.key.password"] = self.kafka_ssl_key_password.get_secret_value()
        return conf


S = TypeVar("S", bound=FileSettings)


def load_settings(cls: type[S], path: str | Path) -> S:
    """Read and validate a config file (plus environment), or raise ConfigError."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path}: expected a mapping at the top level")
    return settings_from_dict(cls, raw, base_dir=path.resolve().parent)


def settings_from_dict(cls: type[S], raw: dict[str, Any], base_dir: Path = Path(".")) -> S:
    """Validate settings given as a mapping, naming every mistake by its path in a ConfigError."""
    try:
        return cls(**raw, base_dir=base_dir)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}"
                 for e in exc.errors()]
        raise ConfigError("invalid config:\n" + "\n".join(lines)) from exc
