"""Referer parsing: Snowplow's referer_parser enrichment on ``page_referrer``.

Fills ``refr_medium`` (``search``, ``social``, ``email``, ``internal`` or ``unknown``),
``refr_source`` (the search engine, network or webmail, e.g. ``Google``) and ``refr_term``
(a search engine's search term, from its querystring parameters). A referer on the page's
own host, or on a configured internal domain (or a subdomain of one), is ``internal`` with
no source. A referer on a host the database does not know is ``unknown``. An event without
``page_referrer`` (or with one that is not an http(s) URL) fills nothing.

The database is ``referers.yaml`` beside this module (see its header) unless
``referer_parser.database`` names another file of that layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sidecar.common.errors import ConfigError

from . import Step
from .config import RefererSettings
from .urls import http_host, params

BUNDLED = Path(__file__).with_name("referers.yaml")
MEDIUMS = ("search", "social", "email")


class RefererDb:
    """host -> (medium, source, search parameters)."""

    def __init__(self, doc: Any) -> None:
        self.hosts: dict[str, tuple[str, str, tuple[str, ...]]] = {}
        if not isinstance(doc, dict):
            raise ConfigError("referer database: expected medium -> source -> domains")
        for medium, sources in doc.items():
            if medium not in MEDIUMS or not isinstance(sources, dict):
                raise ConfigError(f"referer database: unknown medium {medium!r} "
                                  f"(known: {', '.join(MEDIUMS)})")
            for source, entry in sources.items():
                domains = entry.get("domains") if isinstance(entry, dict) else None
                if not isinstance(domains, list) or not domains:
                    raise ConfigError(f"referer database: {medium}/{source} has no domains")
                params = tuple(str(p) for p in entry.get("parameters") or ())
                for d in domains:
                    self.hosts[str(d).lower()] = (medium, str(source), params)

    @classmethod
    def load(cls, path: Path) -> RefererDb:
        try:
            return cls(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"referer database {path}: {exc}") from exc

    def lookup(self, host: str) -> tuple[str, str, tuple[str, ...]] | None:
        labels = host.split(".")
        for i in range(len(labels) - 1):
            hit = self.hosts.get(".".join(labels[i:]))
            if hit is not None:
                return hit
        return None


def _within(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


def _host(url: str | None) -> tuple[str, str] | None:
    """(host, query) of an http(s) URL, else None."""
    return http_host(url.strip()) if url else None


def parse(referrer: str, page_url: str | None, db: RefererDb,
          internal: tuple[str, ...]) -> dict[str, Any] | None:
    ref = _host(referrer)
    if ref is None:
        return None
    host, query = ref
    page = _host(page_url)
    if (page is not None and host == page[0]) or _within(host, internal):
        return {"refr_medium": "internal", "refr_source": None, "refr_term": None}
    hit = db.lookup(host)
    if hit is None:
        return {"refr_medium": "unknown", "refr_source": None, "refr_term": None}
    medium, source, names = hit
    term = None
    if names and query:
        q = params(query, frozenset(names))
        for name in names:
            if name in q:
                term = q[name]
                break
    return {"refr_medium": medium, "refr_source": source, "refr_term": term}


def build(settings: RefererSettings, database: Path | None = None) -> Step:
    db = RefererDb.load(database or BUNDLED)
    internal = tuple(d.lower().strip(".") for d in settings.internal_domains)

    def step(payload: Any, _params: Any) -> dict[str, Any] | None:
        referrer = payload.get("page_referrer")
        return parse(referrer, payload.get("page_url"), db, internal) if referrer else None

    return step
