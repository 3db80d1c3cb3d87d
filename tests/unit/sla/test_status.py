"""The status page and summary over a fake Prometheus API (httpx.MockTransport): what each
path's verdict is, that the page renders whatever Prometheus returns (and when it cannot be
read), escapes what it shows, and is served next to /health without endangering it."""

from __future__ import annotations

import json
import math

import httpx
from hypothesis import given
from hypothesis import strategies as st

from sidecar.common.ops import OpsServer
from sla import status

NOW = 1_800_000_000.0


def fake_prometheus(instant: dict[str, list[tuple[dict[str, str], float]]],
                    ranges: dict[str, list[tuple[dict[str, str], list[tuple[float, float]]]]]
                    | None = None, fail: bool = False) -> status.Prometheus:
    def handle(request: httpx.Request) -> httpx.Response:
        if fail:
            raise httpx.ConnectError("connection refused", request=request)
        q = request.url.params["query"]
        if request.url.path.endswith("query_range"):
            data = [{"metric": m, "values": [[t, str(v)] for t, v in vs]}
                    for m, vs in (ranges or {}).get(q, [])]
        else:
            data = [{"metric": m, "value": [NOW, str(v)]} for m, v in instant.get(q, [])]
        return httpx.Response(200, json={"status": "success",
                                         "data": {"resultType": "vector", "result": data}})
    client = httpx.Client(base_url="http://prom", transport=httpx.MockTransport(handle))
    return status.Prometheus("http://prom", client=client)


HEALTHY = {
    status.Q_CANARY_INFO: [({"path": "rabbitmq", "table": "rabbitmq_robot_telemetry"}, 1.0),
                           ({"path": "snowplow", "table": "snowplow_struct"}, 1.0)],
    status.Q_CANARY_AGE: [({"path": "rabbitmq"}, 3.0), ({"path": "snowplow"}, 400.0)],
    status.Q_CANARY_MISSING: [({"path": "rabbitmq"}, 120.0), ({"path": "snowplow"}, 120.0)],
    status.Q_CANARY_P99: [({"path": "rabbitmq"}, 1.5), ({"path": "snowplow"}, float("nan"))],
    status.Q_CANARY_LOST: [({"path": "rabbitmq"}, 0.0)],
    status.Q_SINK_LAG: [({"connector": "warehouse-<b>x</b>"}, 2.0)],
    status.Q_SINK_RECORDS: [({"connector": "warehouse-<b>x</b>"}, 7.0)],
    status.Q_SINK_FAILED: [({"connector": "warehouse-<b>x</b>"}, 1.0)],
    status.Q_TABLE_FRESH: [({"table": "rabbitmq_robot_telemetry"}, 3.0)],
    status.Q_TABLE_P99: [({"table": "rabbitmq_robot_telemetry"}, 1.2)],
    status.Q_FIRING: [({"alertname": "ConveyorCanaryMissing", "severity": "page",
                        "path": "snowplow"}, 1.0)],
}


def test_verdicts_follow_the_canaries_and_the_promise() -> None:
    s = status.collect(fake_prometheus(HEALTHY), NOW, history=False)
    by_path = {p.path: p for p in s.paths}
    assert by_path["rabbitmq"].verdict == "OK"
    assert by_path["snowplow"].verdict == "MISSING"     # 400 s > its 120 s threshold
    assert by_path["snowplow"].canary_p99_s is None     # NaN (no canary in 15 min) dropped
    assert status.worst(s.paths) == "MISSING"
    late = status.PathStatus("p", "t", 1.0, 120.0, status.PROMISE_S + 1, 0.0)
    assert late.verdict == "LATE"
    assert status.PathStatus("p", "t", 1.0, 120.0, 1.0, 2.0).verdict == "LOSING"
    assert status.PathStatus("p", "t", None, None, None, 0.0).verdict == "NO DATA"


def test_page_shows_every_path_sink_table_and_alert_escaped() -> None:
    history = {status.Q_CANARY_P99: [({"path": "rabbitmq"}, [(NOW - 120, 1.0),
                                                             (NOW - 60, 2.0), (NOW, 1.5)])]}
    s = status.collect(fake_prometheus(HEALTHY, history), NOW)
    page = status.render_html(s, "http://127.0.0.1:9090")
    for text in ("rabbitmq_robot_telemetry", "snowplow_struct", "ConveyorCanaryMissing",
                 "warehouse-&lt;b&gt;x&lt;/b&gt;", "<svg", "MISSING", "OK"):
        assert text in page, text
    assert "<b>x</b>" not in page
    assert "class='FAILED'>1<" in page


def test_summary_is_one_line_per_thing_and_names_the_page() -> None:
    s = status.collect(fake_prometheus(HEALTHY), NOW, history=False)
    text = status.render_text(s, "http://127.0.0.1:9103/status")
    assert "path  rabbitmq" in text and "OK" in text and "1.5 s" in text
    assert "1 FAILED task(s)" in text
    assert "alerts firing: ConveyorCanaryMissing" in text
    assert text.endswith("status page: http://127.0.0.1:9103/status")


def test_prometheus_down_is_said_not_raised() -> None:
    s = status.collect(fake_prometheus({}, fail=True), NOW)
    assert s.error is not None and "Prometheus cannot be read" in s.error
    assert "Prometheus cannot be read" in status.render_html(s)
    assert "Prometheus cannot be read" in status.render_text(s)


@given(st.lists(st.tuples(st.floats(allow_nan=True, allow_infinity=True),
                          st.floats(allow_nan=True, allow_infinity=True)), max_size=30),
       st.one_of(st.none(), st.floats(min_value=0, max_value=1e6)))
def test_sparkline_never_raises_and_is_svg_or_says_none(
        series: list[tuple[float, float]], limit: float | None) -> None:
    clean = [(t, v) for t, v in series if math.isfinite(t)]
    out = status.sparkline(clean, limit=limit)
    assert out.startswith("<svg") or "no history" in out
    assert "nan" not in out.lower().replace("span", "")


@given(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=False)))
def test_duration_never_raises(seconds: float | None) -> None:
    assert isinstance(status.duration(seconds), str)


def test_the_page_is_served_beside_health_and_a_broken_page_spares_health() -> None:
    calls: list[str] = []

    def broken() -> tuple[str, bytes]:
        calls.append("x")
        raise RuntimeError("boom")

    ok_page = status.page(fake_prometheus(HEALTHY), "http://prom", clock=lambda: NOW)
    server = OpsServer("127.0.0.1", 0, lambda: {"up": True},
                       pages={"/status": ok_page, "/broken": broken}).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        r = httpx.get(f"{base}/status")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "rabbitmq_robot_telemetry" in r.text
        b = httpx.get(f"{base}/broken")
        assert b.status_code == 500 and "boom" in b.text and calls == ["x"]
        h = httpx.get(f"{base}/health")
        assert h.status_code == 200 and json.loads(h.text)["status"] == "ok"
        assert httpx.get(f"{base}/nothing").status_code == 404
    finally:
        server.stop()
