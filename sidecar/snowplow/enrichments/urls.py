"""Cheap URL pieces for the enrichments that read page and referer URLs on every event.

``urllib.parse`` splits the whole URL and decodes every parameter; the enrichments need
only the host of an http(s) URL and a few named parameters, so these do just that, with
``urllib.parse`` as the fallback for what they do not handle (bracketed IPv6 hosts).
"""

from __future__ import annotations

from urllib.parse import unquote_plus, urlsplit

# Parameters beyond this many are not looked at: bounded work for a hostile URL.
MAX_PARAMS = 200


def http_host(url: str) -> tuple[str, str] | None:
    """(lower-case host, querystring) of an http(s) URL, else None."""
    if "\t" in url or "\r" in url or "\n" in url:   # dropped, as browsers and urllib do
        url = url.replace("\t", "").replace("\r", "").replace("\n", "")
    head = url[:8].lower()
    if head.startswith("https://"):
        rest = url[8:]
    elif head.startswith("http://"):
        rest = url[7:]
    else:
        return None
    end = len(rest)
    for sep in "/?#":
        i = rest.find(sep)
        if i != -1 and i < end:
            end = i
    netloc = rest[:end]
    if "[" in netloc:   # an IPv6 literal: leave it to the standard parser
        try:
            parts = urlsplit(url.strip())
            host = parts.hostname
        except ValueError:
            return None
        return (host, parts.query) if host else None
    host = netloc.rpartition("@")[2].partition(":")[0].lower().rstrip(".")
    if not host or " " in host or "\\" in host:
        return None
    return host, query_of(rest[end:])


def query_of(tail: str) -> str:
    """The querystring of what follows a URL's host (path, ?query, #fragment)."""
    before_fragment = tail.partition("#")[0]
    q = before_fragment.find("?")
    return "" if q == -1 else before_fragment[q + 1:]


def params(query: str, wanted: frozenset[str]) -> dict[str, str]:
    """The first non-empty value of each wanted parameter, URL-decoded."""
    out: dict[str, str] = {}
    if not query:
        return out
    for pair in query.split("&", MAX_PARAMS)[:MAX_PARAMS]:
        name, _, value = pair.partition("=")
        if name in wanted and value and name not in out:
            decoded = unquote_plus(value)
            if decoded:
                out[name] = decoded
    return out
