"""Connector config files: loading, checking, and the profiles they are grouped in.

A file holds one connector, in the body Connect's own ``POST /connectors`` takes, plus
optional ``notes`` (why the config is what it is; never sent to Connect)::

    {"name": "warehouse-rabbitmq-events",
     "notes": ["read_committed: the bridges write in transactions; ..."],
     "config": {"connector.class": "...", ...}}

A profile is a folder of such files under ``connectors/configs/`` (``local``, ``snowflake``,
``s3``). Secrets are never written in a file: every key that holds one must be a config
provider reference (``${env:NAME}``, ``${file:/path:key}``), resolved by the worker at start.
Loading is pure (files in, values out) so the CLI and the tests share it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"

# Keys whose value is a secret; matched on the last dotted part of the key, so they catch
# "connection.password", "snowflake.private.key", "aws.secret.access.key", "hash.key", ...
# Iceberg spells its keys with hyphens ("iceberg.catalog.s3.secret-access-key"), so a
# separator inside a name may be either. An access key id is half of a credential pair (and
# names the account), so it is held to the same rule as its secret; a REST catalog's
# "credential" is an OAuth2 client id and secret.
_SECRET_KEY = re.compile(
    r"(^|\.)(password|passphrase|secret|secret[.-]access[.-]key|access[.-]key[.-]id"
    r"|private[.-]key|private[.-]key[.-]passphrase|hash[.-]key|api[.-]key|token|credential"
    r"|sasl\.jaas\.config)$")
# A worker config provider reference: ${provider:path:key} or ${provider:key}. Connect only
# resolves these (a colon inside); ${topic} and ${value} are left for Debezium and our SMTs.
PROVIDER_REF = re.compile(r"^\$\{[A-Za-z0-9_-]+:[^}]+\}$")


class ConfigFileError(ValueError):
    """A connector file cannot be read, or is not a connector config we will deploy."""


@dataclass(frozen=True)
class ConnectorFile:
    name: str
    config: dict[str, str]
    path: Path | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def connector_class(self) -> str:
        return self.config["connector.class"]

    def with_config(self, name: str | None = None, **changes: str) -> ConnectorFile:
        """A copy with some keys changed (tests give each run its own topics and tables)."""
        cfg = {**self.config, **changes}
        return ConnectorFile(name or self.name, cfg, self.path, self.notes)

    def body(self) -> dict[str, str]:
        """The config exactly as PUT /connectors/{name}/config takes and GET returns it."""
        return {**self.config, "name": self.name}


def profiles() -> list[str]:
    return sorted(p.name for p in CONFIG_ROOT.iterdir() if p.is_dir())


def profile_files(profile: str) -> list[Path]:
    folder = CONFIG_ROOT / profile
    if not folder.is_dir():
        raise ConfigFileError(f"no profile {profile!r}; profiles: {', '.join(profiles())}")
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ConfigFileError(f"profile {profile!r} has no *.json connector files")
    return files


def load_profile(profile: str) -> list[ConnectorFile]:
    return load_files(profile_files(profile))


def load_files(paths: Iterable[Path]) -> list[ConnectorFile]:
    out = [load_file(Path(p)) for p in paths]
    seen: dict[str, Path | None] = {}
    for c in out:
        if c.name in seen:
            raise ConfigFileError(f"connector {c.name!r} is defined twice: {seen[c.name]} "
                                  f"and {c.path}")
        seen[c.name] = c.path
    return out


def load_file(path: Path) -> ConnectorFile:
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise ConfigFileError(f"{path}: not JSON ({exc})") from exc
    return parse(doc, path)


def parse(doc: Any, path: Path | None = None) -> ConnectorFile:
    where = str(path) if path else "connector"
    if not isinstance(doc, Mapping):
        raise ConfigFileError(f"{where}: expected an object with name and config")
    unknown = set(doc) - {"name", "config", "notes"}
    if unknown:
        raise ConfigFileError(f"{where}: unknown top-level keys {sorted(unknown)} "
                              "(only name, config, notes)")
    name, config = doc.get("name"), doc.get("config")
    if not isinstance(name, str) or not name:
        raise ConfigFileError(f"{where}: 'name' must be a non-empty string")
    if not isinstance(config, Mapping) or "connector.class" not in config:
        raise ConfigFileError(f"{where}: 'config' must be an object with connector.class")
    if "name" in config and config["name"] != name:
        raise ConfigFileError(f"{where}: config.name {config['name']!r} differs from "
                              f"name {name!r}")
    bad = [k for k, v in config.items() if not isinstance(v, str)]
    if bad:
        # Connect stores strings; a number here would read back as a string and make every
        # apply look like a change.
        raise ConfigFileError(f"{where}: values must be strings (Connect stores strings): "
                              f"{sorted(bad)}")
    leaked = clear_secrets(config)
    if leaked:
        raise ConfigFileError(f"{where}: {', '.join(leaked)} must be a config provider "
                              "reference such as ${env:NAME}, never a secret in clear")
    notes = doc.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise ConfigFileError(f"{where}: 'notes' must be a list of strings")
    cfg = {k: v for k, v in config.items() if k != "name"}
    return ConnectorFile(name, cfg, path, tuple(notes))


def clear_secrets(config: Mapping[str, str]) -> list[str]:
    """Keys that hold a secret but are not config provider references."""
    return sorted(k for k, v in config.items()
                  if _SECRET_KEY.search(k) and v and not PROVIDER_REF.match(v))


def diff(desired: Mapping[str, str], current: Mapping[str, str] | None) -> dict[str, tuple[
        str | None, str | None]]:
    """Changed keys: ``{key: (current, desired)}``; empty when nothing would change."""
    if current is None:
        return {k: (None, v) for k, v in desired.items()}
    keys = set(desired) | set(current)
    return {k: (current.get(k), desired.get(k)) for k in sorted(keys)
            if current.get(k) != desired.get(k)}
