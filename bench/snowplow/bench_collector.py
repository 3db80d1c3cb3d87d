"""Snowplow: the collector (durable vs answering before the commit) and enrich, with CPU cost.

Starts the collector twice in the same run against the same Kafka, once in its normal mode
(200 only after the raw records' transaction committed) and once with the benchmark-only
``commit.unsafe_ack_before_commit`` (200 before the commit), and drives both with the same
load: tp2 POSTs of 10 realistic tracker events (page views, and self-describing events with
two context entities, base64-encoded as the Python tracker sends them), every event with a
fresh id so none is skipped as a duplicate. Then enrich reads what the durable collector
wrote, from the start of the raw topic, and is timed until its committed offsets reach the
end. For each process: events/s, and **CPU seconds per 10,000 events** from the process's
own counters (``/proc/<pid>/stat``), which hold on a shared machine where wall-clock rates
do not. ``--baseline-src DIR`` also runs the collector found in DIR (an older checkout,
e.g. ``git archive <rev> sidecar | tar -x -C DIR``) the same way, for the before/after.
``--enrich-baseline-src DIR`` also runs the enrich of DIR over the same raw topic, as its
own consumer group with its own outputs and ledger, alternately with this tree's (the
figures are the better of each tree's runs), for enrich's before/after in the same run.
Last, enrich once more without Kafka (``bench_enrich``: the same loop over fake clients),
in CPU seconds per 10,000 events and as a ratio to ``json.loads`` of the same records
(and DIR's enrich that way too).

    python -m bench.snowplow [--seconds 10] [--concurrency 128] [--baseline-src DIR]
                             [--enrich-baseline-src DIR] [--enrich-pairs 2]

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
from snowplow_tracker import PageView, SelfDescribing, SelfDescribingJson, Subject, Tracker

from bench.snowplow import bench_enrich

# The same requests as the enrich bench: one definition of what a tracker sends.
from bench.snowplow.bench_enrich import (
    BASKET,
    DEVICE,
    EVENTS_PER_REQUEST,
    ORDER,
    PAYLOAD_DATA,
    ROOT,
    TP2,
)
from connectors.replay import after_last_record

TARGET_EVENTS_S = 5000
TARGET_RATIO = 0.5
# Enrich with every enrichment on: at most this much CPU per event (issue 11).
TARGET_ENRICH_MS = 0.3
# What enrichments read: browser and mobile user agents, client IPs (v4 and v6), campaign
# page URLs with click ids, search and social referers. A few of each, as real traffic
# repeats them (the user-agent parse is cached).
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.6099.144 Mobile Safari/537.36",
)
IPS = ("203.0.113.57", "198.51.100.7", "2001:db8:85a3::8a2e:370:7334", "81.2.69.160")
REFERRERS = ("https://www.google.com/search?q=oat+milk+delivery",
             "https://l.facebook.com/l.php?u=x", "https://www.bing.com/search?q=bread",
             "https://shop.example/basket")
ALL_ENRICHMENTS: dict[str, Any] = {
    "ua_parser": {"enabled": True}, "anon_ip": {"enabled": True},
    "campaign_attribution": {"enabled": True}, "referer_parser": {"enabled": True},
    "event_fingerprint": {"enabled": True},
    "pii": {"enabled": True, "fields": ["user_id", "user_ipaddress", "se_label"],
            "json_fields": [{"field": "unstruct_event", "json_path": "$.order_id",
                             "schema_criterion": "iglu:com.conveyor.grocer/order_placed/*"}]},
    # ip_lookup: a tiny database the bench writes (none ships), see geo_database()
}


def template_events() -> list[dict[str, str]]:
    """Ten events as the Python tracker's POST emitter would send them."""
    cap = bench_enrich.Capture()
    tracker = Tracker("bench", cap, app_id="shop")
    for i in range(EVENTS_PER_REQUEST):
        tracker.set_subject(Subject().set_useragent(USER_AGENTS[i % len(USER_AGENTS)])
                            .set_ip_address(IPS[i % len(IPS)]).set_user_id(f"user-{i}"))
        if i % 2:
            tracker.track(SelfDescribing(
                SelfDescribingJson(ORDER, {"order_id": f"o-{i}", "total": 12.5 + i,
                                           "currency": "EUR", "items": i + 1}),
                context=[SelfDescribingJson(BASKET, {"sku": f"sku-{i}", "quantity": 2}),
                         SelfDescribingJson(DEVICE, {"device_id": "phone-1", "kind": "phone"})]))
        else:
            tracker.track(PageView(
                page_url=f"https://shop.example/p/{i}?utm_source=newsletter&utm_medium=email"
                         f"&utm_campaign=spring&gclid=CJ{i}",
                page_title="Product", referrer=REFERRERS[i // 2 % len(REFERRERS)]))
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
    all_ok: int = 0          # requests answered 200 over the whole run, warm-up included
    cpu_s: float = 0.0       # the collector's CPU seconds over the whole run

    @property
    def cpu_per_10k(self) -> float:
        events = self.all_ok * EVENTS_PER_REQUEST
        return self.cpu_s / events * 10_000 if events else float("nan")

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from its own counters in /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(workdir: Path, bootstrap: str, unsafe: bool, parallel: int | None,
                 baseline: bool) -> tuple[Path, dict[str, Any]]:
    token = uuid.uuid4().hex[:8]
    cfg: dict[str, Any] = {
        "instance_id": f"bench-{token}",
        "http": {"host": "127.0.0.1", "port": free_port()},
        "kafka": {"bootstrap_servers": bootstrap},
        "topics": {"default": f"bench-events-{token}", "bad": f"bench-bad-{token}",
                   "routes": [{"kind": "page_view", "topic": f"bench-views-{token}"}]},
        "dedup": {"ledger_topic": f"bench-ledger-{token}"},
        "commit": {"unsafe_ack_before_commit": unsafe, "max_queued_events": 200_000,
                   **({"parallel_transactions": parallel} if parallel else {})},
        "log_level": "WARNING",
    }
    if not baseline:   # keys the older collector does not know
        cfg["raw"] = {"topic": f"bench-raw-{token}"}
        cfg["enrich"] = {"instance_id": f"bench-{token}", "group_id": f"bench-enrich-{token}",
                         "host": "127.0.0.1", "port": free_port()}
    path = workdir / f"{token}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def start(workdir: Path, command: str, config: Path, ready_url: str,
          src: Path = ROOT) -> subprocess.Popen[bytes]:
    log_path = config.with_suffix(f".{command}.log")
    proc = subprocess.Popen([sys.executable, "-m", "sidecar", command, "--config", str(config)],
                            cwd=src, stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(src)})
    deadline = time.monotonic() + 60
    import urllib.request
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{command} exited: see {log_path}")
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"{command} did not become ready within 60 s")


