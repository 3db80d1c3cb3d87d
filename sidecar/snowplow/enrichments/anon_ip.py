"""IP anonymisation: Snowplow's anon_ip enrichment on ``user_ipaddress``.

IPv4: the last ``anon_octets`` octets become ``x`` (``203.0.113.57`` -> ``203.0.113.x``
with 1, ``203.x.x.x`` with 3). IPv6: the address is written out in its eight segments
(``::`` expanded, leading zeros dropped) and the last ``anon_segments`` become ``x``
(``2001:db8::ff00:42:8329`` -> ``2001:db8:0:0:0:ff00:42:x`` with 1). An IPv4 address mapped
into IPv6 (``::ffff:203.0.113.57``) is anonymised as the IPv4 address it is. A value that
is not an IP address is left as it is, as Snowplow does.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from . import Step
from .config import AnonIpSettings


def _dotted_quad(text: str) -> list[str] | None:
    """The four octets of a plain IPv4 address (the common case, without ipaddress's cost)."""
    parts = text.split(".")
    if len(parts) != 4:
        return None
    for p in parts:
        if not (p.isascii() and p.isdigit()) or len(p) > 3 or int(p) > 255 \
                or (len(p) > 1 and p[0] == "0"):
            return None
    return parts


@functools.lru_cache(maxsize=65_536)   # a visitor's IP repeats over their session
def anonymise(ip: str, octets: int, segments: int) -> str:
    text = ip.strip()
    quad = _dotted_quad(text)
    if quad is not None:
        return ".".join(quad[: 4 - octets] + ["x"] * octets)
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        parts = str(addr).split(".")
        return ".".join(parts[: 4 - octets] + ["x"] * octets)
    parts = [p.lstrip("0") or "0" for p in addr.exploded.split(":")]
    return ":".join(parts[: 8 - segments] + ["x"] * segments)


def build(settings: AnonIpSettings) -> Step:
    octets, segments = settings.anon_octets, settings.anon_segments

    def step(payload: Any, _params: Any) -> dict[str, Any] | None:
        ip = payload.get("user_ipaddress")
        if not ip:
            return None
        return {"user_ipaddress": anonymise(ip, octets, segments)}

    return step
