"""Show the local stack working end to end and print a summary; exit non-zero if any check fails.

Run by `make demo` after `make up`: first the stack's own checks (Kafka transactions,
Connect's plugins), then the whole pipeline (demo/pipeline.py). Each step prints what it did
and what it checked.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid

from confluent_kafka import Producer

from connectors.rest import ConnectClient
from demo import pipeline
from devstack.committed import consume_committed
from devstack.stack import Stack
from sla import status

DEMO_EVENTS = 100


def transactional_round_trip(stack: Stack) -> tuple[bool, str]:
    """Commit one transaction and abort another; a read_committed consumer sees only the first."""
    topic = f"demo.round-trip.{uuid.uuid4().hex[:6]}"
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap,
                         "transactional.id": f"demo-{uuid.uuid4().hex[:6]}"})
    producer.init_transactions(30)
    started = time.monotonic()
    producer.begin_transaction()
    for i in range(DEMO_EVENTS):
        producer.produce(topic, key=str(i % 10).encode(), value=f"committed {i}".encode())
    producer.commit_transaction(30)
    producer.begin_transaction()
    for i in range(DEMO_EVENTS):
        producer.produce(topic, value=f"aborted {i}".encode())
    producer.flush(30)
    producer.abort_transaction(30)

    seen = [m.value() for m in consume_committed(stack.kafka_bootstrap, topic, group="demo",
                                                 at_least=DEMO_EVENTS, timeout_s=60)]
    took = time.monotonic() - started
    committed = sum(v.startswith(b"committed") for v in seen)
    aborted = sum(v.startswith(b"aborted") for v in seen)
    ok = committed == DEMO_EVENTS and aborted == 0
    return ok, (f"{committed}/{DEMO_EVENTS} committed events read back, {aborted} of "
                f"{DEMO_EVENTS} aborted ones visible ({took:.1f}s)")


def connect_plugins(stack: Stack) -> tuple[bool, str]:
    plugins = ConnectClient(stack.connect_url).plugins()
    classes = sorted(p["class"] for p in plugins)
    ours = [c for c in classes if c.startswith("io.conveyor.")]
    sink = "io.debezium.connector.jdbc.JdbcSinkConnector" in classes
    converter = "io.apicurio.registry.utils.converter.AvroConverter" in classes
    ok = sink and converter and len(ours) >= 4
    return ok, (f"{len(classes)} plugins; JDBC sink {'yes' if sink else 'MISSING'}, Avro "
                f"converter {'yes' if converter else 'MISSING'}, {len(ours)} Conveyor transforms")


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    # The tracker sets INFO on its own module loggers at import: a line per request.
    for name in ("snowplow_tracker", "snowplow_tracker.emitters", "snowplow_tracker.tracker"):
        logging.getLogger(name).setLevel(logging.WARNING)
    stack = Stack.from_env()
    stack.wait()
    checks = [
        ("Kafka transactions", transactional_round_trip),
        ("Connect plugins", connect_plugins),
    ]
    results = []
    for title, check in checks:
        print(f"== {title}")
        ok, detail = check(stack)
        print(f"   {'ok  ' if ok else 'FAIL'} {detail}")
        results.append((title, ok, detail))
    print("== Pipeline: RabbitMQ and Snowplow -> Kafka -> Connect -> PostgreSQL")
    results.extend(pipeline.run(stack, say=print))
    print("\nConveyor demo summary")
    for title, ok, detail in results:
        print(f"  [{'ok' if ok else 'FAIL'}] {title}: {detail}")
    failed = [t for t, ok, _ in results if not ok]
    print("All checks passed." if not failed else f"FAILED: {', '.join(failed)}")
    # What the on-call view says now (informational: a canary path that started a minute
    # ago may not have a p99 yet). The same numbers, with the last hour plotted, on the page.
    print()
    prom = status.Prometheus(stack.prometheus_url)
    try:
        print(status.render_text(status.collect(prom, history=False),
                                 f"{stack.sla_exporter_url}/status"))
    finally:
        prom.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