async def drive(url: str, payloads: list[bytes], seconds: float, warmup: float,
                concurrency: int, mode: str) -> Result:
    it = iter(payloads)
    latencies: list[float] = []
    counts = {"ok": 0, "err": 0, "all_ok": 0}
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
            counts["all_ok"] += ok
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
    return Result(mode, counts["ok"], counts["err"], seconds, latencies,
                  all_ok=counts["all_ok"])


def _run(coro: Any) -> Any:
    """uvloop for the load generator too, where installed (it is a project dependency)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_mode(mode: str, bootstrap: str, workdir: Path, payloads: list[bytes], args: Any
             ) -> tuple[Result, dict[str, Any]]:
    baseline = mode == "before"
    config, cfg = write_config(workdir, bootstrap, unsafe=(mode == "unsafe"),
                               parallel=args.parallel_transactions, baseline=baseline)
    url = f"http://127.0.0.1:{cfg['http']['port']}"
    proc = start(workdir, "snowplow", config, f"{url}/sink-health",
                 src=Path(args.baseline_src) if baseline else ROOT)
    try:
        cpu0 = cpu_seconds(proc.pid)
        result = _run(drive(url, payloads, args.seconds, args.warmup, args.concurrency, mode))
        result.cpu_s = cpu_seconds(proc.pid) - cpu0
        result.commit = commit_stats(url)
        return result, {**cfg, "_path": config}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class EnrichResult:
    records: int
    events: int
    seconds: float
    cpu_s: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else float("nan")

    @property
    def cpu_per_10k(self) -> float:
        return self.cpu_s / self.events * 10_000 if self.events else float("nan")


def geo_database(workdir: Path) -> Path:
    """A tiny MaxMind City database for the ip_lookup enrichment (none ships)."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    w = MMDBWriter(ip_version=6, database_type="GeoIP2-City", languages=["en"],
                   description="bench", ipv4_compatible=True)
    w.insert_network(IPSet(["81.2.69.0/24", "203.0.113.0/24"]), {
        "country": {"iso_code": "GB", "names": {"en": "United Kingdom"}},
        "subdivisions": [{"iso_code": "ENG", "names": {"en": "England"}}],
        "city": {"names": {"en": "London"}}, "postal": {"code": "SW1A"},
        "location": {"latitude": 51.5142, "longitude": -0.0931, "time_zone": "Europe/London"}})
    path = workdir / "geo.mmdb"
    w.to_db_file(str(path))
    return path


