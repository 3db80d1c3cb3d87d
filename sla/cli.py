"""``conveyor-sla``: serve the SLA exporter, or measure once and print what it would serve."""

from __future__ import annotations

import logging
import sys
import threading

import click
from prometheus_client import CollectorRegistry, generate_latest

from sidecar.common import logs
from sidecar.common.errors import ConfigError
from sidecar.common.ops import OpsServer

from . import settings as settings_mod
from .exporter import health
from .service import build

EXIT_OK = 0
EXIT_CONFIG = 2

log = logging.getLogger("sla")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML settings (sla/examples/full.yaml lists every key); "
                   "CONVEYOR_SLA__<SECTION>__<KEY> variables override it.")
@click.option("--once", is_flag=True,
              help="Measure once, print the metrics page and exit (no server).")
def main(config_path: str | None, once: bool) -> None:
    """Serve Conveyor's SLA measures on /metrics and /health.

    \b
    Per sink connector (group connect-<name>) and partition: lag in seconds from the
    timestamp of the record at the committed offset, and records lost to retention.
    Per warehouse table with accepted_at: freshness and a landing-delay histogram.
    Per canary path (canary.rabbitmq, canary.snowplow; off unless enabled): a synthetic
    event every interval, its publish-to-row latency, canaries sent, seen and lost.
    Secrets only from the environment: CONVEYOR_POSTGRES_USER, CONVEYOR_POSTGRES_PASSWORD,
    CONVEYOR_KAFKA_SASL_USERNAME, CONVEYOR_KAFKA_SASL_PASSWORD.
    """
    try:
        settings = settings_mod.load(config_path)
    except ConfigError as exc:
        click.echo(f"conveyor-sla: {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    logs.configure(settings.log_level)
    # httpx logs every request at INFO: one Connect listing per scrape is not news.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # pika logs each step of every (re)connection at INFO; its warnings still show.
    logging.getLogger("pika").setLevel(logging.WARNING)
    # --once measures what is there: no canary is sent for one look.
    collector = build(settings, canaries=not once)
    if once:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        click.echo(generate_latest(registry).decode(), nl=False)
        sys.exit(EXIT_OK)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server = OpsServer(settings.listen_host, settings.port, lambda: health(collector),
                       registry)
    log.info("sla.serving", extra={"host": settings.listen_host, "port": settings.port})
    server.start()
    if collector.canaries is not None:
        collector.canaries.start()
    try:
        threading.Event().wait()   # until a signal ends the process
    except KeyboardInterrupt:
        pass
    finally:
        if collector.canaries is not None:
            collector.canaries.stop()
        server.stop()
    sys.exit(EXIT_OK)
