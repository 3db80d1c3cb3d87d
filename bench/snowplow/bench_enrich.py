"""Enrich's CPU per event without Kafka: the loop, the core and the writer over fake clients.

Raw records are made the way the collector makes them (``intake``) from tp2 POSTs as the
real ``snowplow-tracker`` sends them: batches of 10 events (page views and structured
events with the web_page entity, self-describing events with two entities, page views
with a referrer), from a tracker that base64-encodes its JSON and one that does not, every
event with a fresh id. ``EnrichRunner.process`` then enriches and "commits" them against a
consumer and a producer that do nothing, routes as the compose stack has them (Avro through
an in-memory schema registry, or ``--format json``) and the in-process dedup window, so
what is measured is everything enrich does per event except librdkafka.

CPU seconds (``time.process_time``) per 10,000 events, the least of ``--rounds`` rounds of
fresh records; each round also times plain ``json.loads`` of the same record values, and
the ratio of the two is what holds on a busy machine. ``--baseline-src DIR`` measures the
enrich of an older tree (e.g. ``git archive <rev> sidecar | tar -x -C DIR``) the same way
in a subprocess, alternately with this tree's (``--pairs`` times), for the before/after.

    python -m bench.snowplow.bench_enrich [--requests 1000] [--rounds 5] [--profile]
                                          [--format avro|json] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snowplow_tracker import (
    PageView,
    SelfDescribing,
    SelfDescribingJson,
    StructuredEvent,
    Tracker,
)

ROOT = Path(__file__).resolve().parents[2]
TP2 = "/com.snowplowanalytics.snowplow/tp2"
PAYLOAD_DATA = "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4"
ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-0"
BASKET = "iglu:com.conveyor.grocer/basket_item/jsonschema/1-0-0"
DEVICE = "iglu:com.conveyor.grocer/device/jsonschema/1-0-0"
WEB_PAGE = "iglu:com.snowplowanalytics.snowplow/web_page/jsonschema/1-0-0"
EVENTS_PER_REQUEST = 10
RAW_TOPIC = "conveyor.raw.snowplow"
# json.loads of a round's records takes a few milliseconds: repeat it, so that the baseline
# is timed over as long as enrich is and one preemption does not move the ratio.
BASELINE_PASSES = 20
HEADERS = {"content-type": "application/json; charset=utf-8",
           "user-agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
           "referer": "https://shop.example/basket", "origin": "https://shop.example",
           "cookie": "sp=5f0e3d4c-1a2b-4c59-8a11-2f0e3d4c5b6a"}


class Capture:
    """An emitter that keeps what the real tracker would send (nothing leaves)."""

    def __init__(self) -> None:
        self.events: list[dict[str, str]] = []

    def input(self, payload: dict[str, Any]) -> None:
        self.events.append({k: str(v) for k, v in payload.items()})

    def flush(self) -> None: ...
    def sync_flush(self) -> None: ...
    def async_flush(self) -> None: ...


def template_events(encode_base64: bool) -> list[dict[str, str]]:
    """One POST's ten events as the Python tracker's emitter sends them."""
    cap = Capture()
    tracker = Tracker("bench", cap, app_id="shop", encode_base64=encode_base64)
    page = [SelfDescribingJson(WEB_PAGE, {"id": str(uuid.uuid4())})]
    for i in range(EVENTS_PER_REQUEST):
        kind = i % 4
        if kind == 0:
            tracker.track(PageView(page_url=f"https://shop.example/p/{i}",
                                   page_title="Product", context=page))
        elif kind == 1:
            tracker.track(StructuredEvent(category="basket", action="add", label=f"sku-{i}",
                                          property_="size-m", value=2.5, context=page))
        elif kind == 2:
            tracker.track(SelfDescribing(
                SelfDescribingJson(ORDER, {"order_id": f"o-{i}", "total": 12.5 + i,
                                           "currency": "EUR", "items": i + 1}),
                context=[SelfDescribingJson(BASKET, {"sku": f"sku-{i}", "quantity": 2}),
                         SelfDescribingJson(DEVICE, {"device_id": "phone-1",
                                                     "kind": "phone"})]))
        else:
            tracker.track(PageView(page_url=f"https://shop.example/c/{i}", page_title="Fruit",
                                   referrer="https://search.example/?q=apples"))
    stm = str(int(time.time() * 1000))
    return [{**e, "stm": stm} for e in cap.events]


def raw_records(requests: int) -> list[tuple[list[tuple[str, bytes]], bytes]]:
    """(headers, value) of the raw records the collector writes for ``requests`` POSTs."""
    from sidecar.snowplow.identity import CookieConfig
    from sidecar.snowplow.intake import IntakeConfig, intake

    cfg = IntakeConfig(RAW_TOPIC, CookieConfig())
    templates = [template_events(True), template_events(False)]
    out: list[tuple[list[tuple[str, bytes]], bytes]] = []
    for r in range(requests):
        events = [{**e, "eid": str(uuid.uuid4())} for e in templates[r % 2]]
        body = json.dumps({"schema": PAYLOAD_DATA, "data": events}).encode()
        taken = intake(cfg, method="POST", path=TP2, query_string="", headers=HEADERS,
                       body=body, body_size=len(body), received_at_ms=int(time.time() * 1000),
                       remote="203.0.113.7")
        out.extend((list(o.headers), o.value) for o in taken.outputs)
    return out


class _Msg:
    __slots__ = ("_headers", "_offset", "_partition", "_value")

    def __init__(self, partition: int, offset: int, headers: Any, value: bytes) -> None:
        self._partition, self._offset = partition, offset
        self._headers, self._value = headers, value

    def topic(self) -> str:
        return RAW_TOPIC

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def headers(self) -> Any:
        return self._headers

    def value(self) -> bytes:
        return self._value

    def error(self) -> None:
        return None

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)


class _Consumer:
    def subscribe(self, topics: list[str]) -> None: ...
    def consumer_group_metadata(self) -> str:
        return "bench"
    def seek(self, tp: Any) -> None: ...
    def close(self) -> None: ...


class _Producer:
    def __init__(self) -> None:
        self.records = 0

    def init(self) -> None: ...
    def close(self, timeout: float = 0) -> None: ...

    def commit(self, records: Any, *, offsets: Any = None, group_metadata: Any = None) -> None:
        self.records += len(records)


def build_runner(fmt: str) -> tuple[Any, _Producer]:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from sidecar.snowplow.enrich.runner import EnrichRunner
    from sidecar.snowplow.settings import settings_from_dict

    settings = settings_from_dict({
        "topics": {"default": "snowplow.events", "default_format": fmt, "bad": "snowplow.bad",
                   "routes": [{"name": "page-views", "kind": ["page_view", "page_ping"],
                               "topic": "snowplow.page_views", "format": fmt}]},
        "schema_registry": {"url": "http://schema-registry.invalid:8081"},
        "dedup": {"ledger_topic": ""},
        "kafka": {"create_topics": False},
        "enrich": {"instance_id": "bench"},
        "log_level": "WARNING",
    })
    producer = _Producer()
    runner = EnrichRunner(settings, consumer_factory=lambda conf: _Consumer(),
                          producer_factory=lambda conf, tid: producer, ledger_factory=None)
    if runner.encoder is not None:
        # An in-memory registry: the encoder registers and frames as against a real one.
        runner.encoder._client = SchemaRegistryClient.new_client({"url": "mock://bench"})
    runner._start()
    return runner, producer


@dataclass
class Round:
    events: int
    enrich_s: float
    baseline_s: float

    @property
    def per_10k(self) -> float:
        return self.enrich_s / self.events * 10_000

    @property
    def baseline_per_10k(self) -> float:
        return self.baseline_s / self.events * 10_000

    @property
    def ratio(self) -> float:
        return self.enrich_s / self.baseline_s if self.baseline_s else float("nan")


def _batches(msgs: list[_Msg], size: int) -> Iterator[list[_Msg]]:
    for i in range(0, len(msgs), size):
        yield msgs[i:i + size]


def measure(requests: int, rounds: int, fmt: str, profile: bool = False) -> list[Round]:
    runner, producer = build_runner(fmt)
    batch = runner.settings.enrich.max_batch_records
    offset = 0

    def messages(n: int) -> list[_Msg]:
        nonlocal offset
        recs = raw_records(n)
        msgs = [_Msg(i % 3, offset + i, h, v) for i, (h, v) in enumerate(recs)]
        offset += len(msgs)
        return msgs

    for b in _batches(messages(max(50, requests // 10)), batch):   # warm: compile schemas
        runner.process(b)
    try:   # the collector of garbage as the command sets it up (an older tree may not)
        from sidecar.snowplow.enrich.cli import tune_gc
    except ImportError:
        pass
    else:
        tune_gc()
    prof = cProfile.Profile() if profile else None
    out = []
    for _ in range(rounds):
        msgs = messages(requests)
        events = len(msgs) * EVENTS_PER_REQUEST
        before = producer.records
        if prof is not None:
            prof.enable()
        t0 = time.process_time()
        for b in _batches(msgs, batch):
            if not runner.process(b):
                raise SystemExit("a batch was not committed: the bench measures nothing")
        enrich_s = time.process_time() - t0
        if prof is not None:
            prof.disable()
        if producer.records - before < events:
            raise SystemExit(f"only {producer.records - before} records for {events} events")
        values = [m.value() for m in msgs]
        t0 = time.process_time()
        for _ in range(BASELINE_PASSES):
            for v in values:
                json.loads(v)
        out.append(Round(events, enrich_s, (time.process_time() - t0) / BASELINE_PASSES))
    if prof is not None:
        stats = pstats.Stats(prof, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(30)
    return out


def summary(rounds: list[Round]) -> dict[str, float]:
    """The least CPU of the rounds, for enrich and for the baseline: what other work on
    the machine takes from a round (cache, preemption) only ever adds."""
    cpu = min(r.per_10k for r in rounds)
    baseline = min(r.baseline_per_10k for r in rounds)
    return {"cpu_s_per_10k": cpu, "json_loads_cpu_s_per_10k": baseline,
            "ratio_to_json_loads": cpu / baseline if baseline else float("nan"),
            "median_cpu_s_per_10k": statistics.median(r.per_10k for r in rounds),
            "events": sum(r.events for r in rounds)}


def measure_src(src: Path, requests: int, rounds: int, fmt: str) -> dict[str, float]:
    """The same measurement of the enrich in ``src`` (an older tree), in a subprocess."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.snowplow.bench_enrich", "--json", "--requests",
         str(requests), "--rounds", str(rounds), "--format", fmt],
        cwd=src, capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT)])})
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def compare(src: Path, requests: int, rounds: int, fmt: str, pairs: int
            ) -> tuple[dict[str, float], dict[str, float]]:
    """After (this tree) and before (``src``), each in its own process, alternately
    ``pairs`` times: a spell of load on the machine then weighs on both alike."""
    afters, befores = [], []
    for _ in range(pairs):
        befores.append(measure_src(src, requests, rounds, fmt))
        afters.append(measure_src(ROOT, requests, rounds, fmt))

    # The baseline does the same in both trees: one figure, the least of all the runs.
    baseline = min(r["json_loads_cpu_s_per_10k"] for r in (*afters, *befores))

    def least(results: list[dict[str, float]]) -> dict[str, float]:
        cpu = min(r["cpu_s_per_10k"] for r in results)
        return {"cpu_s_per_10k": cpu, "json_loads_cpu_s_per_10k": baseline,
                "ratio_to_json_loads": cpu / baseline,
                "events": sum(r["events"] for r in results)}
    return least(afters), least(befores)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def line(result: dict[str, float], fmt: str, before: dict[str, float] | None = None) -> str:
    """The one line the Snowplow benchmark prints for enrich without Kafka."""
    text = (f"enrich core, no Kafka ({fmt}): {result['cpu_s_per_10k']:.3f} CPU s per 10k "
            f"events, {result['ratio_to_json_loads']:.1f}x json.loads of the same records "
            f"({result['json_loads_cpu_s_per_10k']:.4f})")
    if before is not None:
        ratio = result["ratio_to_json_loads"] / before["ratio_to_json_loads"]
        text += (f"; before {before['cpu_s_per_10k']:.3f} CPU s "
                 f"({before['ratio_to_json_loads']:.1f}x json.loads): after / before "
                 f"{ratio:.2f}")
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=1000, help="POSTs of 10 events per round")
    p.add_argument("--rounds", type=int, default=5, help="rounds; the least is reported")
    p.add_argument("--format", choices=("avro", "json"), default="avro",
                   help="the routes' format (the compose stack uses avro)")
    p.add_argument("--baseline-src", default=None, metavar="DIR",
                   help="also measure the enrich of this older source tree")
    p.add_argument("--profile", action="store_true", help="cProfile the rounds (to stderr)")
    p.add_argument("--json", action="store_true", help="print only the result as JSON")
    p.add_argument("--pairs", type=int, default=3,
                   help="with --baseline-src: before and after this many times, alternately")
    args = p.parse_args(argv)
    load_before = load()
    if args.json or not args.baseline_src:
        result = summary(measure(args.requests, args.rounds, args.format, args.profile))
        if args.json:
            print(json.dumps(result))
            return 0
        before = None
    else:
        result, before = compare(Path(args.baseline_src), args.requests, args.rounds,
                                 args.format, args.pairs)
    print(line(result, args.format, before))
    print(f"load average (1, 5, 15 min): {load_before} before, {load()} after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
