"""Collector throughput and latency: durable acknowledgement vs answering before the commit.

Starts the collector twice in the same run against the same Kafka, once in its normal mode
(200 only after the Kafka transaction committed) and once with the benchmark-only
``commit.unsafe_ack_before_commit`` (200 before the commit), and drives both with the same
load: tp2 POSTs of 10 realistic tracker events (page views, and self-describing events with
two context entities, base64-encoded as the Python tracker sends them), every event with a
fresh id so none is skipped as a duplicate. Prints events/s, p50/p99 request latency and
the durable/unsafe ratio. Targets: >= 5,000 events/s durable, ratio >= 0.5.

    python -m bench.snowplow [--seconds 10] [--concurrency 128]

Environment: KAFKA_BOOTSTRAP (default localhost:9092).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson, Tracker

ROOT = Path(__file__).resolve().parents[2]
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0"
BASKET = "iglu:com.conveyor.grocer/basket_item/jsonschema/1-0-0"
DEVICE = "iglu:com.conveyor.grocer/device/jsonschema/1-0-0"
EVENTS_PER_REQUEST = 10
TARGET_EVENTS_S = 5000
TARGET_RATIO = 0.5


class _Capture:
    def __init__(self) -> None:
        self.events: list[dict[str, str]] = []

    def input(self, payload: dict[str, Any]) -> None:
        self.events.append({k: str(v) for k, v in payload.items()})

    def flush(self) -> None: ...
    def sync_flush(self) -> None: ...
    def async_flush(self) -> None: ...


def template_events() -> list[dict[str, str]]:
    """Ten events as the Python tracker's POST emitter would send them."""
    cap = _Capture()
    tracker = Tracker("bench", cap, app_id="shop")  # type: ignore[arg-type]
    for i in range(EVENTS_PER_REQUEST):
        if i % 2:
            tracker.track(SelfDescribing(
                SelfDescribingJson(ORDER, {"order_id": f"o-{i}", "total": 12.5 + i,
                                           "currency": "EUR", "items": i + 1}),
                context=[SelfDescribingJson(BASKET, {"sku": f"sku-{i}", "quantity": 2}),
                         SelfDescribingJson(DEVICE, {"device_id": "phone-1", "kind": "phone"})]))
        else:
            tracker.track(PageView(page_url=f"https://shop.example/p/{i}", page_title="Product"))
    stm = str(int(time.time() * 1000))
    return [{**e, "stm": stm} for e in cap.events]


def bodies(n: int) -> list[bytes]:
    """``n`` request bodies, every event with a fresh id."""
    template = template_events()
    out = []
    for _ in range(n):
        events = [{**e, "eid": str(uuid.uuid4())} for e in template]
        out.append(json.dumps({"schema": PAYLOAD_DATA, "data": events}).encode())
    return out


@dataclass
class Result:
    mode: str
    requests: int
    errors: int
    seconds: float
    latencies: list[float]
    commit: dict[str, float] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        return self.requests * EVENTS_PER_REQUEST / self.seconds

    def pct(self, q: float) -> float:
        lat = sorted(self.latencies)
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")


