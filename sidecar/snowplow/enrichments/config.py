"""The ``enrichments`` section of the Snowplow config: one sub-section per enrichment, each
with ``enabled`` (all off by default, so a config without the section enriches nothing).

Names follow Snowplow's enrichment configurations (``anonOctets`` is ``anon_octets`` here);
see sidecar/snowplow/README.md for what each fills. The PII key is a secret: it comes from
the environment variable ``pii.key_env`` names, never from the file.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from sidecar.common.config import FrozenModel

# Atomic fields the PII enrichment may pseudonymise (Snowplow's pii_enrichment_config "pojo"
# fields that Conveyor's payload carries or enrichments fill).
PII_FIELDS = ("user_id", "user_ipaddress", "domain_userid", "network_userid", "mkt_term",
              "mkt_content", "mkt_clickid", "se_category", "se_action", "se_label",
              "se_property", "page_url", "page_referrer", "refr_term", "useragent")
JSON_FIELDS = ("unstruct_event", "contexts", "derived_contexts")
_JSON_PATH = re.compile(r"^\$(\.[A-Za-z0-9_\-]+)+$")


class UaParserSettings(FrozenModel):
    enabled: bool = False
    # Also fill the atomic columns Snowplow's (deprecated) user_agent_utils enrichment
    # filled: br_family, br_name, br_version, os_family, os_name, dvce_type, dvce_ismobile.
    legacy_columns: bool = True
    # Distinct user agents kept parsed; they repeat all day.
    cache_size: int = Field(default=10_000, ge=0)


class AnonIpSettings(FrozenModel):
    enabled: bool = False
    anon_octets: int = Field(default=1, ge=1, le=4)     # IPv4: 1 -> 203.0.113.x
    anon_segments: int = Field(default=1, ge=1, le=8)   # IPv6: 1 -> 2001:db8:0:0:0:0:0:x


class CampaignSettings(FrozenModel):
    enabled: bool = False
    # page_url parameters per field, first present wins (Snowplow's static mapping).
    mkt_medium: list[str] = Field(default_factory=lambda: ["utm_medium"])
    mkt_source: list[str] = Field(default_factory=lambda: ["utm_source"])
    mkt_term: list[str] = Field(default_factory=lambda: ["utm_term"])
    mkt_content: list[str] = Field(default_factory=lambda: ["utm_content"])
    mkt_campaign: list[str] = Field(default_factory=lambda: ["utm_campaign"])
    # Click-id parameter -> mkt_network; the first present (in this order) fills mkt_clickid.
    click_ids: dict[str, str] = Field(default_factory=lambda: {
        "gclid": "Google", "msclkid": "Microsoft", "dclid": "DoubleClick"})


class RefererSettings(FrozenModel):
    enabled: bool = False
    # Hosts (and their subdomains) that count as the site itself: medium "internal".
    # The page's own host always does.
    internal_domains: list[str] = Field(default_factory=list)
    # A referer database in the bundled file's format, instead of the bundled one.
    database: Path | None = None


class FingerprintSettings(FrozenModel):
    enabled: bool = False
    # Tracker parameters left out: stm changes on every retry, eid is deduplicated anyway.
    exclude_parameters: list[str] = Field(default_factory=lambda: ["stm", "eid"])
    hash_algorithm: Literal["MD5", "SHA-256"] = "MD5"


class IpLookupSettings(FrozenModel):
    enabled: bool = False
    # A MaxMind (GeoIP2/GeoLite2 City) .mmdb file; none ships with Conveyor. Relative paths
    # are from the config file.
    database: Path | None = None

    @model_validator(mode="after")
    def _check(self) -> IpLookupSettings:
        if self.enabled and self.database is None:
            raise ValueError("ip_lookup.enabled needs ip_lookup.database (a MaxMind .mmdb file)")
        return self


class PiiJsonField(FrozenModel):
    field: Literal["unstruct_event", "contexts", "derived_contexts"]
    # Glob on the entity's Iglu URI, e.g. iglu:com.acme/signup/jsonschema/1-*-*
    schema_criterion: str = Field(pattern=r"^iglu:")
    # A path of object keys from the entity's data, e.g. $.email or $.customer.email
    json_path: str

    @field_validator("json_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not _JSON_PATH.match(value):
            raise ValueError(f"json_path {value!r}: only $.key(.key)* paths are supported")
        return value


class PiiSettings(FrozenModel):
    enabled: bool = False
    fields: list[str] = Field(default_factory=list)
    json_fields: list[PiiJsonField] = Field(default_factory=list)
    # The environment variable holding the HMAC key (never the key itself).
    key_env: str = Field(default="CONVEYOR_SNOWPLOW_PII_KEY", pattern=r"^[A-Z_][A-Z0-9_]*$")

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(PII_FIELDS))
        if unknown:
            raise ValueError(f"pii.fields: {unknown} cannot be pseudonymised; "
                             f"known: {', '.join(PII_FIELDS)}")
        return value


class EnrichmentsSettings(FrozenModel):
    ua_parser: UaParserSettings = Field(default_factory=UaParserSettings)
    anon_ip: AnonIpSettings = Field(default_factory=AnonIpSettings)
    campaign_attribution: CampaignSettings = Field(default_factory=CampaignSettings)
    referer_parser: RefererSettings = Field(default_factory=RefererSettings)
    event_fingerprint: FingerprintSettings = Field(default_factory=FingerprintSettings)
    ip_lookup: IpLookupSettings = Field(default_factory=IpLookupSettings)
    pii: PiiSettings = Field(default_factory=PiiSettings)

    @property
    def any_enabled(self) -> bool:
        return any(getattr(self, name).enabled for name in type(self).model_fields)
