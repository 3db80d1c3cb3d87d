"""``conveyor-bridge rabbitmq``: parse options, then call the library (``bridge.Bridge``)."""

from __future__ import annotations

import logging
import signal
import sys
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING

import click

from sidecar.common import logs
from sidecar.common.cli import config_and_check_options, load_or_exit
from sidecar.common.errors import ConfigError
from sidecar.common.ops import OpsServer

if TYPE_CHECKING:
    from .settings import BridgeSettings, Secrets


class Exit(IntEnum):
    OK = 0
    FAILED = 1          # unexpected error (a bug): see the log
    USAGE = 2           # bad command line (click's own code)
    CONFIG = 3          # the config file, routes or schemas are invalid; nothing consumed
    CHECK_FAILED = 4    # --check: a dependency (RabbitMQ, Kafka, registry) is unreachable
    # 5 is retired: a fatal producer error drops that producer and its channel (RabbitMQ
    # redelivers, the next batch gets a new producer) and the bridge goes on.
    TOPOLOGY = 6        # a queue lets RabbitMQ drop messages, or is shared without single
                        # active consumer (see topology.py); nothing consumed


log = logging.getLogger("sidecar.rabbitmq")

HELP = f"""Drain RabbitMQ queues into Kafka topics, exactly once.

\b
Each delivery is routed to a topic by the config's rules (routing key,
exchange, AMQP type or header patterns; first match wins), wrapped in the
Conveyor envelope (JSON, or Avro through the schema registry) and produced
inside a Kafka transaction together with its event_id in the dedup ledger.
RabbitMQ is acked only after the transaction commits; a redelivery after a
crash is recognised in the ledger and becomes a no-op. Messages that cannot
be decoded, routed, validated or that are too large go to the dead-letter
topic with the reason in headers, in the same transaction.

\b
Examples:
  conveyor-bridge rabbitmq --config rabbitmq.yaml --check   validate, connect, exit
  conveyor-bridge rabbitmq --config rabbitmq.yaml           run until SIGTERM

\b
Secrets come from the environment only:
  CONVEYOR_RABBITMQ_URL, or CONVEYOR_RABBITMQ_USER + CONVEYOR_RABBITMQ_PASSWORD
  CONVEYOR_KAFKA_SASL_USERNAME, CONVEYOR_KAFKA_SASL_PASSWORD
  CONVEYOR_SCHEMA_REGISTRY_USER_INFO
Any setting can be overridden as CONVEYOR_RMQ__SECTION__KEY, e.g.
  CONVEYOR_RMQ__BATCH__MAX_MESSAGES=500   CONVEYOR_RMQ__OPS__PORT=9001
The instance id (part of transactional.id) is instance_id, else
CONVEYOR_INSTANCE_ID, else the hostname: keep it stable across restarts.

\b
Example configs ship in sidecar/rabbitmq/examples/ (minimal.yaml, full.yaml).

\b
Exit codes: {", ".join(f"{e.value} {e.name.lower()}" for e in Exit)}.
"""


@click.command(name="rabbitmq", help=HELP)
@config_and_check_options(
    check_help="Validate the config, routes and schemas and try RabbitMQ, Kafka and the "
               "schema registry; consume nothing. Exit 0 when all is well.")
def main(config_path: Path, check: bool) -> None:
    from .settings import Secrets, load_settings  # lazily: keeps --help instant

    settings = load_or_exit(load_settings, config_path, Exit.CONFIG)
    secrets = Secrets()
    logs.configure(settings.log_level)
    # pika logs every socket step at INFO (and a lost connection as an ERROR with a
    # traceback), the registry client every request: our own events (rabbitmq.lost,
    # rabbitmq.reconnecting, batch.aborted, ...) say what matters, once.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    if check:
        from .check import run_check

        sys.exit(run_check(settings, secrets, echo=click.echo))
    sys.exit(_run(settings, secrets))


def _run(settings: BridgeSettings, secrets: Secrets) -> Exit:
    from .bridge import Bridge
    from .check import enforce_topology
    from .topology import TopologyRefused

    try:
        bridge = Bridge(settings, secrets)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        return Exit.CONFIG

    def on_signal(signum: int, _frame: object) -> None:
        log.info("bridge.signal", extra={"signal": signal.Signals(signum).name})
        bridge.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        enforce_topology(settings, secrets)
    except TopologyRefused as exc:
        click.echo(f"error: refusing to consume: {exc}", err=True)
        log.error("bridge.topology_refused", extra={"error": str(exc)})
        return Exit.TOPOLOGY
    ops = OpsServer(settings.ops.host, settings.ops.port, bridge.readiness,
                    registry=bridge.metrics.registry).start()
    log.info("bridge.starting", extra={"stream": settings.stream,
                                       "instance": settings.instance,
                                       "queues": settings.rabbitmq.queues})
    try:
        bridge.run()
    except Exception:
        log.exception("bridge.failed")
        return Exit.FAILED
    finally:
        ops.stop()
    log.info("bridge.stopped")
    return Exit.OK
