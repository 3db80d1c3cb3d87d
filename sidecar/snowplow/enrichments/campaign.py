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

from . import Step
from .config import CampaignSettings
from .urls import params, query_of

FIELDS = ("mkt_medium", "mkt_source", "mkt_term", "mkt_content", "mkt_campaign")


def attribute(url: str, mapping: dict[str, tuple[str, ...]],
              click_ids: tuple[tuple[str, str], ...],
              wanted: frozenset[str] | None = None) -> dict[str, Any]:
    query = query_of(url)
    if not query:
        return {}
    q = params(query, wanted if wanted is not None else _wanted(mapping, click_ids))
    if not q:
        return {}
    out: dict[str, Any] = {}
    for field, names in mapping.items():
        for name in names:
            if name in q:
                out[field] = q[name]
                break
    for param, network in click_ids:
        if param in q:
            out["mkt_clickid"] = q[param]
            out["mkt_network"] = network
            break
    return out


def _wanted(mapping: dict[str, tuple[str, ...]],
            click_ids: tuple[tuple[str, str], ...]) -> frozenset[str]:
    return frozenset(n for names in mapping.values() for n in names) | \
        frozenset(p for p, _ in click_ids)


def build(settings: CampaignSettings) -> Step:
    mapping = {f: tuple(getattr(settings, f)) for f in FIELDS}
    click_ids = tuple(settings.click_ids.items())
    wanted = _wanted(mapping, click_ids)

    def step(payload: Any, _params: Any) -> dict[str, Any] | None:
        url = payload.get("page_url")
        return attribute(url, mapping, click_ids, wanted) if url else None

    return step
