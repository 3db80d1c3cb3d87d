"""``conveyor-bridge snowplow``: parse options, then call the library (``server.serve``)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from enum import IntEnum
from pathlib import Path
from typing import Any

import click

from sidecar.common import logs
from sidecar.common.cli import config_and_check_options, load_or_exit


class Exit(IntEnum):
    OK = 0
    FAILED = 1          # unexpected error (a bug): see the log
    USAGE = 2           # bad command line (click's own code)
    CONFIG = 3          # the config file, routes or Iglu schemas are invalid
    CHECK_FAILED = 4    # --check: Kafka is unreachable


log = logging.getLogger("sidecar.snowplow")

HELP = f"""Run a Snowplow collector that answers 200 only once requests are in Kafka.

\b
Speaks the collector protocol to unmodified Snowplow trackers:
  GET  /i, /ice.png                         one event in the querystring (pixel)
  POST /com.snowplowanalytics.snowplow/tp2  a payload_data batch (JSON, gzip ok)
  GET  /r/tp2?u=URL                         click redirect (http.redirect_domains)
  OPTIONS *                                 CORS preflight (echoes Origin)
  GET  /health  /sink-health  /metrics  /robots.txt
Each request is written, unparsed, as one raw record to raw.topic (a POST
larger than one record is split along event boundaries) and answered 200
once that record is committed, 503 only when Kafka cannot take it
(trackers retry). The requests of concurrent clients share one Kafka
transaction (group commit); a record Kafka refuses fails only its own
request. Parsing, Iglu validation, dedup and routing happen in
`conveyor-bridge snowplow-enrich`, which reads the same config file.

\b
Examples:
  conveyor-bridge snowplow --config snowplow.yaml --check   validate, connect, exit
  conveyor-bridge snowplow --config snowplow.yaml           serve on :8080 until SIGTERM

\b
Any setting can be overridden as CONVEYOR_SNOWPLOW__SECTION__KEY, e.g.
  CONVEYOR_SNOWPLOW__HTTP__PORT=8081
  CONVEYOR_SNOWPLOW__KAFKA__BOOTSTRAP_SERVERS=kafka:9092
Secrets come from the environment only: CONVEYOR_KAFKA_SASL_USERNAME,
CONVEYOR_KAFKA_SASL_PASSWORD, CONVEYOR_KAFKA_SSL_KEY_PASSWORD.
The instance id (part of transactional.id) is instance_id, else
CONVEYOR_INSTANCE_ID, else the hostname: keep it stable across restarts.
Example configs ship in sidecar/snowplow/examples/ (minimal.yaml, full.yaml).

\b
Exit codes: {", ".join(f"{e.value} {e.name.lower()}" for e in Exit)}.
"""


@click.command(name="snowplow", help=HELP)
@config_and_check_options(
    check_help="Validate the config, compile every Iglu schema, reach Kafka and list "
               "which topics exist; serve nothing. Exit 0 when all is well.")
def main(config_path: Path, check: bool) -> None:
    from .settings import load_settings  # lazily: keeps --help instant

    settings = load_or_exit(load_settings, config_path, Exit.CONFIG)
    logs.configure(settings.log_level)
    if check:
        sys.exit(run_check(settings, echo=click.echo))
    sys.exit(_run(settings))


def run_check(settings, echo: Callable[[str], None]) -> Exit:
    from .sink import RawSink

    code = check_config(settings, echo)
    if code is not Exit.OK:
        return code
    try:
        info = RawSink(settings).check()
    except Exception as exc:
        echo(f"kafka: FAIL {settings.kafka.bootstrap_servers}: {exc}")
        return Exit.CHECK_FAILED
    echo(f"kafka: ok, {info['brokers']} broker(s) at {settings.kafka.bootstrap_servers}")
    if not echo_topics(settings, info["topics"], echo):
        return Exit.CHECK_FAILED
    n = settings.commit.parallel_transactions
    ids = [settings.transactional_id] if n == 1 else [
        f"{settings.transactional_id}-{i}" for i in range(n)]
    echo(f"transactional.id: {', '.join(ids)}")
    return Exit.OK


def check_config(settings, echo: Callable[[str], None]) -> Exit:
    """The checks that need no network: the config and every Iglu schema (one file serves
    collector and enrich, so both commands check both)."""
    from .iglu import Resolver

    resolver = Resolver(settings.iglu_repositories, bundled=settings.iglu.bundled)
    keys = list(resolver.iter_keys())
    problems = resolver.check_all()
    echo(f"config: ok ({len(settings.topics.routes)} route(s), raw records to "
         f"{settings.raw.topic}, default topic {settings.topics.default}, bad rows to "
         f"{settings.topics.bad})")
    echo(f"iglu: {len(keys) - len(problems)}/{len(keys)} schema(s) compile, from "
         f"{', '.join(str(r) for r in resolver.repositories)}")
    for uri, problem in problems.items():
        echo(f"  FAIL {uri}: {problem}")
    return Exit.CONFIG if problems else Exit.OK


def echo_topics(settings, topics: dict[str, bool], echo: Callable[[str], None]) -> bool:
    for topic, exists in topics.items():
        state = "exists" if exists else ("will be created" if settings.kafka.create_topics
                                         else "MISSING")
        echo(f"  topic {topic}: {state}")
    return settings.kafka.create_topics or all(topics.values())


def _run(settings) -> Exit:
    from .server import serve

    async def main_async() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, _on_signal, stop, sig)
        await serve(settings, stop)

    try:
        _run_loop(main_async())
    except Exception:
        log.exception("snowplow.failed")
        return Exit.FAILED
    return Exit.OK


def _run_loop(coro: Coroutine[Any, Any, None]) -> None:
    """uvloop where installed: the HTTP server's per-request overhead is a third lower."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
        return
    uvloop.run(coro)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("snowplow.signal", extra={"signal": sig.name})
    stop.set()
