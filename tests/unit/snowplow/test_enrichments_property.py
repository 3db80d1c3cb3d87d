"""Enrichments never raise on what trackers can send: arbitrary URLs, referers, user agents,
IPs and parameters. The chain's only way out for a failure is an enrichment_failures bad
row; these properties hold each enrichment to never needing it for input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.provisional import urls

from sidecar.snowplow.enrichments import Enrichments, build_enrichments
from sidecar.snowplow.enrichments.config import EnrichmentsSettings
from sidecar.snowplow.iglu import Resolver
from sidecar.snowplow.pipeline import CollectorCore
from sidecar.snowplow.routing import Router

from .conftest import post, tp2_body
from .test_enrichments import write_mmdb

text = st.text(max_size=300)
ips = st.one_of(st.ip_addresses().map(str), text)
url_like = st.one_of(
    urls(), text,
    st.builds(lambda u, q: f"{u}?{q}", urls(),
              st.lists(st.tuples(st.sampled_from(["utm_source", "utm_medium", "gclid", "q",
                                                  "msclkid", "dclid", "utm_term", "x"]), text),
                       max_size=6).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv))))
user_agents = st.one_of(text, st.sampled_from([
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0 Safari/537.36",
    "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/UD1A.230803.041)"]))
payloads = st.fixed_dictionaries({}, optional={
    "useragent": st.one_of(st.none(), user_agents), "page_url": st.one_of(st.none(), url_like),
    "page_referrer": st.one_of(st.none(), url_like), "user_ipaddress": st.one_of(st.none(), ips),
    "user_id": st.one_of(st.none(), text), "se_label": st.one_of(st.none(), text),
    "unstruct_event": st.one_of(st.none(), st.fixed_dictionaries(
        {"schema": st.sampled_from(["iglu:com.acme/signup/jsonschema/1-0-0", "x"]),
         "data": st.dictionaries(st.sampled_from(["email", "n"]),
                                 st.one_of(text, st.integers(), st.none(), st.booleans(),
                                           st.dictionaries(text, text, max_size=2)),
                                 max_size=2)})),
})
params = st.dictionaries(st.text(min_size=1, max_size=10), text, max_size=10)


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Enrichments:
    db = write_mmdb(Path(tmp_path_factory.mktemp("geo")) / "city.mmdb")
    return build_enrichments(EnrichmentsSettings.model_validate({
        "ip_lookup": {"enabled": True, "database": str(db)},
        "anon_ip": {"enabled": True, "anon_octets": 2, "anon_segments": 3},
        "campaign_attribution": {"enabled": True}, "referer_parser": {"enabled": True},
        "ua_parser": {"enabled": True}, "event_fingerprint": {"enabled": True},
        "pii": {"enabled": True, "fields": ["user_id", "user_ipaddress", "se_label"],
                "json_fields": [{"field": "unstruct_event", "json_path": "$.email",
                                 "schema_criterion": "iglu:com.acme/signup/jsonschema/1-*-*"}]},
    }), environ={"CONVEYOR_SNOWPLOW_PII_KEY": "k"})


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(payload=payloads, params=params)
def test_no_enrichment_raises_on_arbitrary_input(everything: Enrichments,
                                                 payload: dict[str, Any],
                                                 params: dict[str, str]) -> None:
    for name, step in everything.steps:
        before = json.dumps(payload, sort_keys=True, default=str)
        step(payload, params)          # raises: the property fails, naming the input
        assert json.dumps(payload, sort_keys=True, default=str) == before, \
            f"{name} changed its input"
    work = dict(payload)
    assert everything.apply(work, params) is None


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ua=user_agents, url=url_like, refr=url_like, ip=ips, extra=params)
def test_every_tracker_event_stays_one_output_and_good(everything: Enrichments,
                                                       resolver: Resolver, ua: str, url: str,
                                                       refr: str, ip: str,
                                                       extra: dict[str, str]) -> None:
    event = {**extra, "e": "pv", "tv": "py-1.0.0", "p": "web", "ua": ua, "url": url,
             "refr": refr, "ip": ip, "uid": ua[:20]}
    core = CollectorCore(resolver, Router([], "events"), "bad", enrichments=everything)
    out = core.process(post(tp2_body([event]))).outputs
    assert len(out) == 1
    if out[0].outcome == "bad":     # only the protocol may refuse it, never an enrichment
        assert out[0].check != "enrichment_failures", out[0].value[:500]


@settings(max_examples=300, deadline=None)
@given(url=st.one_of(urls(), st.builds(lambda u, t: u + t, urls(), text),
                     text.map(lambda t: "http://" + t)))
def test_the_cheap_host_parser_agrees_with_urllib(url: str) -> None:
    from urllib.parse import urlsplit

    from sidecar.snowplow.enrichments.urls import http_host

    got = http_host(url)
    try:
        parts = urlsplit(url)
        want = parts.hostname if parts.scheme.lower() in ("http", "https") else None
    except ValueError:
        want = None
    if got is not None and want is not None:
        assert got[0] == want.rstrip(".").lower()
        assert got[1] == parts.query
