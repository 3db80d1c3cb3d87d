"""Preview a sink connector file: the rows it would write from real records, writing nothing.

The work is done by a small Java program in the Connect image (``connectors/preview/``): it
builds the file's key, value and header converters, predicates and transforms the way a
worker builds a sink task (same plugin path, same class loaders, Kafka's own
``TransformationChain`` and ``RetryWithToleranceOperator`` under the file's ``errors.*``
settings), reads records of the file's topics, and prints one JSON object per record: the
input, the outcome (``row``, ``filtered``, ``dead_letter``, ``task_failure``), and for a row
its table, columns (with the PostgreSQL type the JDBC sink creates) and values; for a dead
letter the values of Connect's ``__connect.errors.*`` headers.

This module runs that program in a container (``docker run`` of the Connect image, on the
stack's network by default; ``CONVEYOR_PREVIEW_*`` for another cluster), parses its output,
renders it for people, and compares a run with a saved one (a golden file: the saved
inputs go through the file again and must give the same outcomes and rows).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .configs import ConnectorFile

DEFAULT_IMAGE = "conveyor/connect:dev"
DEFAULT_NETWORK = "conveyor_default"      # the compose project's network (make up)
DEFAULT_BOOTSTRAP = "kafka:29092"         # Kafka's listener on that network
ENTRYPOINT = "/opt/connect/preview.sh"
IN_CONTAINER_INPUT = "/preview/input.jsonl"
IN_CONTAINER_WORKER = "/preview/worker.properties"
# A saved preview's columns that differ on every run: EnvelopeUnwrap stamps landed_at when
# it converts a record.
VOLATILE_COLUMNS = ("landed_at",)
OUTCOMES = ("row", "filtered", "dead_letter", "task_failure")

_ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


class PreviewFailed(Exception):
    """The preview could not run: ``kind`` is ``config`` (the file or an option), ``source``
    (Kafka or the input unreadable), ``usage`` or ``runner`` (docker, the image)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


@dataclass(frozen=True)
class Runner:
    """Where the preview runs and which Kafka it reads."""

    image: str = DEFAULT_IMAGE
    network: str = DEFAULT_NETWORK
    bootstrap: str = DEFAULT_BOOTSTRAP
    worker_config: Path | None = None   # worker properties (security settings, converters)
    docker: str = "docker"
    timeout_s: float = 180.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Runner:
        """``CONVEYOR_PREVIEW_*``; on the host's network (a remote cluster) Kafka defaults to
        ``KAFKA_BOOTSTRAP``, as for the other commands."""
        worker = env.get("CONVEYOR_PREVIEW_WORKER_CONFIG")
        network = env.get("CONVEYOR_PREVIEW_NETWORK", DEFAULT_NETWORK)
        fallback = env.get("KAFKA_BOOTSTRAP", "localhost:9092") if network == "host" \
            else DEFAULT_BOOTSTRAP
        return cls(image=env.get("CONVEYOR_PREVIEW_IMAGE", DEFAULT_IMAGE), network=network,
                   bootstrap=env.get("CONVEYOR_PREVIEW_BOOTSTRAP", fallback),
                   worker_config=Path(worker) if worker else None)


@dataclass(frozen=True)
class Options:
    records: int = 10
    start: str = "earliest"             # earliest, latest (the last N), or an offset
    since_ms: int | None = None         # the first record stamped at or after this
    topic: str | None = None
    partition: int | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    input: Path | None = None           # a saved preview's inputs instead of Kafka
    timeout_ms: int = 20_000


@dataclass(frozen=True)
class Result:
    records: list[dict[str, Any]]
    summary: dict[str, Any]

    def by_outcome(self, outcome: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("outcome") == outcome]


def env_references(config: Mapping[str, str]) -> list[str]:
    """Environment variables the file reads through ``${env:NAME}``: forwarded by name to the
    container (their values never appear on a command line)."""
    return sorted({m for v in config.values() for m in _ENV_REF.findall(v)})


