"""Each service of the stack does real work: RabbitMQ and PostgreSQL round trips, and a
Connect worker that lists our transforms, the JDBC sink and the Avro converter."""

from __future__ import annotations

import httpx
import pika
import psycopg

from devstack.stack import Stack
from devstack.topology import QUEUE_ARGUMENTS, declare_topology

TRANSFORMS = [
    "io.conveyor.transforms.EnvelopeUnwrap$Value",
    "io.conveyor.transforms.RouteByField$Key",
    "io.conveyor.transforms.RouteByField$Value",
    "io.conveyor.transforms.MaskFields$Key",
    "io.conveyor.transforms.MaskFields$Value",
    "io.conveyor.transforms.SnowplowEventToRow$Value",
    "io.conveyor.transforms.InsertLandedAt$Value",
]
JDBC_SINK = "io.debezium.connector.jdbc.JdbcSinkConnector"
CDC_SOURCE = "io.debezium.connector.postgresql.PostgresConnector"
AVRO_CONVERTER = "io.apicurio.registry.utils.converter.AvroConverter"


def test_rabbitmq_round_trip(stack: Stack, unique) -> None:
    queue = unique("roundtrip")
    declare_topology(stack.rabbitmq_url, queue)  # a quorum queue, like every queue of ours
    conn = pika.BlockingConnection(pika.URLParameters(stack.rabbitmq_url))
    try:
        channel = conn.channel()
        channel.confirm_delivery()
        for i in range(3):
            channel.basic_publish("", queue, f"m{i}".encode(),
                                  pika.BasicProperties(delivery_mode=2))
        got = []
        # A consumer, not basic.get: a single-active-consumer quorum queue refuses basic.get
        # (405 RESOURCE_LOCKED), as it must, or a getter would bypass the active consumer.
        for method, _props, body in channel.consume(queue, auto_ack=False,
                                                    inactivity_timeout=10):
            assert method is not None, "a published message is missing"
            got.append(body)
            channel.basic_ack(method.delivery_tag)
            if len(got) == 3:
                break
        channel.cancel()
        assert got == [b"m0", b"m1", b"m2"]
        assert channel.queue_declare(queue, passive=True).method.message_count == 0
        channel.queue_delete(queue)
    finally:
        conn.close()


def test_bridge_queue_has_our_topology(stack: Stack) -> None:
    """The compose bridge declares its queue (sidecar/rabbitmq/examples/compose.yaml) as
    devstack/topology.py does: quorum, no delivery limit, single active consumer."""
    resp = httpx.get(f"{stack.rabbitmq_management_url}/api/queues/%2F/conveyor.events",
                     auth=(stack.rabbitmq_user, stack.rabbitmq_password), timeout=10)
    resp.raise_for_status()
    queue = resp.json()
    assert queue["type"] == "quorum"
    assert queue["arguments"] == QUEUE_ARGUMENTS
    declare_topology(stack.rabbitmq_url, "conveyor.events", "events")  # accepted as equal


def test_postgres_round_trip(stack: Stack, unique) -> None:
    table = unique("roundtrip").replace("-", "_")
    with psycopg.connect(stack.postgres_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("warehouse",)
        conn.execute(f"CREATE TABLE {table} (event_id text PRIMARY KEY, n int)")
        conn.execute(f"INSERT INTO {table} VALUES ('a', 1), ('b', 2)")
        rows = conn.execute(f"SELECT event_id, n FROM {table} ORDER BY event_id").fetchall()
        conn.execute(f"DROP TABLE {table}")
    assert rows == [("a", 1), ("b", 2)]


def test_connect_lists_our_plugins(stack: Stack) -> None:
    resp = httpx.get(f"{stack.connect_url}/connector-plugins",
                     params={"connectorsOnly": "false"}, timeout=30)
    resp.raise_for_status()
    versions = {p["class"]: p.get("version") for p in resp.json()}
    missing = {JDBC_SINK, CDC_SOURCE, AVRO_CONVERTER, *TRANSFORMS} - versions.keys()
    assert not missing, f"Connect does not list {sorted(missing)}"
    # Connect reports a plugin's version only when it implements Versioned ("undefined" else).
    unversioned = {t: versions[t] for t in TRANSFORMS if versions[t] in (None, "", "undefined")}
    assert not unversioned, f"transforms listed without a version: {unversioned}"
