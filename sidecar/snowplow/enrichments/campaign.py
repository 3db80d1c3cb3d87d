"""Campaign attribution: Snowplow's campaign_attribution enrichment from ``page_url``.

``mkt_medium``, ``mkt_source``, ``mkt_term``, ``mkt_content``, ``mkt_campaign`` from the
page URL's querystring parameters configured for each (``utm_*`` by default; the first
parameter of a field's list that is present wins, URL-decoded), and ``mkt_clickid`` /
``mkt_network`` from the first configured click-id parameter present (``gclid`` -> Google,
``msclkid`` -> Microsoft, ``dclid`` -> DoubleClick by default). A page URL without a
querystring (or without any of those parameters) fills nothing.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import Step
from .config import CampaignSettings

FIELDS = ("mkt_medium", "mkt_source", "mkt_term", "mkt_content", "mkt_campaign")
# Parameters beyond this many are ignored: bounded work for a hostile URL.
MAX_PARAMS = 200


def query_of(url: str) -> dict[str, list[str]]:
    if "?" not in url:
        return {}
    try:
        query = urlsplit(url).query
    except ValueError:   # e.g. an invalid IPv6 host; the querystring is still readable
        query = url.split("?", 1)[1].split("#", 1)[0]
    return parse_qs("&".join(query.split("&", MAX_PARAMS)[:MAX_PARAMS]))


def attribute(url: str, mapping: dict[str, tuple[str, ...]],
              click_ids: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    q = query_of(url)
    if not q:
        return {}
    out: dict[str, Any] = {}
    for field, names in mapping.items():
        for name in names:
            if q.get(name):
                out[field] = q[name][0]
                break
    for param, network in click_ids:
        if q.get(param):
            out["mkt_clickid"] = q[param][0]
            out["mkt_network"] = network
            break
    return out


def build(settings: CampaignSettings) -> Step:
    mapping = {f: tuple(getattr(settings, f)) for f in FIELDS}
    click_ids = tuple(settings.click_ids.items())

    def step(payload: Any, _params: Any) -> dict[str, Any] | None:
        url = payload.get("page_url")
        return attribute(url, mapping, click_ids) if url else None

    return step