def command(runner: Runner, connector: ConnectorFile, options: Options) -> list[str]:
    """The ``docker run`` command line (the connector's JSON goes on stdin)."""
    cmd = [runner.docker, "run", "--rm", "-i", "--network", runner.network]
    for name in env_references(connector.config):
        cmd += ["-e", name]
    if options.input is not None:
        cmd += ["-v", f"{options.input.resolve()}:{IN_CONTAINER_INPUT}:ro"]
    if runner.worker_config is not None:
        cmd += ["-v", f"{runner.worker_config.resolve()}:{IN_CONTAINER_WORKER}:ro"]
    cmd += ["--entrypoint", ENTRYPOINT, runner.image]
    cmd += ["--connector", "-", "--bootstrap", runner.bootstrap,
            "--records", str(options.records), "--timeout-ms", str(options.timeout_ms)]
    if runner.worker_config is not None:
        cmd += ["--worker-config", IN_CONTAINER_WORKER]
    if options.input is not None:
        cmd += ["--input", IN_CONTAINER_INPUT]
    if options.since_ms is not None:
        cmd += ["--since-ms", str(options.since_ms)]
    else:
        cmd += ["--from", options.start]
    if options.topic is not None:
        cmd += ["--topic", options.topic]
    if options.partition is not None:
        cmd += ["--partition", str(options.partition)]
    for key, value in options.overrides.items():
        cmd += ["--set", f"{key}={value}"]
    return cmd


def run(connector: ConnectorFile, options: Options, runner: Runner | None = None) -> Result:
    runner = runner or Runner.from_env()
    body = json.dumps({"name": connector.name, "config": connector.config})
    try:
        done = subprocess.run(command(runner, connector, options), input=body.encode(),
                              capture_output=True, timeout=runner.timeout_s, check=False)
    except FileNotFoundError as exc:
        raise PreviewFailed("runner", f"{runner.docker} not found: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise PreviewFailed("runner", f"no answer within {runner.timeout_s:.0f} s") from exc
    stdout = done.stdout.decode("utf-8", "replace")
    if done.returncode != 0 and not stdout.strip():
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-5:]
        raise PreviewFailed("runner", f"{runner.image} exited {done.returncode}: "
                            + " | ".join(tail))
    return parse(stdout)


def parse(stdout: str) -> Result:
    """The program's JSON lines; its ``{"error": ...}`` line raises ``PreviewFailed``."""
    records: list[dict[str, Any]] = []
    summary: dict[str, Any] | None = None
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(doc, dict):
            continue
        if "error" in doc:
            err = doc["error"] if isinstance(doc["error"], dict) else {}
            raise PreviewFailed(str(err.get("kind", "config")), str(err.get("message", doc)))
        if "summary" in doc:
            summary = doc["summary"] if isinstance(doc["summary"], dict) else {}
        elif doc.get("outcome") in OUTCOMES:
            records.append(doc)
    if summary is None:
        raise PreviewFailed("runner", "the preview ended without its summary line")
    return Result(records, summary)


