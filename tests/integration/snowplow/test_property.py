"""Random payloads: never a 5xx while Kafka is up, and good + bad = sent, exactly.

Each example is one request: a tp2 POST of a batch mixing plausible and broken events, a
pixel GET, or a body of arbitrary bytes under an arbitrary content type. Every event sent
must come back as exactly one good event or one bad row; a request that cannot be split
into events counts as one.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import CollectorProcess
from .helpers import good_events, landed

pytestmark = pytest.mark.integration

TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0"
PARAMS = ["aid", "p", "dtm", "stm", "ttm", "tz", "uid", "duid", "url", "page", "refr",
          "se_ca", "se_ac", "se_la", "se_va", "lang", "res", "vp"]

text = st.text(max_size=30)
ts = st.one_of(st.integers(1_500_000_000_000, 1_900_000_000_000).map(str), text)
sdj_data = st.dictionaries(st.sampled_from(["order_id", "total", "currency", "items", "x"]),
                           st.one_of(st.integers(-5, 5), st.floats(allow_nan=False), text,
                                     st.just("EUR")), max_size=5)


@st.composite
def event(draw: st.DrawFn) -> dict[str, Any]:
    e: dict[str, Any] = {"e": draw(st.sampled_from(["pv", "se", "ue", "pp", "tr", "zz", ""])),
                         "tv": draw(st.sampled_from(["py-1.1.0", "js-3.0", ""])),
                         "p": draw(st.sampled_from(["web", "mob", "srv"]))}
    for key in draw(st.lists(st.sampled_from(PARAMS), max_size=6, unique=True)):
        e[key] = draw(ts if key in ("dtm", "stm", "ttm") else text)
    if e["e"] == "ue" or draw(st.booleans()):
        ue = {"schema": "iglu:com.snowplowanalytics.snowplow/unstruct_event/jsonschema/1-0-0",
              "data": {"schema": draw(st.sampled_from([ORDER, "iglu:com.acme/x/jsonschema/1-0-0",
                                                       "nonsense"])),
                       "data": draw(sdj_data)}}
        raw = json.dumps(ue).encode()
        e["ue_px"] = draw(st.sampled_from([
            base64.urlsafe_b64encode(raw).decode(),
            base64.urlsafe_b64encode(raw).decode().rstrip("="),
            "%%not-base64", base64.b64encode(b"{broken").decode()]))
    if draw(st.booleans()):
        e["junk_param"] = draw(text)           # not a tracker parameter
    if draw(st.integers(0, 9)) == 0:
        e["dtm"] = draw(st.integers())         # not a string (and maybe past 64 bits)
    if draw(st.integers(0, 9)) == 0:
        e["page"] = "lone \ud800 surrogate"  # valid JSON, not valid Unicode
    return e


request = st.one_of(
    st.tuples(st.just("post"), st.lists(event(), min_size=1, max_size=8)),
    st.tuples(st.just("get"), event()),
    st.tuples(st.just("raw"), st.tuples(st.binary(max_size=300),
                                        st.sampled_from(["application/json", "text/plain",
                                                         "application/octet-stream",
                                                         "application/json; charset=utf-8"]))),
)


def test_random_payloads(collector: Callable[..., CollectorProcess],
                         kafka_bootstrap: str) -> None:
    c = collector()
    sent = {"units": 0, "requests": 0}
    statuses: list[int] = []
    client = httpx.Client(base_url=c.url, timeout=30)

    @settings(max_examples=120, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(req=request, fresh_ids=st.lists(st.booleans(), min_size=8, max_size=8))
    def one(req: tuple[str, Any], fresh_ids: list[bool]) -> None:
        kind, value = req
        if kind == "post":
            # Every event gets a never-seen eid (or a broken one) so none is a duplicate.
            events = [{**e, "eid": str(uuid.uuid4()) if fresh else "not-a-uuid"}
                      for e, fresh in zip(value, fresh_ids, strict=False)]
            r = client.post(TP2, content=json.dumps({"schema": PAYLOAD_DATA, "data": events}),
                            headers={"Content-Type": "application/json"})
            sent["units"] += len(events)
        elif kind == "get":
            params = {k: str(v) for k, v in {**value, "eid": str(uuid.uuid4())}.items()}
            r = client.get("/i", params=urlencode(params, errors="surrogatepass"))
            sent["units"] += 1
        else:
            body, ctype = value
            r = client.post(TP2, content=body, headers={"Content-Type": ctype})
            sent["units"] += 1
        sent["requests"] += 1
        statuses.append(r.status_code)
        assert r.status_code < 500, r.text

    try:
        one()
    finally:
        client.close()
    assert set(statuses) == {200}
    found = landed(kafka_bootstrap, c.topics)
    good, bad = len(good_events(found)), len(found["bad"])
    assert good + bad == sent["units"], (good, bad, sent)
    assert good > 0 and bad > 0
