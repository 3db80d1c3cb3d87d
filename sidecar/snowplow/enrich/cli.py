"""``conveyor-bridge snowplow-enrich``: parse options, then run the loop (``runner``)."""

from __future__ import annotations

import gc
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import click

from sidecar.common import logs
from sidecar.common.cli import config_and_check_options, load_or_exit
from sidecar.common.ops import OpsServer

from ..cli import Exit, check_config, echo_topics

log = logging.getLogger("sidecar.snowplow.enrich")
# New container objects between two collections of the youngest generation.
GC_THRESHOLD = 20_000

HELP = f"""Enrich Snowplow raw records into good events and bad rows, exactly once.

\b
Reads the raw topic the collector writes (raw.topic) read_committed, as a
member of the consumer group enrich.group_id (scale by the raw topic's
partitions), and for each batch, in one Kafka transaction that also commits
the consumer's offsets: parses the tracker protocol, validates every event
against Iglu schemas, skips event ids already committed (dedup ledger),
routes good events to their topics (JSON or Avro) and writes everything
else as bad rows to topics.bad with the reason and the original bytes.
Nothing a client sent can stop it: a record it cannot process is a bad row.

\b
Examples:
  conveyor-bridge snowplow-enrich --config snowplow.yaml --check
  conveyor-bridge snowplow-enrich --config snowplow.yaml     run until SIGTERM

\b
The same config file as the collector (see sidecar/snowplow/examples/);
enrich reads the topics, iglu, dedup, limits, enrich and enrichments
sections. Enrichments (each off unless enabled): ua_parser, anon_ip,
campaign_attribution, referer_parser, event_fingerprint, ip_lookup (needs a
MaxMind .mmdb file; none ships) and pii (HMAC key from the environment
variable enrichments.pii.key_env, default CONVEYOR_SNOWPLOW_PII_KEY).
/health and /metrics on enrich.port (9000). The instance (part of
transactional.id and the static group.instance.id) is enrich.instance_id,
else CONVEYOR_INSTANCE_ID, else the hostname: unique per running instance,
stable across its restarts.

\b
Exit codes: {", ".join(f"{e.value} {e.name.lower()}" for e in Exit)}.
"""


@click.command(name="snowplow-enrich", help=HELP)
@config_and_check_options(
    check_help="Validate the config, compile every Iglu schema, reach Kafka (and the schema "
               "registry when a route is Avro) and list which topics exist; exit 0 if all "
               "is well.")
def main(config_path: Path, check: bool) -> None:
    from ..settings import load_settings  # lazily: keeps --help instant

    settings = load_or_exit(load_settings, config_path, Exit.CONFIG)
    logs.configure(settings.log_level)
    if check:
        sys.exit(run_check(settings, echo=click.echo))
    sys.exit(_run(settings))


def run_check(settings, echo: Callable[[str], None]) -> Exit:
    from ..sink import RawSink

    code = check_config(settings, echo)
    if code is not Exit.OK:
        return code
    if not check_enrichments(settings, echo):
        return Exit.CHECK_FAILED
    try:
        topics = [settings.raw.topic, *settings.enrich_topics()]
        if settings.dedup.ledger_topic:
            topics.append(settings.dedup.ledger_topic)
        info = RawSink(settings).check(topics)
    except Exception as exc:
        echo(f"kafka: FAIL {settings.kafka.bootstrap_servers}: {exc}")
        return Exit.CHECK_FAILED
    echo(f"kafka: ok, {info['brokers']} broker(s) at {settings.kafka.bootstrap_servers}")
    if settings.uses_avro:
        from sidecar.common.avro import AvroEncoder, RegistryUnavailable

        try:
            AvroEncoder(settings.schema_registry.url).check()
        except RegistryUnavailable as exc:
            echo(f"schema registry: FAIL {exc}")
            return Exit.CHECK_FAILED
        echo(f"schema registry: ok at {settings.schema_registry.url}")
    if not echo_topics(settings, info["topics"], echo):
        return Exit.CHECK_FAILED
    echo(f"transactional.id: {settings.enrich_transactional_id}, group "
         f"{settings.enrich.group_id}")
    return Exit.OK


def check_enrichments(settings, echo: Callable[[str], None]) -> bool:
    """Which enrichments run, whether each can (a PII key in the environment, a referer
    database that parses) and, plainly, whether a MaxMind database is configured and
    readable."""
    from sidecar.common.errors import ConfigError

    from ..enrichments import build_enrichments
    from ..enrichments.ip_lookup import describe

    cfg = settings.enrichments
    db = cfg.ip_lookup.database if cfg.ip_lookup.enabled else None
    ok, line = describe(db if db is None or db.is_absolute() else settings.base_dir / db)
    echo(line)
    try:
        chain = build_enrichments(cfg, settings.base_dir)
    except ConfigError as exc:
        echo(f"enrichments: FAIL {exc}")
        return False
    echo(f"enrichments: {', '.join(chain.names) if chain.names else 'none enabled'}")
    return ok


def tune_gc() -> None:
    """Collect garbage less often than CPython's default (every 700 new container objects).

    A batch keeps thousands of outputs alive until its commit (each a few dicts), so the
    young generations are traversed over and over while they fill: about a tenth of
    enrich's CPU at the default. What is alive at start (modules, settings, schemas) is
    frozen out of the collections altogether. Cycles are rare here and still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


def _run(settings) -> Exit:
    from .runner import EnrichRunner

    tune_gc()
    stop = threading.Event()

    def on_signal(sig: int, _frame: object) -> None:
        log.info("enrich.signal", extra={"signal": signal.Signals(sig).name})
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runner = EnrichRunner(settings)
    ops = OpsServer(settings.enrich.host, settings.enrich.port, readiness=runner.readiness,
                    registry=runner.metrics.registry).start()
    try:
        runner.run(stop)
    except Exception:
        log.exception("enrich.failed")
        return Exit.FAILED
    finally:
        ops.stop()
    log.info("enrich.stopped")
    return Exit.OK
