"""Each enrichment against the examples Snowplow's documentation gives, and the chain in the
core: enriched fields on good events, an enrichment that fails makes a bad row naming it."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet
from snowplow_tracker import PageView, StructuredEvent, Subject

from sidecar.common.errors import ConfigError
from sidecar.snowplow.enrichments import Enrichments, build_enrichments
from sidecar.snowplow.enrichments.anon_ip import anonymise
from sidecar.snowplow.enrichments.campaign import attribute
from sidecar.snowplow.enrichments.config import EnrichmentsSettings
from sidecar.snowplow.enrichments.fingerprint import fingerprint
from sidecar.snowplow.enrichments.ip_lookup import describe
from sidecar.snowplow.enrichments.pii import pseudonym
from sidecar.snowplow.enrichments.referer import BUNDLED, RefererDb, parse
from sidecar.snowplow.enrichments.useragent import SCHEMA as UA_SCHEMA
from sidecar.snowplow.enrichments.useragent import parse as parse_ua
from sidecar.snowplow.iglu import Resolver
from sidecar.snowplow.pipeline import CollectorCore
from sidecar.snowplow.routing import Router

from .conftest import post, tp2_body

CHROME_MAC = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_2) AppleWebKit/537.36 "
              "(KHTML, like Gecko) Chrome/33.0.1750.152 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1")
ALL_ON = {"ua_parser": {"enabled": True}, "anon_ip": {"enabled": True},
          "campaign_attribution": {"enabled": True}, "referer_parser": {"enabled": True},
          "event_fingerprint": {"enabled": True}}
KEY_ENV = {"CONVEYOR_SNOWPLOW_PII_KEY": "test-key"}


def chain(**sections: Any) -> Enrichments:
    return build_enrichments(EnrichmentsSettings.model_validate(sections), environ=KEY_ENV)


# --- IP anonymisation (anonOctets / anonSegments) ---------------------------------------

@pytest.mark.parametrize(("ip", "octets", "want"), [
    ("255.255.255.255", 1, "255.255.255.x"),      # Snowplow's docs: one octet
    ("255.255.255.255", 3, "255.x.x.x"),          # ... and three
    ("13.54.45.87", 2, "13.54.x.x"),              # the docs' other example
    ("203.0.113.57", 4, "x.x.x.x"),
    ("::ffff:203.0.113.57", 1, "203.0.113.x"),    # IPv4 mapped into IPv6 is IPv4
    ("not an ip", 1, "not an ip"),                # left as it is, as Snowplow does
])
def test_anonymise_ipv4(ip: str, octets: int, want: str) -> None:
    assert anonymise(ip, octets, 1) == want


@pytest.mark.parametrize(("ip", "segments", "want"), [
    ("2001:0db8:0000:0000:0000:ff00:0042:8329", 1, "2001:db8:0:0:0:ff00:42:x"),
    ("2001:db8::ff00:42:8329", 2, "2001:db8:0:0:0:ff00:x:x"),
    ("::1", 8, "x:x:x:x:x:x:x:x"),
])
def test_anonymise_ipv6(ip: str, segments: int, want: str) -> None:
    assert anonymise(ip, 1, segments) == want


# --- campaign attribution ----------------------------------------------------------------

UTM = {f"mkt_{f}": (f"utm_{f}",) for f in ("medium", "source", "term", "content", "campaign")}
CLICKS = (("gclid", "Google"), ("msclkid", "Microsoft"), ("dclid", "DoubleClick"))


def test_campaign_fields_from_the_docs_example() -> None:
    url = ("https://www.acme.com/spring_offer_product?utm_source=influencer&utm_medium=blog"
           "&utm_campaign=spring_offer")
    assert attribute(url, UTM, CLICKS) == {"mkt_source": "influencer", "mkt_medium": "blog",
                                           "mkt_campaign": "spring_offer"}


@pytest.mark.parametrize(("param", "network"), list(CLICKS))
def test_click_ids_name_their_network(param: str, network: str) -> None:
    got = attribute(f"https://shop.example/?{param}=abc&utm_term=red+shoes", UTM, CLICKS)
    assert got == {"mkt_clickid": "abc", "mkt_network": network, "mkt_term": "red shoes"}


def test_campaign_mapping_is_configurable_first_present_wins() -> None:
    step = chain(campaign_attribution={"enabled": True, "mkt_campaign": ["cid", "utm_campaign"],
                                       "click_ids": {"fbclid": "Facebook"}})
    payload: dict[str, Any] = {"page_url": "https://s.example/?utm_campaign=b&cid=a&fbclid=z"}
    assert step.apply(payload, {}) is None
    assert (payload["mkt_campaign"], payload["mkt_clickid"], payload["mkt_network"]) == \
        ("a", "z", "Facebook")
    assert attribute("https://shop.example/p/1", UTM, CLICKS) == {}


# --- referer parsing ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def db() -> RefererDb:
    return RefererDb.load(BUNDLED)


@pytest.mark.parametrize(("referrer", "want"), [
    # referer-parser's own README example
    ("http://www.google.com/search?q=gateway+oracle+cards+denise+linn&hl=en&client=safari",
     ("search", "Google", "gateway oracle cards denise linn")),
    ("https://www.google.co.uk/", ("search", "Google", None)),
    ("https://www.bing.com/search?q=fresh+bread&form=QBLH", ("search", "Bing", "fresh bread")),
    ("https://duckduckgo.com/?q=oat+milk", ("search", "DuckDuckGo", "oat milk")),
    ("https://l.facebook.com/l.php?u=x", ("social", "Facebook", None)),
    ("https://t.co/abc", ("social", "Twitter", None)),
    ("https://mail.google.com/mail/u/0/", ("email", "Gmail", None)),
    ("https://blog.unknown-site.example/post", ("unknown", None, None)),
    ("https://shop.example/basket", ("internal", None, None)),        # the page's own host
    ("https://help.grocer.example/faq", ("internal", None, None)),    # a configured domain
])
def test_referers(db: RefererDb, referrer: str, want: tuple[str | None, ...]) -> None:
    got = parse(referrer, "https://shop.example/p/1", db, ("grocer.example",))
    assert got is not None
    assert (got["refr_medium"], got["refr_source"], got["refr_term"]) == want


def test_no_or_non_http_referer_fills_nothing(db: RefererDb) -> None:
    assert parse("android-app://com.google.android.gm", None, db, ()) is None
    assert parse("not a url", None, db, ()) is None


def test_a_broken_referer_database_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "refs.yaml"
    bad.write_text("paid: {X: {domains: [x.example]}}\n")
    with pytest.raises(ConfigError, match="unknown medium"):
        chain(referer_parser={"enabled": True, "database": str(bad)})


# --- user-agent parsing --------------------------------------------------------------------

def test_ua_parser_context_as_snowplow_fills_it() -> None:
    context, legacy = parse_ua(CHROME_MAC)
    assert context == {
        "useragentFamily": "Chrome", "useragentMajor": "33", "useragentMinor": "0",
        "useragentPatch": "1750", "useragentVersion": "Chrome 33.0.1750",
        "osFamily": "Mac OS X", "osMajor": "10", "osMinor": "9", "osPatch": "2",
        "osPatchMinor": None, "osVersion": "Mac OS X 10.9.2", "deviceFamily": "Mac"}
    assert legacy == {"br_family": "Chrome", "br_name": "Chrome 33", "br_version": "33.0.1750",
                      "os_family": "Mac OS X", "os_name": "Mac OS X 10",
                      "dvce_type": "Computer", "dvce_ismobile": False}


def test_ua_parser_context_validates_against_snowplows_schema(resolver: Resolver) -> None:
    from sidecar.snowplow.iglu import SchemaKey

    for ua in (CHROME_MAC, IPHONE, "", "curl/8.0", "\x00\ud800"):
        context, _ = parse_ua(ua)
        assert resolver.validate(SchemaKey.parse(UA_SCHEMA), context, "$") == []


def test_mobile_user_agent() -> None:
    context, legacy = parse_ua(IPHONE)
    assert (context["useragentFamily"], context["osFamily"], context["deviceFamily"]) == \
        ("Mobile Safari", "iOS", "iPhone")
    assert (legacy["dvce_type"], legacy["dvce_ismobile"]) == ("Mobile", True)


def test_ua_step_adds_a_derived_context_and_legacy_columns_on_demand() -> None:
    payload: dict[str, Any] = {"useragent": IPHONE, "derived_contexts": []}
    assert chain(ua_parser={"enabled": True, "legacy_columns": False}).apply(payload, {}) is None
    assert [c["schema"] for c in payload["derived_contexts"]] == [UA_SCHEMA]
    assert "br_family" not in payload


# --- event fingerprint -----------------------------------------------------------------------

def test_fingerprint_is_md5_of_sorted_names_and_values_minus_excluded() -> None:
    params = {"e": "pv", "eid": "e-1", "stm": "1", "url": "https://a.example/", "aid": "shop"}
    want = hashlib.md5(b"aidshopepvurlhttps://a.example/").hexdigest()
    assert fingerprint(params, frozenset({"stm", "eid"}), "MD5") == want
    # a retry (new stm) has the same fingerprint; another event does not
    assert fingerprint({**params, "stm": "2"}, frozenset({"stm", "eid"}), "MD5") == want
    assert fingerprint({**params, "e": "se"}, frozenset({"stm", "eid"}), "MD5") != want
    assert len(fingerprint(params, frozenset(), "SHA-256")) == 64


# --- PII pseudonymisation ------------------------------------------------------------------

def test_pseudonym_is_hmac_sha256_hex() -> None:
    # RFC 4231, test case 2
    assert pseudonym(b"Jefe", "what do ya want for nothing?") == \
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_pii_fields_and_json_paths() -> None:
    step = chain(pii={"enabled": True, "fields": ["user_id", "se_label"], "json_fields": [
        {"field": "unstruct_event", "schema_criterion": "iglu:com.acme/signup/jsonschema/1-*-*",
         "json_path": "$.customer.email"},
        {"field": "contexts", "schema_criterion": "iglu:com.acme/user/*",
         "json_path": "$.email"}]})
    unstruct = {"schema": "iglu:com.acme/signup/jsonschema/1-0-2",
                "data": {"customer": {"email": "a@b.example"}, "n": 1}}
    contexts = [{"schema": "iglu:com.acme/user/jsonschema/1-0-0", "data": {"email": "c@d.e"}},
                {"schema": "iglu:com.acme/other/jsonschema/1-0-0", "data": {"email": "x"}}]
    payload: dict[str, Any] = {"user_id": "user-7", "se_label": None, "unstruct_event": unstruct,
                               "contexts": contexts}
    assert step.apply(payload, {}) is None

    def h(v: str) -> str:
        return hmac.new(b"test-key", v.encode(), hashlib.sha256).hexdigest()

    assert payload["user_id"] == h("user-7") and payload["se_label"] is None
    assert payload["unstruct_event"]["data"] == {"customer": {"email": h("a@b.example")}, "n": 1}
    assert payload["contexts"][0]["data"]["email"] == h("c@d.e")
    assert payload["contexts"][1]["data"]["email"] == "x"
    assert unstruct["data"]["customer"]["email"] == "a@b.example"   # inputs untouched


def test_pii_key_only_from_the_environment() -> None:
    with pytest.raises(ConfigError, match="CONVEYOR_SNOWPLOW_PII_KEY"):
        build_enrichments(EnrichmentsSettings.model_validate(
            {"pii": {"enabled": True, "fields": ["user_id"]}}), environ={})
    with pytest.raises(ValueError, match="cannot be pseudonymised"):
        EnrichmentsSettings.model_validate({"pii": {"fields": ["event_id"]}})


# --- IP lookup ------------------------------------------------------------------------------

def write_mmdb(path: Path) -> Path:
    w = MMDBWriter(ip_version=6, database_type="GeoIP2-City", languages=["en"],
                   description="test", ipv4_compatible=True)
    w.insert_network(IPSet(["81.2.69.0/24"]), {
        "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
        "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
        "city": {"names": {"en": "London"}}, "postal": {"code": "SW1A"},
        "location": {"latitude": 51.5142, "longitude": -0.0931, "time_zone": "Europe/London"}})
    w.to_db_file(str(path))
    return path


def test_ip_lookup_fills_geo_before_anonymisation(tmp_path: Path) -> None:
    db = write_mmdb(tmp_path / "city.mmdb")
    step = chain(ip_lookup={"enabled": True, "database": str(db)}, anon_ip={"enabled": True})
    payload: dict[str, Any] = {"user_ipaddress": "81.2.69.160"}
    assert step.apply(payload, {}) is None
    assert payload == {"user_ipaddress": "81.2.69.x", "geo_country": "GB", "geo_region": "ENG",
                       "geo_city": "London", "geo_zipcode": "SW1A", "geo_latitude": 51.5142,
                       "geo_longitude": -0.0931, "geo_region_name": "England",
                       "geo_timezone": "Europe/London"}
    other: dict[str, Any] = {"user_ipaddress": "192.0.2.1"}
    assert step.apply(other, {}) is None and other == {"user_ipaddress": "192.0.2.x"}


def test_check_says_whether_the_database_is_configured_and_readable(tmp_path: Path) -> None:
    assert describe(None) == (True, "ip_lookup: off (no MaxMind database configured; "
                                    "geo_* stay empty)")
    ok, line = describe(write_mmdb(tmp_path / "city.mmdb"))
    assert ok and line.startswith("ip_lookup: ok") and "GeoIP2-City" in line
    (tmp_path / "junk.mmdb").write_bytes(b"not a database")
    ok, line = describe(tmp_path / "junk.mmdb")
    assert not ok and line.startswith("ip_lookup: FAIL")
    ok, line = describe(tmp_path / "missing.mmdb")
    assert not ok and "missing.mmdb" in line


# --- the chain in the core -------------------------------------------------------------------

def _core(resolver: Resolver, enrichments: Enrichments) -> CollectorCore:
    return CollectorCore(resolver, Router([], "events"), "bad", enrichments=enrichments)


def test_core_fills_enriched_fields(resolver: Resolver, capture) -> None:  # type: ignore[no-untyped-def]
    tracker, em = capture()
    tracker.set_subject(Subject().set_useragent(IPHONE).set_ip_address("203.0.113.57"))
    tracker.track(PageView(page_url="https://shop.example/p?utm_source=news&gclid=g1",
                           referrer="https://www.bing.com/search?q=bread"))
    out = _core(resolver, chain(**ALL_ON)).process(post(tp2_body(em.events))).outputs
    p = json.loads(out[0].value)["payload"]
    assert (p["user_ipaddress"], p["mkt_source"], p["mkt_clickid"], p["mkt_network"]) == \
        ("203.0.113.x", "news", "g1", "Google")
    assert (p["refr_medium"], p["refr_source"], p["refr_term"]) == ("search", "Bing", "bread")
    assert (p["br_family"], p["os_family"], p["dvce_type"]) == ("Mobile Safari", "iOS", "Mobile")
    assert [c["schema"] for c in p["derived_contexts"]] == [UA_SCHEMA]
    assert len(p["event_fingerprint"]) == 32


def test_a_failing_enrichment_is_a_bad_row_naming_it(resolver: Resolver, capture) -> None:  # type: ignore[no-untyped-def]
    def boom(_payload: Any, _params: Any) -> None:
        raise RuntimeError("database gone")

    tracker, em = capture()
    tracker.track(PageView(page_url="https://shop.example/"))
    tracker.track(StructuredEvent(category="c", action="a"))
    core = _core(resolver, Enrichments([*chain(**ALL_ON).steps, ("ip_lookup", boom)]))
    out = core.process(post(tp2_body(em.events))).outputs
    assert [o.outcome for o in out] == ["bad", "bad"]
    row = json.loads(out[0].value)
    assert row["schema"] == "iglu:com.conveyor.snowplow/bad_row/jsonschema/1-0-2"
    assert (row["data"]["check"], row["data"]["reason"]) == ("enrichment_failures", "ip_lookup")
    assert "database gone" in row["data"]["message"]
    assert row["data"]["event_id"] == em.events[0]["eid"]
    assert json.loads(row["data"]["original"]["data"])["eid"] == em.events[0]["eid"]
    # and the bad row is valid against its own schema
    from sidecar.snowplow.iglu import SchemaKey
    assert resolver.validate(SchemaKey.parse(row["schema"]), row["data"], "$") == []


def test_no_enrichments_leaves_the_payload_as_before(resolver: Resolver, capture) -> None:  # type: ignore[no-untyped-def]
    tracker, em = capture()
    tracker.track(PageView(page_url="https://shop.example/?utm_source=x"))
    plain = CollectorCore(resolver, Router([], "events"), "bad")
    off = _core(resolver, chain())
    a = json.loads(plain.process(post(tp2_body(em.events))).outputs[0].value)["payload"]
    b = json.loads(off.process(post(tp2_body(em.events))).outputs[0].value)["payload"]
    a.pop("network_userid"), b.pop("network_userid")   # a new cookie per request
    assert a == b and "mkt_source" not in a


def test_enrich_check_reports_enrichments_and_the_maxmind_database(tmp_path: Path,
                                                                    monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sidecar.snowplow.enrich.cli import check_enrichments
    from sidecar.snowplow.settings import settings_from_dict

    def check(section: dict[str, Any]) -> tuple[bool, list[str]]:
        lines: list[str] = []
        ok = check_enrichments(settings_from_dict({"enrichments": section}, tmp_path),
                               lines.append)
        return ok, lines

    assert check({}) == (True, ["ip_lookup: off (no MaxMind database configured; geo_* stay "
                                "empty)", "enrichments: none enabled"])
    write_mmdb(tmp_path / "city.mmdb")
    ok, lines = check({"ip_lookup": {"enabled": True, "database": "city.mmdb"},
                       "ua_parser": {"enabled": True}})
    assert ok and lines[0].startswith("ip_lookup: ok") and lines[1] == \
        "enrichments: ip_lookup, ua_parser"
    ok, lines = check({"ip_lookup": {"enabled": True, "database": "gone.mmdb"}})
    assert not ok and lines[0].startswith("ip_lookup: FAIL")
    monkeypatch.delenv("CONVEYOR_SNOWPLOW_PII_KEY", raising=False)
    ok, lines = check({"pii": {"enabled": True, "fields": ["user_id"]}})
    assert not ok and "CONVEYOR_SNOWPLOW_PII_KEY is not set" in lines[-1]
