"""Network user id, the collector's cookie, client IP and CORS: the collector's own identity logic.

As Snowplow collectors do it:
- the network user id is the ``nuid`` query parameter, else the collector cookie, else a
  new UUID; it is set back as a cookie (renewing its expiry) on every tracker response;
- ``SP-Anonymous`` (any value) means: no cookie is read or set, the network user id is the
  all-zero UUID, and the request's IP (socket and ``X-Forwarded-For``) is not recorded;
- the cookie domain is the first configured domain that the request's ``Origin`` host is
  (or is a subdomain of), else the fallback domain, else none (host-only cookie).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from urllib.parse import urlsplit

ANONYMOUS_NUID = "00000000-0000-0000-0000-000000000000"
ANONYMOUS_HEADER = "sp-anonymous"
# Anything else in a cookie or nuid is not an id we set, and could break the Set-Cookie line.
_SANE_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


@dataclass(frozen=True, slots=True)
class CookieConfig:
    enabled: bool = True
    name: str = "sp"
    expiration_s: int = 365 * 24 * 3600
    domains: tuple[str, ...] = ()
    fallback_domain: str | None = None
    secure: bool = True
    http_only: bool = True
    same_site: str | None = "None"
    path: str = "/"


@dataclass(frozen=True, slots=True)
class Identity:
    network_userid: str
    source: str  # "query" | "cookie" | "new" | "anonymous"
    set_cookie: str | None = None


def is_anonymous(headers: Mapping[str, str]) -> bool:
    return ANONYMOUS_HEADER in headers


def parse_cookies(header: str | None) -> dict[str, str]:
    """Lenient ``Cookie`` header parsing: one bad cookie must not hide ours."""
    out: dict[str, str] = {}
    if not header:
        return out
    for part in header.split(";"):
        name, sep, value = part.partition("=")
        name = name.strip()
        if sep and name and name not in out:
            out[name] = value.strip().strip('"')
    return out


def resolve_identity(query: Mapping[str, str], headers: Mapping[str, str], cfg: CookieConfig,
                     now_ms: int, new_id: Callable[[], str] = lambda: str(uuid.uuid4())
                     ) -> Identity:
    """Network user id for a request and the ``Set-Cookie`` value to answer with."""
    if is_anonymous(headers):
        return Identity(ANONYMOUS_NUID, "anonymous", None)
    nuid, source = None, "new"
    q = query.get("nuid")
    if q and _SANE_ID.match(q):
        nuid, source = q, "query"
    elif cfg.enabled:
        c = parse_cookies(headers.get("cookie")).get(cfg.name)
        if c and _SANE_ID.match(c):
            nuid, source = c, "cookie"
    if nuid is None:
        nuid = new_id()
    cookie = set_cookie_value(cfg, nuid, now_ms, headers.get("origin")) if cfg.enabled else None
    return Identity(nuid, source, cookie)


def set_cookie_value(cfg: CookieConfig, nuid: str, now_ms: int, origin: str | None) -> str:
    expires = formatdate(now_ms / 1000 + cfg.expiration_s, usegmt=True)
    parts = [f"{cfg.name}={nuid}", f"Expires={expires}", f"Max-Age={cfg.expiration_s}"]
    domain = cookie_domain(origin, cfg.domains, cfg.fallback_domain)
    if domain:
        parts.append(f"Domain={domain}")
    parts.append(f"Path={cfg.path}")
    if cfg.same_site:
        parts.append(f"SameSite={cfg.same_site}")
    if cfg.secure:
        parts.append("Secure")
    if cfg.http_only:
        parts.append("HttpOnly")
    return "; ".join(parts)


def origin_hosts(origin: str | None) -> list[str]:
    """Hosts named by an ``Origin`` header (it may list several, space-separated)."""
    if not origin:
        return []
    hosts = []
    for item in origin.split():
        if item == "null":
            continue
        host = urlsplit(item).hostname
        if host:
            hosts.append(host.lower())
    return hosts


def cookie_domain(origin: str | None, domains: tuple[str, ...], fallback: str | None) -> str | None:
    hosts = origin_hosts(origin)
    for domain in domains:
        d = domain.lower().lstrip(".")
        # A subdomain match must be on a label boundary: evil-acme.com is not acme.com.
        if any(h == d or h.endswith("." + d) for h in hosts):
            return domain
    return fallback


def client_ip(remote: str | None, headers: Mapping[str, str], use_forwarded_for: bool,
              anonymous: bool) -> str | None:
    """The client's IP: first ``X-Forwarded-For`` hop (behind a load balancer) or the socket."""
    if anonymous:
        return None
    if use_forwarded_for:
        xff = headers.get("x-forwarded-for")
        if xff:
            first = xff.split(",")[0].strip()
            if first:
                return first[:64]
    return remote


def cors_headers(origin: str | None) -> dict[str, str]:
    """Tracker responses echo the Origin (credentials need an exact origin, not ``*``)."""
    return {
        "Access-Control-Allow-Origin": origin.split()[0] if origin and origin.strip() else "*",
        "Access-Control-Allow-Credentials": "true",
    }


def preflight_headers(origin: str | None, max_age_s: int) -> dict[str, str]:
    return {
        **cors_headers(origin),
        "Access-Control-Allow-Headers": "Content-Type, SP-Anonymous",
        "Access-Control-Allow-Methods": "POST, GET, OPTIONS",
        "Access-Control-Max-Age": str(max_age_s),
        "Vary": "Origin",
    }
