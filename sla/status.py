"""The SLA at a glance: a status page (``/status`` on the exporter) and a text summary
(``conveyor-sla --summary``, the end of ``make demo``), both from Prometheus.

Per path (each canary path: its table, the newest canary's age, the canaries' p99 publish
to row and those lost in the last hour), per sink (lag in seconds and records, failed
tasks) and per table (freshness, p99 landing delay), with the last hour as small plots, and
the alerts firing now. Everything is read from Prometheus's HTTP API, so the page shows
what the alerts see; when Prometheus cannot be read the page says so and still answers.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

PROMISE_S = 900.0       # every event in the warehouse within 15 minutes
HISTORY_S = 3600.0
STEP_S = 60.0

Q_CANARY_INFO = "conveyor_sla_canary_info"
Q_CANARY_AGE = "conveyor_sla_canary_last_seen_age_seconds"
Q_CANARY_MISSING = "conveyor_sla_canary_missing_threshold_seconds"
Q_CANARY_P99 = ("histogram_quantile(0.99, sum by (path, le) "
                "(rate(conveyor_sla_canary_latency_seconds_bucket[15m])))")
Q_CANARY_LOST = "sum by (path) (increase(conveyor_sla_canary_lost_total[1h]))"
Q_SINK_LAG = "max by (connector) (conveyor_sla_sink_lag_seconds)"
Q_SINK_RECORDS = "sum by (connector) (conveyor_sla_sink_lag_records)"
Q_SINK_FAILED = 'sum by (connector) (conveyor_sla_sink_tasks{state="FAILED"})'
Q_TABLE_FRESH = "max by (table) (conveyor_sla_table_freshness_seconds)"
Q_TABLE_P99 = ("histogram_quantile(0.99, sum by (table, le) "
               "(rate(conveyor_sla_landing_delay_seconds_bucket[15m])))")
Q_FIRING = 'ALERTS{alertstate="firing", alertname!="ConveyorWatchdog"}'

Series = list[tuple[float, float]]


class PrometheusError(Exception):
    pass


class Prometheus:
    """The two calls of Prometheus's HTTP API this needs."""

    def __init__(self, url: str, timeout_s: float = 5.0,
                 client: httpx.Client | None = None) -> None:
        self._client = client or httpx.Client(base_url=url.rstrip("/"), timeout=timeout_s)

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            r = self._client.get(path, params=params)
            doc = r.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise PrometheusError(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("status") != "success":
            raise PrometheusError(str(doc.get("error") if isinstance(doc, dict) else doc))
        return doc["data"]["result"]

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        return [(r["metric"], float(r["value"][1])) for r in self._get("/api/v1/query",
                                                                        {"query": expr})]

    def history(self, expr: str, now: float) -> dict[str, Series]:
        """The last hour, by the series' one distinguishing label (or '')."""
        result = self._get("/api/v1/query_range", {"query": expr, "start": now - HISTORY_S,
                                                  "end": now, "step": STEP_S})
        out: dict[str, Series] = {}
        for r in result:
            key = next(iter(r["metric"].values()), "") if r["metric"] else ""
            out[key] = [(float(t), float(v)) for t, v in r["values"]]
        return out

    def close(self) -> None:
        self._client.close()


@dataclass
class PathStatus:
    path: str
    table: str
    canary_age_s: float | None
    missing_after_s: float | None
    canary_p99_s: float | None
    lost_1h: float
    history: Series = field(default_factory=list)

    @property
    def verdict(self) -> str:
        if self.canary_age_s is None:
            return "NO DATA"
        if self.missing_after_s is not None and self.canary_age_s > self.missing_after_s:
            return "MISSING"
        if self.canary_p99_s is not None and self.canary_p99_s > PROMISE_S:
            return "LATE"
        if self.lost_1h > 0:
            return "LOSING"
        return "OK"


@dataclass
class SinkStatus:
    connector: str
    lag_s: float
    records: float
    failed_tasks: float
    history: Series = field(default_factory=list)


@dataclass
class TableStatus:
    table: str
    freshness_s: float
    landing_p99_s: float | None
    history: Series = field(default_factory=list)


@dataclass
class Status:
    at: float
    paths: list[PathStatus] = field(default_factory=list)
    sinks: list[SinkStatus] = field(default_factory=list)
    tables: list[TableStatus] = field(default_factory=list)
    firing: list[dict[str, str]] = field(default_factory=list)
    error: str | None = None


def _by(rows: list[tuple[dict[str, str], float]], label: str) -> dict[str, float]:
    return {m.get(label, ""): v for m, v in rows if not math.isnan(v)}


def collect(prom: Prometheus, now: float | None = None, *, history: bool = True) -> Status:
    """Everything the page shows; a Prometheus that cannot be read is ``error``, never a
    raise."""
    now = time.time() if now is None else now
    status = Status(at=now)
    try:
        age = _by(prom.query(Q_CANARY_AGE), "path")
        missing = _by(prom.query(Q_CANARY_MISSING), "path")
        p99 = _by(prom.query(Q_CANARY_P99), "path")
        lost = _by(prom.query(Q_CANARY_LOST), "path")
        tables_of = {m.get("path", ""): m.get("table", "") for m, _ in prom.query(Q_CANARY_INFO)}
        lag = _by(prom.query(Q_SINK_LAG), "connector")
        records = _by(prom.query(Q_SINK_RECORDS), "connector")
        failed = _by(prom.query(Q_SINK_FAILED), "connector")
        fresh = _by(prom.query(Q_TABLE_FRESH), "table")
        landing = _by(prom.query(Q_TABLE_P99), "table")
        status.firing = [m for m, _ in prom.query(Q_FIRING)]
        hist: dict[str, dict[str, Series]] = {}
        if history:
            hist = {"canary": prom.history(Q_CANARY_P99, now),
                    "lag": prom.history(Q_SINK_LAG, now),
                    "fresh": prom.history(Q_TABLE_FRESH, now)}
    except PrometheusError as exc:
        status.error = f"Prometheus cannot be read: {exc}"
        return status
    for path in sorted(set(tables_of) | set(age)):
        status.paths.append(PathStatus(path, tables_of.get(path, ""), age.get(path),
                                       missing.get(path), p99.get(path), lost.get(path, 0.0),
                                       hist.get("canary", {}).get(path, [])))
    for c in sorted(lag):
        status.sinks.append(SinkStatus(c, lag[c], records.get(c, 0.0), failed.get(c, 0.0),
                                       hist.get("lag", {}).get(c, [])))
    for t in sorted(fresh):
        status.tables.append(TableStatus(t, fresh[t], landing.get(t),
                                         hist.get("fresh", {}).get(t, [])))
    return status


# -- rendering ------------------------------------------------------------------------------

def duration(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def sparkline(series: Series, width: int = 160, height: int = 28,
              limit: float | None = None) -> str:
    """An inline SVG of the last hour; a dashed line at ``limit`` when it is in range."""
    points = [(t, v) for t, v in series if not math.isnan(v) and not math.isinf(v)]
    if len(points) < 2:
        return '<span class="none">no history yet</span>'
    t0, t1 = points[0][0], points[-1][0]
    top = max(max(v for _, v in points), 1e-9)
    if limit is not None and limit <= top * 1.5:
        top = max(top, limit)

    def xy(t: float, v: float) -> str:
        x = (t - t0) / max(t1 - t0, 1e-9) * (width - 2) + 1
        y = height - 1 - v / top * (height - 2)
        return f"{x:.1f},{y:.1f}"

    line = " ".join(xy(t, v) for t, v in points)
    guide = ""
    if limit is not None and limit <= top:
        y = height - 1 - limit / top * (height - 2)
        guide = (f'<line x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" class="limit"/>')
    return (f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img"><title>max {duration(top)}</title>{guide}'
            f'<polyline points="{line}" fill="none" class="line"/></svg>')


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;width:100%}td,th{padding:.3em .6em;border-bottom:1px solid #ddd;
text-align:left;vertical-align:middle}th{font-weight:600;color:#555}
.OK{color:#176f2c;font-weight:600}.LATE,.MISSING,.LOSING,.FAILED{color:#b00020;font-weight:600}
.NODATA{color:#777}.line{stroke:#2b6cb0;stroke-width:1.5}.limit{stroke:#b00020;
stroke-dasharray:3 3;stroke-width:1}.none{color:#999}.error{background:#fde8e8;padding:.6em}
.num{text-align:right;font-variant-numeric:tabular-nums}
"""


def render_html(s: Status, prometheus_url: str | None = None) -> str:
    e = html.escape
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(s.at))
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>Conveyor SLA</title>"
           f"<meta http-equiv='refresh' content='15'><style>{_STYLE}</style></head><body>",
           "<h1>Conveyor: every event in the warehouse within 15 minutes</h1>",
           f"<p>As of {when}; refreshes every 15 s. Plots: the last hour.</p>"]
    if s.error:
        out.append(f"<p class='error'>{e(s.error)}</p>")
    out.append("<h2>Paths (canaries: publish → visible row)</h2><table><tr><th>path</th>"
               "<th>table</th><th>status</th><th class='num'>newest canary seen</th>"
               "<th class='num'>p99, 15 min</th><th class='num'>lost, 1 h</th>"
               "<th>p99, last hour</th></tr>")
    for p in s.paths:
        out.append(f"<tr><td>{e(p.path)}</td><td>{e(p.table)}</td>"
                   f"<td class='{p.verdict.replace(' ', '')}'>{p.verdict}</td>"
                   f"<td class='num'>{duration(p.canary_age_s)} ago</td>"
                   f"<td class='num'>{duration(p.canary_p99_s)}</td>"
                   f"<td class='num'>{p.lost_1h:.0f}</td>"
                   f"<td>{sparkline(p.history, limit=PROMISE_S)}</td></tr>")
    if not s.paths:
        out.append("<tr><td colspan='7' class='none'>no canary paths reported</td></tr>")
    out.append("</table><h2>Sinks (lag: the oldest record not yet written)</h2><table><tr>"
               "<th>connector</th><th class='num'>lag</th><th class='num'>records behind</th>"
               "<th class='num'>failed tasks</th><th>lag, last hour</th></tr>")
    for k in s.sinks:
        failed = f"<span class='FAILED'>{k.failed_tasks:.0f}</span>" if k.failed_tasks else "0"
        out.append(f"<tr><td>{e(k.connector)}</td><td class='num'>{duration(k.lag_s)}</td>"
                   f"<td class='num'>{k.records:.0f}</td><td class='num'>{failed}</td>"
                   f"<td>{sparkline(k.history, limit=PROMISE_S)}</td></tr>")
    out.append("</table><h2>Tables (freshness: now minus the newest accepted_at)</h2><table><tr>"
               "<th>table</th><th class='num'>freshness</th><th class='num'>landing p99, "
               "15 min</th><th>freshness, last hour</th></tr>")
    for t in s.tables:
        out.append(f"<tr><td>{e(t.table)}</td><td class='num'>{duration(t.freshness_s)}</td>"
                   f"<td class='num'>{duration(t.landing_p99_s)}</td>"
                   f"<td>{sparkline(t.history)}</td></tr>")
    out.append("</table><h2>Alerts firing</h2>")
    if s.firing:
        out.append("<ul>" + "".join(
            f"<li><b>{e(a.get('alertname', ''))}</b> ({e(a.get('severity', ''))}) "
            f"{e(_other_labels(a))}</li>" for a in s.firing) + "</ul>")
    else:
        out.append("<p>none</p>")
    if prometheus_url:
        out.append(f"<p>Source: <a href='{e(prometheus_url)}/classic/alerts'>Prometheus</a>"
                   "; the exporter's own numbers: <a href='/metrics'>/metrics</a>.</p>")
    out.append("</body></html>")
    return "\n".join(out)


def _other_labels(alert: dict[str, str]) -> str:
    shown = ("alertname", "alertstate", "severity", "__name__")
    return ", ".join(f"{k}={v}" for k, v in sorted(alert.items()) if k not in shown)


def render_text(s: Status, page_url: str | None = None) -> str:
    """The summary ``make demo`` ends with."""
    lines = ["SLA: every event in the warehouse within 15 minutes"]
    if s.error:
        lines.append(f"  {s.error}")
    w = max([len(x) for x in [*(k.connector for k in s.sinks), *(t.table for t in s.tables)]]
            or [10])
    for p in s.paths:
        lines.append(f"  path  {p.path:<{w}} {p.verdict:<8} newest canary seen "
                     f"{duration(p.canary_age_s)} ago, p99 publish->row "
                     f"{duration(p.canary_p99_s)}, lost in the last hour {p.lost_1h:.0f}")
    for k in s.sinks:
        failed = f", {k.failed_tasks:.0f} FAILED task(s)" if k.failed_tasks else ""
        lines.append(f"  sink  {k.connector:<{w}} lag {duration(k.lag_s)} "
                     f"({k.records:.0f} records){failed}")
    for t in s.tables:
        lines.append(f"  table {t.table:<{w}} freshness {duration(t.freshness_s)}, "
                     f"landing p99 {duration(t.landing_p99_s)}")
    if s.firing:
        names = sorted({a.get("alertname", "") for a in s.firing})
        lines.append(f"  alerts firing: {', '.join(names)}")
    else:
        lines.append("  alerts firing: none")
    if page_url:
        lines.append(f"  status page: {page_url}")
    return "\n".join(lines)


def page(prom: Prometheus, prometheus_url: str | None = None,
         clock: Callable[[], float] = time.time) -> Callable[[], tuple[str, bytes]]:
    """The ``/status`` handler for ``OpsServer``."""
    def render() -> tuple[str, bytes]:
        return "text/html; charset=utf-8", render_html(collect(prom, clock()),
                                                       prometheus_url).encode()
    return render


def worst(paths: Sequence[PathStatus]) -> str:
    order = ["MISSING", "LATE", "LOSING", "NO DATA", "OK"]
    return min((p.verdict for p in paths), key=order.index, default="NO DATA")
