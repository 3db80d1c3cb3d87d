"""Network user id, the cookie, SP-Anonymous, client IP and CORS."""

from __future__ import annotations

import pytest

from sidecar.snowplow.identity import (
    ANONYMOUS_NUID,
    CookieConfig,
    client_ip,
    cookie_domain,
    cors_headers,
    parse_cookies,
    preflight_headers,
    resolve_identity,
)

NOW = 1_700_000_000_000
CFG = CookieConfig()


def _new() -> str:
    return "11111111-1111-4111-8111-111111111111"


class TestNetworkUserId:
    def test_nuid_parameter_beats_the_cookie(self) -> None:
        ident = resolve_identity({"nuid": "from-query"}, {"cookie": "sp=from-cookie"}, CFG, NOW)
        assert (ident.network_userid, ident.source) == ("from-query", "query")
        assert ident.set_cookie is not None and ident.set_cookie.startswith("sp=from-query;")

    def test_cookie_when_no_parameter(self) -> None:
        ident = resolve_identity({}, {"cookie": "other=1; sp=abc-123; x=y"}, CFG, NOW)
        assert (ident.network_userid, ident.source) == ("abc-123", "cookie")

    def test_new_id_when_neither_and_it_is_set_back(self) -> None:
        ident = resolve_identity({}, {}, CFG, NOW, new_id=_new)
        assert (ident.network_userid, ident.source) == (_new(), "new")
        assert ident.set_cookie is not None and _new() in ident.set_cookie

    def test_cookie_name_is_configurable(self) -> None:
        cfg = CookieConfig(name="grocer_id")
        ident = resolve_identity({}, {"cookie": "sp=no; grocer_id=yes"}, cfg, NOW)
        assert ident.network_userid == "yes"
        assert ident.set_cookie is not None and ident.set_cookie.startswith("grocer_id=yes;")

    def test_a_value_we_could_not_have_set_is_replaced(self) -> None:
        ident = resolve_identity({}, {"cookie": "sp=<script>"}, CFG, NOW, new_id=_new)
        assert ident.network_userid == _new()

    def test_disabled_cookie_is_neither_read_nor_set(self) -> None:
        ident = resolve_identity({}, {"cookie": "sp=abc"}, CookieConfig(enabled=False), NOW,
                                 new_id=_new)
        assert (ident.network_userid, ident.set_cookie) == (_new(), None)

    def test_sp_anonymous_suppresses_cookie_and_id(self) -> None:
        ident = resolve_identity({"nuid": "q"}, {"sp-anonymous": "*", "cookie": "sp=abc"},
                                 CFG, NOW)
        assert (ident.network_userid, ident.source, ident.set_cookie) == (
            ANONYMOUS_NUID, "anonymous", None)


class TestSetCookie:
    def test_attributes(self) -> None:
        value = resolve_identity({}, {}, CFG, NOW, new_id=_new).set_cookie
        assert value is not None
        parts = value.split("; ")
        assert parts[0] == f"sp={_new()}"
        assert "Expires=Wed, 13 Nov 2024 22:13:20 GMT" in parts   # NOW + 365 days
        assert f"Max-Age={365 * 86400}" in parts
        assert {"Path=/", "SameSite=None", "Secure", "HttpOnly"} <= set(parts)
        assert not any(p.startswith("Domain=") for p in parts)

    def test_insecure_lax_for_local_http(self) -> None:
        cfg = CookieConfig(secure=False, http_only=False, same_site="Lax", expiration_s=60)
        value = resolve_identity({}, {}, cfg, NOW, new_id=_new).set_cookie
        assert value is not None
        assert "Secure" not in value and "HttpOnly" not in value
        assert "SameSite=Lax" in value and "Max-Age=60" in value

    def test_domain_from_origin(self) -> None:
        cfg = CookieConfig(domains=("grocer.example", "other.example"))
        value = resolve_identity({}, {"origin": "https://www.grocer.example"}, cfg, NOW).set_cookie
        assert value is not None and "Domain=grocer.example" in value


class TestCookieDomain:
    DOMAINS = ("grocer.example", "shop.example")

    @pytest.mark.parametrize("origin,expected", [
        ("https://grocer.example", "grocer.example"),
        ("https://app.grocer.example:8443", "grocer.example"),
        ("https://shop.example https://x.test", "shop.example"),
        ("https://evilgrocer.example", "fallback.example"),
        ("null", "fallback.example"),
        (None, "fallback.example"),
    ])
    def test_matching(self, origin: str | None, expected: str) -> None:
        assert cookie_domain(origin, self.DOMAINS, "fallback.example") == expected

    def test_no_domains_no_fallback(self) -> None:
        assert cookie_domain("https://grocer.example", (), None) is None


class TestRequestFacts:
    def test_cookie_parsing_is_lenient(self) -> None:
        assert parse_cookies('a=1; broken; sp="quoted"; a=2') == {"a": "1", "sp": "quoted"}
        assert parse_cookies(None) == {}

    def test_ip_from_forwarded_for_first_hop(self) -> None:
        h = {"x-forwarded-for": "203.0.113.9, 10.0.0.2"}
        assert client_ip("10.0.0.2", h, True, False) == "203.0.113.9"
        assert client_ip("10.0.0.2", h, False, False) == "10.0.0.2"
        assert client_ip("10.0.0.2", {}, True, False) == "10.0.0.2"

    def test_no_ip_when_anonymous(self) -> None:
        assert client_ip("10.0.0.2", {"x-forwarded-for": "203.0.113.9"}, True, True) is None

    def test_cors_echoes_origin_with_credentials(self) -> None:
        assert cors_headers("https://shop.example") == {
            "Access-Control-Allow-Origin": "https://shop.example",
            "Access-Control-Allow-Credentials": "true"}
        assert cors_headers(None)["Access-Control-Allow-Origin"] == "*"

    def test_preflight(self) -> None:
        h = preflight_headers("https://shop.example", 600)
        assert h["Access-Control-Allow-Origin"] == "https://shop.example"
        assert "SP-Anonymous" in h["Access-Control-Allow-Headers"]
        assert h["Access-Control-Max-Age"] == "600"
