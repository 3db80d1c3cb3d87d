"""Hostile requests against the running collector and enrich: never a 5xx, every request
accounted for in raw and then in good or bad, and valid traffic unharmed beside a poison
client.

The corpus holds what broke the collector when it parsed bodies itself (deep JSON, broken
gzip, NUL and control-character bodies, a gzip bomb, ``ue_pr`` nested thousands deep,
``se_va=1e999999``) plus random bytes, every wrong content type, and bodies at each size
limit. A Hypothesis property sends generated hostile requests of the same families.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.committed import consume_committed
from sidecar.snowplow.raw import RawPayload

from .conftest import CollectorProcess, wait_until
from .helpers import good_events, landed

pytestmark = pytest.mark.integration

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
UE = "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0"
JSON = "application/json"
MAX_BODY = 65_536
DEEP = "[" * 3000 + "]" * 3000


def _event(**extra: str) -> dict[str, str]:
    return {"e": "pv", "tv": "py-1.0", "p": "web", "eid": str(uuid.uuid4()),
            "url": "https://shop.example/", **extra}


def _batch(events: list[dict[str, str]]) -> bytes:
    return json.dumps({"schema": PAYLOAD_DATA, "data": events}).encode()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def corpus() -> list[tuple[str, str, bytes, dict[str, str], int, int]]:
    """(name, method, body or query, headers, expected status, expected outputs)."""
    good = [_event() for _ in range(3)]
    many = [_event(page="p" * 200) for _ in range(400)]     # ~130 KB: split in three
    cases: list[tuple[str, str, bytes, dict[str, str], int, int]] = [
        ("gzip", "POST", gzip.compress(_batch(good[:2])),
         {"Content-Type": JSON, "Content-Encoding": "gzip"}, 200, 2),
        ("deflate", "POST", zlib.compress(_batch(good[2:])),
         {"Content-Type": JSON, "Content-Encoding": "deflate"}, 200, 1),
        ("split", "POST", _batch(many), {"Content-Type": JSON}, 200, 400),
        ("broken gzip", "POST", b"\x1f\x8b\x08\x00" + b"\xff" * 500,
         {"Content-Type": JSON, "Content-Encoding": "gzip"}, 200, 1),
        ("truncated gzip", "POST", gzip.compress(_batch([_event()]))[:-20],
         {"Content-Type": JSON, "Content-Encoding": "gzip"}, 200, 1),
        ("unknown encoding", "POST", b"{}", {"Content-Type": JSON, "Content-Encoding": "br"},
         200, 1),
        ("gzip bomb", "POST", gzip.compress(b" " * (32 * 1_048_576)),
         {"Content-Type": JSON, "Content-Encoding": "gzip"}, 200, 1),
        ("deep body", "POST", DEEP.encode(), {"Content-Type": JSON}, 200, 1),
        ("deep ue_pr", "POST", _batch([_event(e="ue", ue_pr=DEEP)]), {"Content-Type": JSON},
         200, 1),
        ("deep ue_px", "POST", _batch([_event(e="ue", ue_px=_b64(DEEP))]),
         {"Content-Type": JSON}, 200, 1),
        ("deep co", "POST", _batch([_event(co=DEEP)]), {"Content-Type": JSON}, 200, 1),
        ("deep cx", "POST", _batch([_event(cx=_b64(DEEP))]), {"Content-Type": JSON}, 200, 1),
        ("deep inside ue", "POST", _batch([_event(e="ue", ue_pr=json.dumps(
            {"schema": UE, "data": json.loads("[" * 500 + "]" * 500)}))]),
         {"Content-Type": JSON}, 200, 1),
        ("control characters", "POST", b"\x01\x02\x03" * 70_000, {"Content-Type": JSON},
         200, 1),
        ("NUL bytes", "POST", b"\x00" * 1_258_291, {"Content-Type": JSON}, 200, 1),
        ("NUL bytes under hard limit", "POST", b"\x00" * 900_000, {"Content-Type": JSON},
         200, 1),
        ("just under max body", "POST", b"x" * (MAX_BODY - 1), {"Content-Type": JSON}, 200, 1),
        ("just over max body", "POST", b"x" * (MAX_BODY + 1), {"Content-Type": JSON}, 200, 1),
        ("empty body", "POST", b"", {"Content-Type": JSON}, 200, 1),
        ("lone surrogate", "POST", b'{"schema":"' + PAYLOAD_DATA.encode() +
         b'","data":[{"e":"pv","tv":"t","p":"web","eid":"' + str(uuid.uuid4()).encode() +
         b'","page":"\\ud800"}]}',
         {"Content-Type": JSON}, 200, 1),
        ("se_va infinite", "GET", f"e=se&tv=t&p=web&se_ca=c&se_ac=a&se_va=1e999999&eid="
         f"{uuid.uuid4()}".encode(), {}, 200, 1),
        ("garbage query", "GET", b"%ZZ&&==%&e", {}, 200, 1),
        ("no query", "GET", b"", {}, 200, 1),
    ]
    for ctype in (["application/x-www-form-urlencoded", "application/octet-stream",
                               "text/plain", "text/html; charset=utf-8", "multipart/form-data",
                               "application/json; charset=latin-1", ""]):
        cases.append((f"content type {ctype!r}", "POST", _batch([_event()]),
                      {"Content-Type": ctype} if ctype else {}, 200, 1))
    for i in range(5):
        cases.append((f"random bytes {i}", "POST", uuid.uuid4().bytes * (i * 50 + 1),
                      {"Content-Type": JSON}, 200, 1))
    return cases


def _send(client: httpx.Client, method: str, body: bytes, headers: dict[str, str]
          ) -> httpx.Response:
    if method == "GET":
        return client.get(f"/i?{body.decode()}", headers=headers)
    return client.post(TP2, content=body, headers=headers)


def _rss(c: CollectorProcess) -> float:
    for line in httpx.get(f"{c.url}/metrics").text.splitlines():
        if line.startswith("process_resident_memory_bytes "):
            return float(line.split()[1])
    raise AssertionError("no process_resident_memory_bytes")


def test_hostile_corpus(collector: Callable[..., CollectorProcess], kafka_bootstrap: str) -> None:
    """Four rounds of the corpus (fresh event ids each round, so none is a duplicate)."""
    c = collector(http={"max_body_bytes": MAX_BODY})
    rounds = [corpus() for _ in range(4)]
    rss = []
    with httpx.Client(base_url=c.url, timeout=60) as client:
        for cases in rounds:
            for name, method, body, headers, status, _ in cases:
                r = _send(client, method, body, headers)
                assert r.status_code == status, (name, r.status_code, r.text)
            rss.append(_rss(c))
    # Memory flat: what the last three rounds sent did not stay in the collector.
    assert rss[-1] - rss[0] < 64 * 1_048_576, rss

    requests = len(rounds) * len(rounds[0])
    raw = consume_committed(kafka_bootstrap, c.topics["raw"], at_least=requests, timeout_s=120)
    ids = {RawPayload.from_record(m.headers(), m.value()).request_id for m in raw}
    assert len(ids) == requests                 # every request is in raw...
    found = landed(kafka_bootstrap, c.topics)
    good, bad = good_events(found), found["bad"]
    assert len(good) + len(bad) == sum(n for cases in rounds for *_, n in cases)  # ...then here
    landed_ids = Counter(e["event_id"] for e in good)
    assert set(landed_ids.values()) == {1}
    for cases in rounds:
        for name, _m, body, _h, _s, _n in cases[:3]:   # gzip, deflate, split: all good
            plain = (gzip.decompress(body) if name == "gzip" else
                     zlib.decompress(body) if name == "deflate" else body)
            for e in json.loads(plain)["data"]:
                assert landed_ids[e["eid"]] == 1, (name, e["eid"])
    reasons = Counter((d["data"]["check"], d["data"]["reason"]) for d in bad)
    # bomb, just over max body, control characters, both NUL bodies: per round
    assert reasons[("size", "request_too_large")] == 5 * len(rounds), reasons
    assert not [r for _, r in reasons if r == "unprocessable"], reasons
    se = [e for e in good if e["payload"].get("se_category") == "c"]
    assert len(se) == len(rounds) and all(e["payload"]["se_value"] is None for e in se)


def test_valid_traffic_beside_a_poison_client_sees_no_503(
        collector: Callable[..., CollectorProcess], kafka_bootstrap: str) -> None:
    """Eight clients of valid traffic and one sending 200 KB of control characters every
    100 ms (which made every group commit it joined fail, when its bad row was larger than
    Kafka's limit): no valid request sees a 503, and the poison is answered 200 as a size
    bad row each time."""
    c = collector(commit={"max_wait_ms": 20})
    stop = threading.Event()
    statuses: dict[str, Counter[int]] = {"valid": Counter(), "poison": Counter()}
    lock = threading.Lock()
    sent_ids: list[str] = []

    def valid(i: int) -> None:
        with httpx.Client(base_url=c.url, timeout=30) as client:
            while not stop.is_set():
                events = [_event() for _ in range(5)]
                r = client.post(TP2, content=_batch(events), headers={"Content-Type": JSON})
                with lock:
                    statuses["valid"][r.status_code] += 1
                    if r.status_code == 200:
                        sent_ids.extend(e["eid"] for e in events)

    def poison() -> None:
        with httpx.Client(base_url=c.url, timeout=30) as client:
            while not stop.wait(0.1):
                r = client.post(TP2, content=b"\x01" * 200_000, headers={"Content-Type": JSON})
                with lock:
                    statuses["poison"][r.status_code] += 1

    threads = [threading.Thread(target=valid, args=(i,), daemon=True) for i in range(8)]
    threads.append(threading.Thread(target=poison, daemon=True))
    for t in threads:
        t.start()
    wait_until(lambda: sum(statuses["poison"].values()) >= 30
               and sum(statuses["valid"].values()) >= 400, 120,
               "poison and valid traffic to overlap")
    stop.set()
    for t in threads:
        t.join(30)
    assert set(statuses["valid"]) == {200}, statuses
    assert set(statuses["poison"]) == {200}, statuses
    found = landed(kafka_bootstrap, c.topics)
    assert sorted(e["event_id"] for e in good_events(found)) == sorted(sent_ids)
    assert len(found["bad"]) == sum(statuses["poison"].values())


families = st.sampled_from(["bytes", "deep", "deep_ue", "batch", "nul"])


@st.composite
def hostile(draw: st.DrawFn) -> tuple[bytes, dict[str, str], int]:
    """(body, headers, outputs it must become)."""
    family = draw(families)
    n = 1
    if family == "bytes":
        body = draw(st.binary(max_size=2000))
    elif family == "deep":
        d = draw(st.integers(1, 5000))
        body = (draw(st.sampled_from(["[", '{"a":'])) * d).encode()
    elif family == "deep_ue":
        d = draw(st.integers(50, 3000))
        body = _batch([_event(e="ue", ue_pr="[" * d + "]" * d)])
    elif family == "batch":
        n = draw(st.integers(1, 20))
        body = _batch([_event(page=draw(st.text(max_size=50))) for _ in range(n)])
    else:
        body = b"\x00" * draw(st.integers(0, 300_000))
    enc = draw(st.sampled_from([None, "gzip", "deflate", "gzip-broken"]))
    headers = {"Content-Type": draw(st.sampled_from([JSON, "text/plain;charset=UTF-8",
                                                     "application/octet-stream"]))}
    if enc == "gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif enc == "deflate":
        body, headers["Content-Encoding"] = zlib.compress(body), "deflate"
    elif enc == "gzip-broken":
        body, headers["Content-Encoding"] = gzip.compress(body)[:-4] + b"\x00\x01", "gzip"
    if (headers["Content-Type"] == "application/octet-stream" or family != "batch"
            or enc == "gzip-broken"):
        n = 1   # the whole request is one bad row
    return body, headers, n


def test_hostile_property(collector: Callable[..., CollectorProcess],
                          kafka_bootstrap: str) -> None:
    c = collector()
    units = {"n": 0}
    client = httpx.Client(base_url=c.url, timeout=60)

    @settings(max_examples=80, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(req=hostile())
    def one(req: tuple[bytes, dict[str, str], int]) -> None:
        body, headers, n = req
        r = client.post(TP2, content=body, headers=headers)
        assert r.status_code == 200, (r.status_code, r.text)
        units["n"] += n

    try:
        one()
    finally:
        client.close()
    found = landed(kafka_bootstrap, c.topics)
    good, bad = len(good_events(found)), len(found["bad"])
    assert good + bad == units["n"], (good, bad, units)
    assert not [d for d in found["bad"] if d["data"]["reason"] == "unprocessable"]