def all_enrichments(workdir: Path) -> dict[str, Any]:
    # The PII key comes from the environment only; enrich inherits the bench's.
    os.environ.setdefault("CONVEYOR_SNOWPLOW_PII_KEY", uuid.uuid4().hex)
    return {**ALL_ENRICHMENTS,
            "ip_lookup": {"enabled": True, "database": str(geo_database(workdir))}}


def enrich_config(workdir: Path, cfg: dict[str, Any],
                  enrichments: dict[str, Any] | None = None,
                  atomic: bool = False) -> dict[str, Any]:
    """A copy of the durable run's config for one more enrich run over its raw topic: its
    own group (so it starts from the topic's start), outputs, ledger and instance;
    ``enrichments``: that section (none by default); ``atomic``: Snowplow's layout too."""
    token = uuid.uuid4().hex[:8]
    out = {k: v for k, v in cfg.items() if k not in ("_path", "enrichments", "atomic")}
    if enrichments:
        out["enrichments"] = enrichments
    if atomic:
        out["atomic"] = {"enabled": True, "events_topic": f"bench-atomic-{token}.events",
                         "entity_topic_prefix": f"bench-atomic-{token}."}
    out["topics"] = {"default": f"bench-events-{token}", "bad": f"bench-bad-{token}",
                     "routes": [{"kind": "page_view", "topic": f"bench-views-{token}"}]}
    out["dedup"] = {"ledger_topic": f"bench-ledger-{token}"}
    out["enrich"] = {"instance_id": f"bench-{token}", "group_id": f"bench-enrich-{token}",
                     "host": "127.0.0.1", "port": free_port()}
    path = workdir / f"{token}.yaml"
    path.write_text(yaml.safe_dump(out))
    return {**out, "_path": path}


