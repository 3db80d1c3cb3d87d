"""Snowplow's enrichments, each a pure function over the event enrich is building.

Every enrichment module exposes ``build(settings, ...) -> Step``: a function that takes the
event's payload (the named fields ``TrackerEvent.payload`` built) and its tracker
parameters, and returns the fields to set (or ``None``), never touching its inputs. The
chain (``Enrichments.apply``) runs the enabled ones in Snowplow's order (IP lookup before
IP anonymisation, PII pseudonymisation last, after everything it may hash was filled) and
merges their fields into the payload; entities an enrichment derives (the parsed user
agent) go to ``derived_contexts``, as Snowplow keeps them apart from the tracker's
``contexts``. An enrichment that raises stops the chain and names itself: the event becomes
an ``enrichment_failures`` bad row, never a crash and never a half-enriched event.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.common.errors import ConfigError

from .config import EnrichmentsSettings

Payload = Mapping[str, Any]
Params = Mapping[str, str]
# (payload, params) -> fields to set; entities under ADD_DERIVED are appended to
# derived_contexts (a field named derived_contexts replaces the list, as PII does).
ADD_DERIVED = "+derived_contexts"
Step = Callable[[Payload, Params], dict[str, Any] | None]

__all__ = ["EnrichmentFailure", "Enrichments", "EnrichmentsSettings", "build_enrichments"]


@dataclass(frozen=True, slots=True)
class EnrichmentFailure:
    enrichment: str
    message: str


class Enrichments:
    def __init__(self, steps: list[tuple[str, Step]]) -> None:
        self.steps = steps

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.steps]

    def apply(self, payload: dict[str, Any], params: Params) -> EnrichmentFailure | None:
        """Fill ``payload`` in place; on failure it may hold earlier enrichments' fields, and
        the caller writes a bad row instead of it."""
        for name, step in self.steps:
            try:
                fields = step(payload, params)
            except Exception as exc:
                return EnrichmentFailure(name, f"{type(exc).__name__}: {exc}"[:500])
            if not fields:
                continue
            derived = fields.pop(ADD_DERIVED, None)
            if derived:
                payload["derived_contexts"] = [*payload.get("derived_contexts", ()), *derived]
            payload.update(fields)
        return None


def build_enrichments(settings: EnrichmentsSettings, base_dir: Path = Path("."),
                      environ: Mapping[str, str] | None = None) -> Enrichments:
    """The enabled enrichments, in Snowplow's order; ConfigError when one cannot work
    (a database that cannot be read, a PII key missing from the environment)."""
    # Each module is imported only when its enrichment is on: a deployment without a
    # MaxMind database needs no maxminddb, one without ua_parser no ua-parser.
    env = os.environ if environ is None else environ
    s = settings
    steps: list[tuple[str, Step]] = []

    def resolve(path: Path) -> Path:
        return path if path.is_absolute() else base_dir / path

    if s.ip_lookup.enabled and s.ip_lookup.database is not None:
        from . import ip_lookup
        steps.append(("ip_lookup", ip_lookup.build(resolve(s.ip_lookup.database))))
    if s.anon_ip.enabled:
        from . import anon_ip
        steps.append(("anon_ip", anon_ip.build(s.anon_ip)))
    if s.campaign_attribution.enabled:
        from . import campaign
        steps.append(("campaign_attribution", campaign.build(s.campaign_attribution)))
    if s.referer_parser.enabled:
        from . import referer
        db = s.referer_parser.database
        steps.append(("referer_parser",
                      referer.build(s.referer_parser, resolve(db) if db else None)))
    if s.ua_parser.enabled:
        from . import useragent
        steps.append(("ua_parser", useragent.build(s.ua_parser)))
    if s.event_fingerprint.enabled:
        from . import fingerprint
        steps.append(("event_fingerprint", fingerprint.build(s.event_fingerprint)))
    if s.pii.enabled:
        from . import pii
        key = env.get(s.pii.key_env)
        if not key:
            raise ConfigError(f"enrichments.pii is enabled but {s.pii.key_env} is not set "
                              "(the HMAC key comes from the environment only)")
        steps.append(("pii", pii.build(s.pii, key.encode())))
    return Enrichments(steps)
