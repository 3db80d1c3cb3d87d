"""``--check``: validate a config and reach every dependency, consuming nothing.

Static checks first (routes compile, templates name known fields, schema files parse), then
connectivity: RabbitMQ (each queue must exist; checked passively, nothing is declared),
each queue's settings through the management API (``topology.assess``: nothing RabbitMQ
may drop, single active consumer), Kafka (metadata), and the schema registry when a route
uses Avro. ``enforce_topology`` is the same queue check at start-up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pika
import pika.exceptions
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from sidecar.common.avro import AvroEncoder, RegistryUnavailable
from sidecar.common.errors import ConfigError

from .amqp import LOST, describe
from .core import Core
from .payloads import load_route_schemas
from .settings import BridgeSettings, Secrets
from .topology import Finding, TopologyRefused, TopologyUnknown, assess, declared_info, fetch

CHECK_TIMEOUT_S = 10.0
log = logging.getLogger(__name__)


def run_check(settings: BridgeSettings, secrets: Secrets,
              echo: Callable[[str], None] = print) -> int:
    from .cli import Exit

    try:
        schemas = load_route_schemas(settings.all_routes(), settings.base_dir)
        Core(settings, schemas)
    except ConfigError as exc:
        echo(f"FAIL config: {exc}")
        return Exit.CONFIG
    echo(f"ok   config: stream {settings.stream!r}, instance {settings.instance!r}, "
         f"{len(settings.routes)} route(s)"
         + (", a default route" if settings.default_route else ", no default route"))
    for route in settings.all_routes():
        schema = f", schema {route.schema_file}" if route.schema_file else ""
        echo(f"       route {route.label}: -> {route.topic} ({route.format}{schema}, "
             f"key {route.key})")
    echo(f"       dead letters -> {settings.dead_letter_topic}; "
         f"ledger -> {settings.ledger_topic} (window {settings.ledger.window_events} ids)")

    failures = 0
    for name, probe in (("rabbitmq", lambda: _rabbitmq(settings, secrets)),
                        ("kafka", lambda: _kafka(settings, secrets))):
        try:
            echo(f"ok   {name}: {probe()}")
        except Exception as exc:  # report every dependency, not just the first failure
            failures += 1
            echo(f"FAIL {name}: {exc}")
    refused = False
    if settings.rabbitmq.verify_topology:
        try:
            for f in topology_findings(settings, secrets):
                refused |= f.refuse
                echo(f"{'FAIL' if f.refuse else 'ok  '} queue {f.message}")
        except TopologyUnknown as exc:
            refused = True
            echo(f"FAIL queue settings: {exc}")
    else:
        echo("skip queue settings: rabbitmq.verify_topology is off")
    if any(r.format == "avro" for r in settings.all_routes()):
        info = secrets.schema_registry_user_info
        encoder = AvroEncoder(settings.schema_registry.url,
                              user_info=info.get_secret_value() if info else None)
        try:
            subjects = encoder.check()
            echo(f"ok   schema registry: {settings.schema_registry.url} "
                 f"({len(subjects)} subjects)")
        except RegistryUnavailable as exc:
            failures += 1
            echo(f"FAIL schema registry: {exc}")
    if failures:
        return Exit.CHECK_FAILED
    return Exit.TOPOLOGY if refused else Exit.OK


def topology_findings(settings: BridgeSettings, secrets: Secrets) -> list[Finding]:
    """``topology.assess`` for every queue, from the management API; a queue we declare
    and that does not exist yet is judged by its declaration."""
    r = settings.rabbitmq
    user, password = secrets.amqp_credentials(settings)
    declared = {q.name: q for q in r.topology.queues} if r.topology.declare else {}
    out: list[Finding] = []
    for queue in r.queues:
        info, version = fetch(r.management(), user, password, r.vhost(), queue)
        if info is None:
            if queue not in declared:
                out.append(Finding(True, f"{queue}: no such queue in vhost {r.vhost()!r}"))
                continue
            info = declared_info(declared[queue].arguments)
        out += assess(queue, info, version, accept_message_loss=r.accept_message_loss,
                      require_single_active_consumer=r.require_single_active_consumer)
    return out


def enforce_topology(settings: BridgeSettings, secrets: Secrets,
                     wait_s: float = 60.0) -> None:
    """Start-up: raise TopologyRefused when a queue lets RabbitMQ drop messages (or is
    shared without single active consumer); waits up to ``wait_s`` for the management
    API while RabbitMQ starts."""
    if not settings.rabbitmq.verify_topology:
        log.warning("topology.not_verified", extra={"queues": settings.rabbitmq.queues})
        return
    deadline = time.monotonic() + wait_s
    while True:
        try:
            findings = topology_findings(settings, secrets)
            break
        except TopologyUnknown:
            if time.monotonic() >= deadline:
                raise
            time.sleep(2.0)
    refusals = [f.message for f in findings if f.refuse]
    for f in findings:
        if not f.refuse:
            log.info("topology.ok", extra={"finding": f.message})
    if refusals:
        raise TopologyRefused("; ".join(refusals))


def _rabbitmq(settings: BridgeSettings, secrets: Secrets) -> str:
    params = pika.URLParameters(secrets.amqp_url(settings))
    params.socket_timeout = CHECK_TIMEOUT_S
    params.connection_attempts = 1
    try:
        conn = pika.BlockingConnection(params)
    except LOST as exc:
        raise RuntimeError(f"cannot connect: {describe(exc)}") from exc
    declared = {q.name for q in settings.rabbitmq.topology.queues} \
        if settings.rabbitmq.topology.declare else set()
    out = []
    try:
        for queue in settings.rabbitmq.queues:
            if queue in declared:
                out.append(f"{queue} (declared at start)")
                continue
            ch = conn.channel()
            try:
                ok = ch.queue_declare(queue, passive=True)
            except pika.exceptions.ChannelClosedByBroker as exc:
                raise RuntimeError(f"queue {queue!r}: {exc.reply_text}") from exc
            out.append(f"{queue} ({ok.method.message_count} ready, "
                       f"{ok.method.consumer_count} consumers)")
            ch.close()
    finally:
        if conn.is_open:
            conn.close()
    return "queues " + ", ".join(out)


def _kafka(settings: BridgeSettings, secrets: Secrets) -> str:
    admin = AdminClient(secrets.kafka_client_config(settings))
    try:
        meta = admin.list_topics(timeout=CHECK_TIMEOUT_S)
    except KafkaException as exc:
        raise RuntimeError(f"no metadata from {settings.kafka.bootstrap_servers}: "
                           f"{exc.args[0].str()}") from exc
    ledger = "exists" if settings.ledger_topic in meta.topics else "will be created"
    # Topics without template fields can be checked now; a missing one that will not be
    # created would make every transaction for it abort and the queue stall.
    static = {r.topic for r in settings.all_routes() if "{" not in r.topic}
    static.add(settings.dead_letter_topic)
    missing = sorted(t for t in static if t not in meta.topics)
    if missing and not settings.kafka.create_topics:
        raise RuntimeError(f"topics missing and kafka.create_topics is off: {missing}")
    topics = f"{len(static) - len(missing)}/{len(static)} fixed topics exist" + \
        (f", {len(missing)} will be created" if missing else "")
    return (f"{len(meta.brokers)} broker(s) at {settings.kafka.bootstrap_servers}; "
            f"ledger topic {ledger}; {topics}")