def run_enrich(bootstrap: str, workdir: Path, cfg: dict[str, Any],
               src: Path = ROOT) -> EnrichResult:
    """Enrich what the durable collector wrote, from the start of its raw topic."""
    from confluent_kafka import Consumer, TopicPartition

    raw = cfg["raw"]["topic"]
    group = cfg["enrich"]["group_id"]
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                      "enable.auto.commit": False, "isolation.level": "read_committed",
                      "enable.partition.eof": True})
    parts = [TopicPartition(raw, p)
             for p in probe.list_topics(raw, timeout=10).topics[raw].partitions]
    # Done is enrich's offsets past each partition's last committed record: the log may
    # end with several markers (the collector's last transaction aborted at its stop).
    highs = {}
    for tp in parts:
        low, high = probe.get_watermark_offsets(tp, timeout=10, cached=False)
        highs[tp.partition] = after_last_record(probe, raw, tp.partition, low, high,
                                                look_back=high - low)
    url = f"http://127.0.0.1:{cfg['enrich']['port']}"
    proc = start(workdir, "snowplow-enrich", cfg["_path"], f"{url}/health", src=src)
    try:
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        while True:
            done = probe.committed(parts, timeout=10)
            if all(tp.offset >= highs[tp.partition] for tp in done):
                break
            time.sleep(0.05)
        seconds, cpu = time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0
        import urllib.request
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as r:
            text = r.read().decode()
        events = records = 0.0
        for line in text.splitlines():
            if line.startswith("conveyor_snowplow_enrich_events_total{"):
                events += float(line.rsplit(" ", 1)[1])
            elif line.startswith("conveyor_snowplow_enrich_records_total "):
                records = float(line.split()[1])
        return EnrichResult(int(records), int(events), seconds, cpu)
    finally:
        probe.close()
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
    p.add_argument("--baseline-src", default=None, metavar="DIR",
                   help="also run the collector of this older source tree (mode 'before')")
    p.add_argument("--enrich-baseline-src", default=None, metavar="DIR",
                   help="also run the enrich of this older source tree (over the same raw "
                        "topic, and without Kafka)")
    p.add_argument("--enrichment-pairs", type=int, default=2,
                   help="runs of enrich with every enrichment on, alternately with none")
    p.add_argument("--enrich-pairs", type=int, default=2,
                   help="with --enrich-baseline-src: runs of each enrich, alternately")
    args = p.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "localhost:9092")
    modes = ["durable", "unsafe", *(["before"] if args.baseline_src else [])]
    # Enough unique bodies for a fast run of every mode (a body is never sent twice).
    per_mode = int((args.seconds + args.warmup) * 1250)
    n = per_mode * len(modes)
    print(f"preparing {n} request bodies of {EVENTS_PER_REQUEST} events...", flush=True)
    payloads = bodies(n)
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-snowplow-") as tmp:
        durable_cfg: dict[str, Any] = {}
        for i, mode in enumerate(modes):
            print(f"running {mode} for {args.warmup + args.seconds:.0f}s "
                  f"(concurrency {args.concurrency})...", flush=True)
            result, cfg = run_mode(mode, bootstrap, Path(tmp),
                                   payloads[i * per_mode:(i + 1) * per_mode], args)
            results.append(result)
            if mode == "durable":
                durable_cfg = cfg
        print("running enrich over the durable run's raw topic...", flush=True)
        enrich = run_enrich(bootstrap, Path(tmp), durable_cfg)
        # Every enrichment on vs none, alternately over the same raw records.
        nones, alls = [enrich], []
        everything = all_enrichments(Path(tmp))
        for i in range(args.enrichment_pairs):
            print(f"running enrich {'with none, then ' if i else ''}with every enrichment "
                  f"on ({i + 1}/{args.enrichment_pairs})...", flush=True)
            if i:
                nones.append(run_enrich(bootstrap, Path(tmp),
                                        enrich_config(Path(tmp), durable_cfg)))
            alls.append(run_enrich(bootstrap, Path(tmp),
                                   enrich_config(Path(tmp), durable_cfg, everything)))
        for label, runs in (("none", nones), ("all", alls)):
            for run in runs:
                print(f"  enrichments {label}: {run.events_per_s:,.0f} ev/s, "
                      f"{run.cpu_per_10k:.2f} CPU s/10k")
        print("running enrich with every enrichment on and Snowplow's layout too...",
              flush=True)
        layout = run_enrich(bootstrap, Path(tmp),
                            enrich_config(Path(tmp), durable_cfg, everything, atomic=True))
        print(f"  enrichments all + atomic layout: {layout.events_per_s:,.0f} ev/s, "
              f"{layout.cpu_per_10k:.2f} CPU s/10k")
        enrich = min(nones, key=lambda r: r.cpu_per_10k)
        enriched = min(alls, key=lambda r: r.cpu_per_10k)
        enrich_before: EnrichResult | None = None
        if args.enrich_baseline_src:
            afters, befores = [enrich], []
            for i in range(args.enrich_pairs):
                print(f"running the baseline's enrich over it ({i + 1}/{args.enrich_pairs}), "
                      f"then this tree's...", flush=True)
                befores.append(run_enrich(bootstrap, Path(tmp),
                                          enrich_config(Path(tmp), durable_cfg),
                                          src=Path(args.enrich_baseline_src)))
                if i + 1 < args.enrich_pairs:
                    afters.append(run_enrich(bootstrap, Path(tmp),
                                             enrich_config(Path(tmp), durable_cfg)))
            enrich = max(afters, key=lambda r: r.events_per_s)
            enrich_before = max(befores, key=lambda r: r.events_per_s)
            for run in (*afters, *befores):
                print(f"  {'this tree' if run in afters else 'baseline'}: "
                      f"{run.events_per_s:,.0f} ev/s, {run.cpu_per_10k:.2f} CPU s/10k")
    print()
    print(f"{'mode':<10}{'events/s':>12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}"
          f"{'events/txn':>12}{'commit ms':>11}{'CPU s/10k':>11}")
    for r in results:
        print(f"{r.mode:<10}{r.events_per_s:>12,.0f}{r.requests / r.seconds:>10,.0f}"
              f"{r.pct(0.50):>10.1f}{r.pct(0.99):>10.1f}{r.errors:>8}"
              f"{r.commit.get('events_per_txn', 0):>12.0f}{r.commit.get('commit_ms', 0):>11.1f}"
              f"{r.cpu_per_10k:>11.2f}")
    print(f"{'enrich':<10}{enrich.events_per_s:>12,.0f}{'':>10}{'':>10}{'':>10}{'':>8}"
          f"{'':>12}{'':>11}{enrich.cpu_per_10k:>11.2f}"
          f"   ({enrich.records} raw records, {enrich.events} events in {enrich.seconds:.1f}s)")
    print(f"{'enrich+':<10}{enriched.events_per_s:>12,.0f}{'':>10}{'':>10}{'':>10}{'':>8}"
          f"{'':>12}{'':>11}{enriched.cpu_per_10k:>11.2f}"
          f"   (every enrichment on, same raw records)")
    print(f"{'enrich++':<10}{layout.events_per_s:>12,.0f}{'':>10}{'':>10}{'':>10}{'':>8}"
          f"{'':>12}{'':>11}{layout.cpu_per_10k:>11.2f}"
          f"   (every enrichment and Snowplow's layout: atomic.events and entity records)")
    if enrich_before is not None:
        print(f"{'enrich<':<10}{enrich_before.events_per_s:>12,.0f}{'':>10}{'':>10}{'':>10}"
              f"{'':>8}{'':>12}{'':>11}{enrich_before.cpu_per_10k:>11.2f}"
              f"   (the baseline's enrich, same raw records)")
    by = {r.mode: r for r in results}
    durable, unsafe = by["durable"], by["unsafe"]
    ratio = durable.events_per_s / unsafe.events_per_s if unsafe.events_per_s else float("nan")
    print(f"\ndurable / unsafe throughput ratio: {ratio:.2f} (target >= {TARGET_RATIO})")
    print(f"durable events/s: {durable.events_per_s:,.0f} (target >= {TARGET_EVENTS_S:,})")
    print(f"enrich / durable collector events/s: "
          f"{enrich.events_per_s / durable.events_per_s:.2f} (goal >= 1)")
    all_ms = enriched.cpu_per_10k / 10  # CPU s per 10k events -> ms per event
    print(f"enrich CPU per event: {enrich.cpu_per_10k / 10:.3f} ms with no enrichment, "
          f"{all_ms:.3f} ms with every one on (goal <= {TARGET_ENRICH_MS}); all / none "
          f"{enriched.cpu_per_10k / enrich.cpu_per_10k:.2f}; with Snowplow's layout too "
          f"{layout.cpu_per_10k / 10:.3f} ms, layout / all "
          f"{layout.cpu_per_10k / enriched.cpu_per_10k:.2f}")
    if enrich_before is not None:
        print(f"enrich events/s, now / baseline: "
              f"{enrich.events_per_s / enrich_before.events_per_s:.2f}; CPU per event "
              f"{enrich.cpu_per_10k / enrich_before.cpu_per_10k:.2f}; baseline's enrich / "
              f"durable collector {enrich_before.events_per_s / durable.events_per_s:.2f}")
    if "before" in by:
        print(f"collector CPU per event, now / before: "
              f"{durable.cpu_per_10k / by['before'].cpu_per_10k:.2f} (goal <= 0.5)")
    # The same enrich in process, no Kafka: what the core and writer cost per event alone.
    offline_before: dict[str, float] | None = None
    if args.enrich_baseline_src:
        offline, offline_before = bench_enrich.compare(Path(args.enrich_baseline_src), 1000, 5,
                                                       "avro", 3)
    else:
        offline = bench_enrich.summary(bench_enrich.measure(1000, 5, "avro"))
    print(bench_enrich.line(offline, "avro", offline_before)
          + f"; load average {bench_enrich.load()}")
    print(json.dumps({"bench": "snowplow",
                      "durable_events_s": round(durable.events_per_s),
                      "unsafe_events_s": round(unsafe.events_per_s), "ratio": round(ratio, 3),
                      "durable_p50_ms": round(durable.pct(0.5), 2),
                      "durable_p99_ms": round(durable.pct(0.99), 2),
                      "errors": sum(r.errors for r in results),
                      "durable_events_per_txn": round(durable.commit.get("events_per_txn", 0)),
                      "cpu_s_per_10k": {r.mode: round(r.cpu_per_10k, 3) for r in results},
                      "enrich_events_s": round(enrich.events_per_s),
                      "enrich_cpu_s_per_10k": round(enrich.cpu_per_10k, 3),
                      "enrich_all_enrichments_events_s": round(enriched.events_per_s),
                      "enrich_all_enrichments_cpu_s_per_10k": round(enriched.cpu_per_10k, 3),
                      "enrich_all_with_layout_cpu_s_per_10k": round(layout.cpu_per_10k, 3),
                      "enrich_all_over_none_cpu": round(
                          enriched.cpu_per_10k / enrich.cpu_per_10k, 3),
                      **({"enrich_baseline_events_s": round(enrich_before.events_per_s),
                          "enrich_baseline_cpu_s_per_10k": round(enrich_before.cpu_per_10k, 3)}
                         if enrich_before is not None else {}),
                      "enrich_core_cpu_s_per_10k": round(offline["cpu_s_per_10k"], 3),
                      "enrich_core_ratio_to_json_loads": round(offline["ratio_to_json_loads"],
                                                               1),
                      "load_avg_1m": round(os.getloadavg()[0], 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