def load_saved(path: Path) -> list[dict[str, Any]]:
    """A preview saved with ``--save``: its records (the summary line is left out)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            doc = json.loads(line)
            if isinstance(doc, dict) and doc.get("outcome") in OUTCOMES:
                out.append(doc)
    return out


def save(result: Result, path: Path) -> None:
    lines = [json.dumps(r, sort_keys=True) for r in result.records]
    lines.append(json.dumps({"summary": result.summary}, sort_keys=True))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _key(record: Mapping[str, Any]) -> tuple[str, int, int]:
    i = record.get("input", {})
    return str(i.get("topic")), int(i.get("partition", -1)), int(i.get("offset", -1))


def _comparable(record: Mapping[str, Any], ignore: Iterable[str]) -> dict[str, Any]:
    skip = set(ignore)
    out: dict[str, Any] = {"outcome": record.get("outcome")}
    if record.get("outcome") == "row":
        out["table"] = record.get("table")
        out["columns"] = [c for c in record.get("columns", []) if c.get("name") not in skip]
        out["row"] = {k: v for k, v in record.get("row", {}).items() if k not in skip}
    elif record.get("outcome") == "dead_letter":
        dl = record.get("dead_letter", {})
        out["dead_letter"] = {k: dl.get(k) for k in ("stage", "class_name",
                                                     "exception_class_name",
                                                     "exception_message")}
    return out


def compare(saved: Sequence[Mapping[str, Any]], now: Sequence[Mapping[str, Any]],
            ignore: Iterable[str] = VOLATILE_COLUMNS) -> list[str]:
    """What differs between a saved preview and a run over the same inputs, one line each
    (empty: the connector file still does what the golden file says)."""
    ignore = tuple(ignore)
    by_key = {_key(r): r for r in now}
    problems: list[str] = []
    for old in saved:
        k = _key(old)
        where = f"{k[0]}[{k[1]}]@{k[2]}"
        new = by_key.pop(k, None)
        if new is None:
            problems.append(f"{where}: not previewed this time")
            continue
        a, b = _comparable(old, ignore), _comparable(new, ignore)
        for part in ("outcome", "table", "dead_letter"):
            if a.get(part) != b.get(part):
                problems.append(f"{where}: {part} was {a.get(part)!r}, now {b.get(part)!r}")
        if a["outcome"] == b["outcome"] == "row":
            old_cols = {c["name"]: c for c in a["columns"]}
            new_cols = {c["name"]: c for c in b["columns"]}
            for name in sorted(old_cols.keys() | new_cols.keys()):
                oc, nc = old_cols.get(name), new_cols.get(name)
                if oc != nc:
                    problems.append(f"{where}: column {name} was {oc}, now {nc}")
                elif a["row"].get(name) != b["row"].get(name):
                    problems.append(f"{where}: {name} was {a['row'].get(name)!r}, "
                                    f"now {b['row'].get(name)!r}")
    for k in sorted(by_key):
        problems.append(f"{k[0]}[{k[1]}]@{k[2]}: new in this run")
    return problems


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def render(result: Result, *, columns: bool = True) -> str:
    """For people: one block per record, the summary last."""
    lines: list[str] = []
    for r in result.records:
        i = r.get("input", {})
        head = f"{i.get('topic')}[{i.get('partition')}]@{i.get('offset')}  {r['outcome']}"
        if r["outcome"] == "row":
            head += f"  -> table {r.get('table')}"
            lines.append(head)
            if r.get("warning"):
                lines.append(f"    warning: {r['warning']}")
            if columns:
                row = r.get("row", {})
                for c in r.get("columns", []):
                    null = "" if c.get("optional") else " not null"
                    kind = c.get("sql_type") or c.get("connect_type") or "?"
                    lines.append(f"    {c['name']:<28} {kind:<28}"
                                 f"{null:<9} {_short(row.get(c['name']))}")
        elif r["outcome"] == "dead_letter":
            dl = r.get("dead_letter", {})
            lines.append(head + f"  -> {dl.get('topic') or 'no dead-letter topic'}")
            lines.append(f"    stage {dl.get('stage')} in {dl.get('class_name')}")
            lines.append(f"    {dl.get('exception_class_name')}: {dl.get('exception_message')}")
        elif r["outcome"] == "task_failure":
            tf = r.get("task_failure", {})
            lines.append(head + "  -> the task would FAIL (errors.tolerance does not cover it)")
            lines.append(f"    {tf.get('task_error')}")
        else:
            lines.append(head + "  (a predicate or transform dropped it; nothing is written)")
    s = result.summary
    counts = ", ".join(f"{n} {o}" for o, n in sorted(s.get("outcomes", {}).items())) or "none"
    lines.append(f"{s.get('connector')}: {s.get('records', 0)} records previewed: {counts}")
    return "\n".join(lines)
