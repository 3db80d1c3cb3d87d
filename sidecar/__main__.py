"""``conveyor-bridge``: the one entry point of the bridge image; the first word picks the bridge."""

from __future__ import annotations

import importlib
import signal
import threading

import click

from sidecar.common import logs
from sidecar.common.ops import OpsServer

# Each bridge package exposes a click command as ``cli.main``; imported lazily so that one
# bridge's dependencies never slow down or break the other's start.
BRIDGES = {
    "rabbitmq": "sidecar.rabbitmq.cli",
    "snowplow": "sidecar.snowplow.cli",
    "snowplow-enrich": "sidecar.snowplow.enrich.cli",
    "snowplow-recover": "sidecar.snowplow.recover",
    "snowplow-micro": "sidecar.snowplow.micro",
}


class BridgeGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*BRIDGES, *super().list_commands(ctx)])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in BRIDGES:
            try:
                return importlib.import_module(BRIDGES[name]).main
            except ModuleNotFoundError:
                return None
        return super().get_command(ctx, name)


@click.group(cls=BridgeGroup)
def main() -> None:
    """Conveyor bridges: move events into Kafka exactly once.

    \b
    Examples:
      conveyor-bridge rabbitmq --config rabbitmq.yaml     drain RabbitMQ queues
      conveyor-bridge snowplow --config snowplow.yaml     run the Snowplow collector
      conveyor-bridge snowplow-enrich --config snowplow.yaml   enrich what it collected
      conveyor-bridge snowplow-recover --config snowplow.yaml --since -24h --dry-run
                                                          replay bad rows through enrich
      conveyor-bridge snowplow-micro --config snowplow.yaml    the last minutes' events
      conveyor-bridge stub --port 9000                    health endpoint only
    """


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Address for /health, /metrics.")
@click.option("--port", default=9000, show_default=True, help="Port for /health and /metrics.")
def stub(host: str, port: int) -> None:
    """Serve /health and /metrics and nothing else, until SIGTERM or SIGINT."""
    logs.configure()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server = OpsServer(host, port, readiness=lambda: {"running": not stop.is_set()}).start()
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
