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
from . import status
from .exporter import health
from .service import build

EXIT_OK = 0
EXIT_NOT_OK = 1     # --summary: a path is not OK, or Prometheus cannot be read
EXIT_CONFIG = 2

log = logging.getLogger("sla")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML settings (sla/examples/full.yaml lists every key); "
                   "CONVEYOR_SLA__<SECTION>__<KEY> variables override it.")
@click.option("--once", is_flag=True,
              help="Measure once, print the metrics page and exit (no server).")
@click.option("--summary", is_flag=True,
              help="Print the SLA summary from Prometheus (status.prometheus_url) and exit: "
                   "1 when a path is not OK or Prometheus cannot be read.")
@click.option("--prometheus-url", default=None, metavar="URL",
              help="Prometheus for --summary and /status, instead of status.prometheus_url.")
def main(config_path: str | None, once: bool, summary: bool,
         prometheus_url: str | None) -> None:
    """Serve Conveyor's SLA measures on /metrics and /health.

    \b
    Per sink connector (group connect-<name>) and partition: lag in seconds from the
    timestamp of the record at the committed offset, and records lost to retention.
    Per warehouse table with accepted_at: freshness and a landing-delay histogram.
    Per canary path (canary.rabbitmq, canary.snowplow; off unless enabled): a synthetic
    event every interval, its publish-to-row latency, canaries sent, seen and lost.
    With status.prometheus_url, a status page on /status (and /): each path's canaries,
    each sink's lag, each table's freshness, the last hour as plots, the alerts firing.
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
    prometheus_url = prometheus_url or settings.status.prometheus_url
    if summary:
        if not prometheus_url:
            click.echo("conveyor-sla: --summary needs status.prometheus_url or --prometheus-url",
                       err=True)
            sys.exit(EXIT_CONFIG)
        prom = status.Prometheus(prometheus_url, settings.status.timeout_seconds)
        state = status.collect(prom, history=False)
        click.echo(status.render_text(state))
        ok = state.error is None and status.worst(state.paths) == "OK"
        sys.exit(EXIT_OK if ok else EXIT_NOT_OK)
    # --once measures what is there: no canary is sent for one look.
    collector = build(settings, canaries=not once)
    if once:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        click.echo(generate_latest(registry).decode(), nl=False)
        sys.exit(EXIT_OK)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    pages = {}
    if prometheus_url:
        prom = status.Prometheus(prometheus_url, settings.status.timeout_seconds)
        public = settings.status.prometheus_public_url or prometheus_url
        pages = {"/status": status.page(prom, public), "/": status.page(prom, public)}
    server = OpsServer(settings.listen_host, settings.port, lambda: health(collector),
                       registry, pages)
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