def commit_stats(url: str) -> dict[str, float]:
    """Mean events per transaction and mean commit time, from the collector's /metrics."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        for name in ("conveyor_snowplow_batch_events_sum", "conveyor_snowplow_batch_events_count",
                     "conveyor_snowplow_commit_seconds_sum",
                     'conveyor_snowplow_commit_phase_seconds_sum{phase="dedup"}',
                     'conveyor_snowplow_commit_phase_seconds_sum{phase="transaction"}'):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    count = values.get("conveyor_snowplow_batch_events_count", 0.0) or 1.0
    return {"events_per_txn": values.get("conveyor_snowplow_batch_events_sum", 0.0) / count,
            "commit_ms": values.get("conveyor_snowplow_commit_seconds_sum", 0.0) / count * 1000,
            "dedup_ms": values.get('conveyor_snowplow_commit_phase_seconds_sum{phase="dedup"}',
                                   0.0) / count * 1000,
            "txn_ms": values.get(
                'conveyor_snowplow_commit_phase_seconds_sum{phase="transaction"}', 0.0)
            / count * 1000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_collector(workdir: Path, bootstrap: str, unsafe: bool,
                    parallel: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    token = uuid.uuid4().hex[:8]
    port = free_port()
    cfg = {
        "instance_id": f"bench-{token}",
        "http": {"host": "127.0.0.1", "port": port},
        "kafka": {"bootstrap_servers": bootstrap},
        "topics": {"default": f"bench-events-{token}", "bad": f"bench-bad-{token}",
                   "routes": [{"kind": "page_view", "topic": f"bench-views-{token}"}]},
        "dedup": {"ledger_topic": f"bench-ledger-{token}"},
        "commit": {"unsafe_ack_before_commit": unsafe, "max_queued_events": 200_000,
                   **({"parallel_transactions": parallel} if parallel else {})},
        "log_level": "WARNING",
    }
    path = workdir / f"{token}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    log = (workdir / f"{token}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "sidecar", "snowplow", "--config", str(path)],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    import urllib.request
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"collector exited: see {workdir / f'{token}.log'}")
        try:
            with urllib.request.urlopen(f"{url}/sink-health", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("collector did not become ready within 60 s")


async def drive(url: str, payloads: list[bytes], seconds: float, warmup: float,
                concurrency: int, mode: str) -> Result:
    it = iter(payloads)
    latencies: list[float] = []
    counts = {"ok": 0, "err": 0}
    headers = {"Content-Type": "application/json; charset=utf-8"}
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            now = loop.time()
            if now >= stop_at:
                return
            body = next(it, None)
            if body is None:
                return
            t0 = loop.time()
            async with session.post(url + TP2, data=body, headers=headers) as resp:
                await resp.read()
                ok = resp.status == 200
            t1 = loop.time()
            if t0 >= measure_from and t1 <= stop_at:
                latencies.append(t1 - t0)
                counts["ok" if ok else "err"] += 1

    # The load generator shares the two cores with what it measures: keep it lean. Trackers
    # are many devices, each with its own cookie; one jar parsing every Set-Cookie here
    # would only be measuring the client.
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn, cookie_jar=aiohttp.DummyCookieJar(),
                                     auto_decompress=False) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return Result(mode, counts["ok"], counts["err"], seconds, latencies)


def _run(coro: Any) -> Any:
    """uvloop for the load generator too, where installed (it is a project dependency)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_mode(mode: str, bootstrap: str, workdir: Path, payloads: list[bytes], args: Any) -> Result:
    proc, url = start_collector(workdir, bootstrap, unsafe=(mode == "unsafe"),
                                parallel=args.parallel_transactions)
    try:
        result = _run(drive(url, payloads, args.seconds, args.warmup, args.concurrency, mode))
        result.commit = commit_stats(url)
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per mode")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    # A durable 200 waits for a commit, so a closed loop of N clients gets at most N
    # requests per commit time; a production collector serves thousands of trackers.
    p.add_argument("--concurrency", type=int, default=128,
                   help="requests in flight (trackers are many independent clients)")
    p.add_argument("--parallel-transactions", type=int, default=None,
                   help="the collector's commit.parallel_transactions (default: its own)")
    args = p.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "localhost:9092")
    # Enough unique bodies for a fast run of both modes (a body is never sent twice).
    n = int((args.seconds + args.warmup) * 2500)
    print(f"preparing {n} request bodies of {EVENTS_PER_REQUEST} events...", flush=True)
    payloads = bodies(n)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-snowplow-") as tmp:
        for mode, chunk in (("durable", payloads[: n // 2]), ("unsafe", payloads[n // 2:])):
            print(f"running {mode} for {args.warmup + args.seconds:.0f}s "
                  f"(concurrency {args.concurrency})...", flush=True)
            results.append(run_mode(mode, bootstrap, Path(tmp), chunk, args))
    print()
    print(f"{'mode':<10}{'events/s':>12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
          f"{'events/txn':>12}{'commit ms':>11}")
    for r in results:
        print(f"{r.mode:<10}{r.events_per_s:>12,.0f}{r.requests / r.seconds:>10,.0f}"
              f"{r.pct(0.50):>10.1f}{r.pct(0.99):>10.1f}{r.errors:>8}"
              f"{r.commit.get('events_per_txn', 0):>12.0f}{r.commit.get('commit_ms', 0):>11.1f}")
    durable, unsafe = results
    ratio = durable.events_per_s / unsafe.events_per_s if unsafe.events_per_s else float("nan")
    print(f"\ndurable / unsafe throughput ratio: {ratio:.2f} (target >= {TARGET_RATIO})")
    print(f"durable events/s: {durable.events_per_s:,.0f} (target >= {TARGET_EVENTS_S:,})")
    print(json.dumps({"bench": "snowplow_collector",
                      "durable_events_s": round(durable.events_per_s),
                      "unsafe_events_s": round(unsafe.events_per_s), "ratio": round(ratio, 3),
                      "durable_p50_ms": round(durable.pct(0.5), 2),
                      "durable_p99_ms": round(durable.pct(0.99), 2),
                      "unsafe_p50_ms": round(unsafe.pct(0.5), 2),
                      "unsafe_p99_ms": round(unsafe.pct(0.99), 2),
                      "errors": durable.errors + unsafe.errors,
                      "durable_events_per_txn": round(durable.commit.get("events_per_txn", 0)),
                      "durable_commit_ms": round(durable.commit.get("commit_ms", 0), 1),
                      "durable_dedup_ms": round(durable.commit.get("dedup_ms", 0), 1),
                      "durable_txn_ms": round(durable.commit.get("txn_ms", 0), 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
