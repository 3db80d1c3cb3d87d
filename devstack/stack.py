"""The local stack as `make up`, the demo, the benchmarks and the tests see it: endpoints,
readiness probes, restarts.

Endpoints default to the host ports of docker/compose.yml and can all be overridden from
the environment, so the same tests run against a stack started elsewhere:

    KAFKA_BOOTSTRAP, SCHEMA_REGISTRY_URL, CONNECT_URL, CONNECT_2_URL, RABBITMQ_URL,
    RABBITMQ_MANAGEMENT_URL, POSTGRES_DSN, RABBITMQ_BRIDGE_URL, COLLECTOR_URL, ENRICH_URL,
    PROMETHEUS_URL, ALERTMANAGER_URL, SLA_EXPORTER_URL

Readiness means a real round trip per service (Kafka metadata, a registry query, the
Connect REST API, an AMQP connection, a SQL query), never a fixed sleep.

    python -m devstack.stack preflight  # fail clearly if a host port is taken
    python -m devstack.stack up         # compose up -d (retried), then wait
    python -m devstack.stack wait       # block until every service is ready
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker" / "compose.yml"
PROJECT = "conveyor"
READY_TIMEOUT_S = float(os.environ.get("CONVEYOR_READY_TIMEOUT", "300"))


def compose_command() -> list[str]:
    """docker-compose 1.x where installed (Debian's), else the `docker compose` plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


def compose(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [*compose_command(), "-f", str(COMPOSE_FILE), "-p", PROJECT, *args]
    return subprocess.run(cmd, check=check, text=True, capture_output=True)


@dataclass(frozen=True)
class Stack:
    kafka_bootstrap: str
    schema_registry_url: str
    connect_url: str
    connect_2_url: str
    # Fields that carry credentials stay out of repr(): it ends up in test reports.
    rabbitmq_url: str = field(repr=False)
    rabbitmq_management_url: str
    rabbitmq_user: str
    rabbitmq_password: str = field(repr=False)
    postgres_dsn: str = field(repr=False)
    fulfilment_dsn: str = field(repr=False)
    rabbitmq_bridge_url: str = "http://localhost:9101"
    collector_url: str = "http://localhost:8080"
    enrich_url: str = "http://localhost:9102"
    prometheus_url: str = "http://localhost:9090"
    alertmanager_url: str = "http://localhost:9093"
    sla_exporter_url: str = "http://localhost:9103"

    @classmethod
    def from_env(cls) -> Stack:
        env = os.environ.get
        user = env("CONVEYOR_RABBITMQ_USER", "conveyor")
        password = env("CONVEYOR_RABBITMQ_PASSWORD", "")
        pg_user = env("CONVEYOR_POSTGRES_USER", "conveyor")
        pg_password = env("CONVEYOR_POSTGRES_PASSWORD", "")
        return cls(
            kafka_bootstrap=env("KAFKA_BOOTSTRAP", "localhost:9092"),
            schema_registry_url=env("SCHEMA_REGISTRY_URL",
                                    "http://localhost:8081/apis/ccompat/v7"),
            connect_url=env("CONNECT_URL", "http://localhost:8083"),
            connect_2_url=env("CONNECT_2_URL", "http://localhost:8084"),
            rabbitmq_url=env("RABBITMQ_URL",
                             f"amqp://{quote(user, safe='')}:{quote(password, safe='')}"
                             "@localhost:5672/%2F"),
            rabbitmq_management_url=env("RABBITMQ_MANAGEMENT_URL", "http://localhost:15672"),
            rabbitmq_user=user,
            rabbitmq_password=password,
            postgres_dsn=env("POSTGRES_DSN",
                             f"postgresql://{quote(pg_user, safe='')}:"
                             f"{quote(pg_password, safe='')}@localhost:5432/warehouse"),
            fulfilment_dsn=env("CONVEYOR_FULFILMENT_DSN",
                               f"postgresql://{quote(pg_user, safe='')}:"
                               f"{quote(pg_password, safe='')}@localhost:5433/fulfilment"),
            rabbitmq_bridge_url=env("RABBITMQ_BRIDGE_URL", "http://localhost:9101"),
            collector_url=env("COLLECTOR_URL", "http://localhost:8080"),
            enrich_url=env("ENRICH_URL", "http://localhost:9102"),
            prometheus_url=env("PROMETHEUS_URL", "http://localhost:9090"),
            alertmanager_url=env("ALERTMANAGER_URL", "http://localhost:9093"),
            sla_exporter_url=env("SLA_EXPORTER_URL", "http://localhost:9103"),
        )

    # -- probes: each returns True once the service does real work ------------------------

    def kafka_ready(self) -> bool:
        from confluent_kafka.admin import AdminClient

        try:
            # log_level 0: a broker still starting is expected here, not worth a log line.
            admin = AdminClient({"bootstrap.servers": self.kafka_bootstrap, "log_level": 0})
            md = admin.list_topics(timeout=3)
            return bool(md.brokers)
        except Exception:
            return False

    def schema_registry_ready(self) -> bool:
        return _http_ok(f"{self.schema_registry_url}/subjects")

    def connect_ready(self) -> bool:
        return _http_ok(f"{self.connect_url}/connectors")

    def connect_2_ready(self) -> bool:
        return _http_ok(f"{self.connect_2_url}/connectors")

    def rabbitmq_ready(self) -> bool:
        import pika

        try:
            conn = pika.BlockingConnection(pika.URLParameters(self.rabbitmq_url))
            conn.close()
        except Exception:
            return False
        return _http_ok(f"{self.rabbitmq_management_url}/api/overview",
                        auth=(self.rabbitmq_user, self.rabbitmq_password))

    def postgres_ready(self, dsn: str | None = None) -> bool:
        import psycopg

        try:
            with psycopg.connect(dsn or self.postgres_dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return True
        except Exception:
            return False

    def probes(self) -> dict[str, Callable[[], bool]]:
        return {
            "kafka": self.kafka_ready,
            "schema-registry": self.schema_registry_ready,
            "connect": self.connect_ready,
            "connect-2": self.connect_2_ready,
            "rabbitmq": self.rabbitmq_ready,
            "postgres": self.postgres_ready,
            "fulfilment-db": lambda: self.postgres_ready(self.fulfilment_dsn),
            "rabbitmq-bridge": lambda: _http_ok(f"{self.rabbitmq_bridge_url}/health"),
            "snowplow-collector": lambda: _http_ok(f"{self.collector_url}/health"),
            "snowplow-enrich": lambda: _http_ok(f"{self.enrich_url}/health"),
            "prometheus": lambda: _http_ok(f"{self.prometheus_url}/-/ready"),
            "alertmanager": lambda: _http_ok(f"{self.alertmanager_url}/-/ready"),
            "sla-exporter": lambda: _http_ok(f"{self.sla_exporter_url}/health"),
        }

    def all_ready(self) -> bool:
        return all(probe() for probe in self.probes().values())

    def wait(self, services: list[str] | None = None, timeout: float = READY_TIMEOUT_S) -> None:
        """Block until each named service (default: all) answers, or raise TimeoutError."""
        probes = self.probes()
        for name in services or list(probes):
            wait_until(probes[name], timeout, f"{name} did not become ready")

    def restart(self, *services: str, kill: bool = False) -> None:
        """Stop (SIGKILL if ``kill``) and start compose services, then wait until each is ready.

        Stopping all of them before starting any is what a host reboot looks like: the
        services come back from their volumes alone.
        """
        compose("kill" if kill else "stop", *services)
        compose("start", *services)
        self.wait([s for s in services if s in self.probes()])


# Host ports of docker/compose.yml, per service.
HOST_PORTS = {
    "kafka": [9092],
    "schema-registry": [8081],
    "connect": [8083],
    "connect-2": [8084],
    "rabbitmq": [5672, 15672],
    "postgres": [5432],
    "fulfilment-db": [5433],
    "snowplow-collector": [8080],
    "snowplow-enrich": [9102],
    "rabbitmq-bridge": [9101],
    "prometheus": [9090],
    "alertmanager": [9093],
    "sla-exporter": [9103],
}


def taken_ports() -> list[tuple[str, int]]:
    """Host ports our stack needs that something else already holds."""
    running = set(compose("ps", "--services", "--filter", "status=running",
                          check=False).stdout.split())
    taken = []
    for service, ports in HOST_PORTS.items():
        if service in running:
            continue  # ours already
        for port in ports:
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    taken.append((service, port))
    return taken


UP_RETRY_PAUSE_S = 5.0


class StackError(RuntimeError):
    """The stack could not be brought up; the message carries the containers' own story."""


def up(timeout: float = READY_TIMEOUT_S) -> None:
    """``compose up -d``, retried until it succeeds or ``timeout`` passes.

    Compose refuses to start a service while one of its dependencies reports `unhealthy`,
    and Docker reports exactly that for a container between a crash and its automatic
    restart (a registry that came up before PostgreSQL after an engine restart, say). The
    restart policy repairs those on its own; a second `up` then goes through. A service that
    never recovers exhausts the timeout and is named, with its last log lines.
    """
    deadline = time.monotonic() + timeout
    attempt = 1
    while True:
        result = compose("up", "-d", check=False)
        if result.returncode == 0:
            return
        output = (result.stdout + result.stderr).strip()
        if time.monotonic() + UP_RETRY_PAUSE_S > deadline:
            raise StackError(f"`compose up -d` failed {attempt} times in {timeout:.0f}s; "
                             f"last output:\n{output}\n\n{diagnose()}")
        last = output.splitlines()[-1] if output else "no output"
        print(f"stack: compose up failed (attempt {attempt}: {last}); retrying",
              file=sys.stderr)
        attempt += 1
        time.sleep(UP_RETRY_PAUSE_S)


def diagnose(log_lines: int = 40) -> str:
    """State and health of each of the stack's containers, with the recent log lines of
    every one that is not healthy: what a failed CI run needs to say why."""
    ids = compose("ps", "-q", check=False).stdout.split()
    if not ids:
        return "no container of the stack exists"
    fmt = "{{.Name}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}" \
          "{{else}}-{{end}}|{{.RestartCount}}|{{.State.ExitCode}}"
    inspected = subprocess.run(["docker", "inspect", "--format", fmt, *ids],
                               text=True, capture_output=True, check=False)
    report = ["container                        state      health     restarts exit"]
    troubled = []
    for line in inspected.stdout.splitlines():
        name, state, health, restarts, code = line.split("|")
        name = name.lstrip("/")
        report.append(f"{name:32} {state:10} {health:10} {restarts:>8} {code:>4}")
        if state != "running" or health not in ("healthy", "-") or restarts != "0":
            troubled.append(name)
    for name in troubled:
        logs = subprocess.run(["docker", "logs", "--tail", "400", name],
                              text=True, capture_output=True, check=False)
        # Stack frames bury the message that says what went wrong: keep the other lines.
        lines = [line for line in (logs.stdout + logs.stderr).splitlines()
                 if not re.match(r"\s+(at |\.\.\. \d+ more)", line)][-log_lines:]
        report.append(f"\n--- last {log_lines} log lines of {name}, stack frames left out ---")
        report.extend(lines)
    return "\n".join(report)


def wait_until(check: Callable[[], bool], timeout: float, what: str,
               pause: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {timeout:.0f}s")
        time.sleep(pause)


def _http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    try:
        return httpx.get(url, auth=auth, timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def main(argv: list[str]) -> int:
    if argv[1:] == ["preflight"]:
        taken = taken_ports()
        for service, port in taken:
            print(f"stack: ERROR: host port {port} (for {service}) is already in use by "
                  f"another program.\n  what to do: stop it (`ss -ltnp 'sport = :{port}'` "
                  "shows which), then run the command again.", file=sys.stderr)
        return 1 if taken else 0
    if argv[1:] not in (["wait"], ["up"]):
        print(__doc__)
        return 2
    stack = Stack.from_env()
    started = time.monotonic()
    try:
        if argv[1:] == ["up"]:
            up()
        stack.wait()
    except StackError as exc:
        print(f"stack: NOT UP: {exc}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"stack: NOT READY: {exc}\n\n{diagnose()}", file=sys.stderr)
        return 1
    print(f"stack: every service ready ({time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
