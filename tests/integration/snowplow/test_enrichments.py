"""The real tracker's events, sent with browser and mobile user agents, campaign URLs and
search-engine referers, through collector and enrich with the enrichments on: the enriched
fields of the good events in Kafka, against a table of what Snowplow documents for them.

Kafka, not the warehouse: the landed tables' layout is changing, the enriched event is not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson, StructuredEvent, Subject

from devstack.stack import Stack

from .conftest import CollectorProcess
from .helpers import duplicates, flush_all, good_events, landed, make_tracker

pytestmark = pytest.mark.integration

ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0"
BASKET = "iglu:com.conveyor.grocer/basket_item/jsonschema/1-0-0"
UA_CONTEXT = "iglu:com.snowplowanalytics.snowplow/ua_parser_context/jsonschema/1-0-0"
PII_KEY = "itest-pii-key"

CHROME_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
                  "Gecko) Chrome/120.0.0.0 Safari/537.36")
SAFARI_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like "
              "Gecko) Version/17.1 Safari/605.1.15")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1")
ANDROID = ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/120.0.6099.144 Mobile Safari/537.36")
IPAD = ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/16.6 Mobile/15E148 Safari/604.1")

CAMPAIGN = ("https://shop.example/offers?utm_source=newsletter&utm_medium=email"
            "&utm_campaign=spring_sale&utm_term=oat+milk&utm_content=hero&gclid=CJ1abc")

# What each event's enriched fields must be: (label, subject, event, expected fields).
# ua: (useragentFamily, useragentVersion, osFamily, osVersion, deviceFamily);
# legacy: (br_family, os_family, dvce_type, dvce_ismobile).
CASES: list[tuple[str, tuple[str, str], Any, dict[str, Any]]] = [
    ("browser page view from a Google search on a campaign URL", (CHROME_WINDOWS, "203.0.113.57"),
     PageView(page_url=CAMPAIGN, page_title="Offers",
              referrer="https://www.google.com/search?q=oat+milk+delivery&hl=en"),
     {"ua": ("Chrome", "Chrome 120.0.0", "Windows", "Windows 10", "Other"),
      "legacy": ("Chrome", "Windows", "Computer", False),
      "user_ipaddress": "203.0.113.x",
      "mkt_source": "newsletter", "mkt_medium": "email", "mkt_campaign": "spring_sale",
      "mkt_term": "oat milk", "mkt_content": "hero", "mkt_clickid": "CJ1abc",
      "mkt_network": "Google",
      "refr_medium": "search", "refr_source": "Google", "refr_term": "oat milk delivery"}),
    ("browser page view from Bing, Microsoft click id", (SAFARI_MAC, "198.51.100.7"),
     PageView(page_url="https://shop.example/bread?msclkid=ms-42&utm_source=bing",
              referrer="https://www.bing.com/search?q=sourdough"),
     {"ua": ("Safari", "Safari 17.1", "Mac OS X", "Mac OS X 14.1", "Mac"),
      "legacy": ("Safari", "Mac OS X", "Computer", False),
      "user_ipaddress": "198.51.100.x", "mkt_source": "bing", "mkt_clickid": "ms-42",
      "mkt_network": "Microsoft",
      "refr_medium": "search", "refr_source": "Bing", "refr_term": "sourdough"}),
    ("iPhone page view from Facebook", (IPHONE, "2001:db8:85a3::8a2e:370:7334"),
     PageView(page_url="https://shop.example/p/1?dclid=dc-9",
              referrer="https://l.facebook.com/l.php?u=https%3A%2F%2Fshop.example"),
     {"ua": ("Mobile Safari", "Mobile Safari 17.1.2", "iOS", "iOS 17.1.2", "iPhone"),
      "legacy": ("Mobile Safari", "iOS", "Mobile", True),
      "user_ipaddress": "2001:db8:85a3:0:0:8a2e:370:x", "mkt_clickid": "dc-9",
      "mkt_network": "DoubleClick", "refr_medium": "social", "refr_source": "Facebook",
      "refr_term": None}),
    ("Android page view within the shop", (ANDROID, "192.0.2.200"),
     PageView(page_url="https://shop.example/checkout", referrer="https://shop.example/basket"),
     {"ua": ("Chrome Mobile", "Chrome Mobile 120.0.6099", "Android", "Android 14",
             "Samsung SM-S918B"),
      "legacy": ("Chrome Mobile", "Android", "Mobile", True),
      "user_ipaddress": "192.0.2.x", "refr_medium": "internal", "refr_source": None,
      "mkt_source": None, "mkt_clickid": None}),
    ("Android structured event", (ANDROID, "192.0.2.200"),
     StructuredEvent(category="basket", action="add", label="sku-7", value=2.0),
     {"ua": ("Chrome Mobile", "Chrome Mobile 120.0.6099", "Android", "Android 14",
             "Samsung SM-S918B"),
      "legacy": ("Chrome Mobile", "Android", "Mobile", True),
      "user_ipaddress": "192.0.2.x", "se_label": "pii:sku-7", "mkt_source": None,
      "refr_medium": None}),
    ("iPad self-describing event with an entity", (IPAD, "203.0.113.9"),
     SelfDescribing(SelfDescribingJson(ORDER, {"order_id": "o-1", "total": 12.5,
                                               "currency": "EUR", "items": 2}),
                    context=[SelfDescribingJson(BASKET, {"sku": "sku-7", "quantity": 2})]),
     {"ua": ("Mobile Safari", "Mobile Safari 16.6", "iOS", "iOS 16.6", "iPad"),
      "legacy": ("Mobile Safari", "iOS", "Tablet", True),
      "user_ipaddress": "203.0.113.x", "order_id": "pii:o-1", "mkt_source": None}),
]


def _pseudonym(value: str) -> str:
    return hmac.new(PII_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()


def _json(value: Any) -> Any:
    # Avro routes carry the entities as JSON text, JSON routes as JSON.
    return json.loads(value) if isinstance(value, str) else value


def test_enriched_fields_of_real_tracker_events(
        collector: Callable[..., CollectorProcess], kafka_bootstrap: str) -> None:
    c = collector(start=False, schema_registry={"url": Stack.from_env().schema_registry_url},
                  enrichments={
                      "ua_parser": {"enabled": True}, "anon_ip": {"enabled": True},
                      "campaign_attribution": {"enabled": True},
                      "referer_parser": {"enabled": True, "internal_domains": ["grocer.example"]},
                      "event_fingerprint": {"enabled": True},
                      "pii": {"enabled": True, "fields": ["user_id", "se_label"],
                              "json_fields": [{"field": "unstruct_event",
                                               "schema_criterion": ORDER,
                                               "json_path": "$.order_id"}]}})
    # Page views through an Avro route (as the compose stack has them), the rest JSON.
    cfg = yaml.safe_load(c.config_path.read_text())
    for route in cfg["topics"]["routes"]:
        if route["name"] == "views":
            route["format"] = "avro"
    c.config_path.write_text(yaml.safe_dump(cfg))
    c.env = {"CONVEYOR_SNOWPLOW_PII_KEY": PII_KEY}
    c.start()

    sent: dict[str, tuple[str, dict[str, Any]]] = {}
    for label, (ua, ip), event, want in CASES:
        tracker, emitter, outcomes = make_tracker(c.endpoint, "post", batch_size=1)
        tracker.set_subject(Subject().set_useragent(ua).set_ip_address(ip).set_user_id("u-1"))
        eid = tracker.track(event)
        flush_all(emitter)
        assert outcomes.ok == [eid] and outcomes.failed == [], label
        sent[eid] = (label, want)

    found = landed(kafka_bootstrap, c.topics)
    assert found["bad"] == []
    events = good_events(found)
    assert duplicates([e["event_id"] for e in events]) == {}
    assert {e["event_id"] for e in events} == set(sent)
    assert found["views"] and all("derived_contexts" in e["payload"] for e in found["views"])

    fingerprints = set()
    for env in events:
        label, want = sent[env["event_id"]]
        p = env["payload"]
        derived = _json(p["derived_contexts"])
        assert [d["schema"] for d in derived] == [UA_CONTEXT], label
        ctx = derived[0]["data"]
        got_ua = (ctx["useragentFamily"], ctx["useragentVersion"], ctx["osFamily"],
                  ctx["osVersion"], ctx["deviceFamily"])
        assert got_ua == want["ua"], label
        legacy = (p["br_family"], p["os_family"], p["dvce_type"], p["dvce_ismobile"])
        assert legacy == want["legacy"], label
        for name, value in want.items():
            if name in ("ua", "legacy", "order_id"):
                continue
            if isinstance(value, str) and value.startswith("pii:"):
                value = _pseudonym(value[4:])
            assert p.get(name) == value, f"{label}: {name}"
        assert p["user_id"] == _pseudonym("u-1"), label
        if "order_id" in want:
            order = _json(p["unstruct_event"])
            assert order["data"]["order_id"] == _pseudonym(want["order_id"][4:])
            assert order["data"]["total"] == 12.5
            assert [e["schema"] for e in _json(p["contexts"])] == [BASKET]
        assert re.fullmatch(r"[0-9a-f]{32}", p["event_fingerprint"]), label
        fingerprints.add(p["event_fingerprint"])
    assert len(fingerprints) == len(events)
