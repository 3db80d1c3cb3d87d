"""``conveyor-connectors``: deploy connector config files through the Connect REST API.

Thin commands over ``connectors.deploy``: parse options, call the library, print, exit
with a named code (``ExitCode``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import NoReturn

import click
from confluent_kafka import KafkaException

from reconcile.times import parse_time

from . import deploy, preview, replay
from .configs import ConfigFileError, ConnectorFile, load_files, load_profile, profiles
from .rest import ConnectClient, ConnectError, ConnectorState, ConnectUnreachable

DEFAULT_CONNECT_URL = "http://localhost:8083"


class ExitCode(IntEnum):
    OK = 0
    NOT_RUNNING = 1     # a connector or task FAILED, or did not reach RUNNING in time
    USAGE = 2           # bad command line (click's own code)
    INVALID_CONFIG = 3  # a file is unreadable, or the worker's validate reported errors
    UNREACHABLE = 4     # no Connect worker answered at --connect-url
    NOT_FOUND = 5       # a connector named on the command line does not exist
    REFUSED = 6         # Connect answered a request with an error
    NOT_SAFE = 7        # replay: a sink that keeps its own offsets, or a window retention
                        # no longer holds; nothing was changed
    WOULD_FAIL = 8      # preview --strict: a record would be dead-lettered or fail the task
    DIFFERS = 9         # preview --check: the saved preview and this run differ


MAIN_HELP = f"""Deploy Conveyor's connectors (config files, one per connector) to Kafka Connect.

\b
Connector files are JSON, {{"name": ..., "config": {{...}}}}, grouped in profiles under
connectors/configs/<profile>/ ({", ".join(profiles())}). Secrets are never in
them: they reference the worker's config providers, e.g. ${{env:CONVEYOR_POSTGRES_PASSWORD}}.

\b
Examples:
  conveyor-connectors validate --profile local        # ask the worker, change nothing
  conveyor-connectors apply --profile local           # create/update, wait until RUNNING
  conveyor-connectors apply --dry-run connectors/configs/local/snowplow-bad-rows.json
  conveyor-connectors status                          # every connector on the worker
  conveyor-connectors delete warehouse-snowplow-bad-rows
  CONNECT_URL=http://connect.prod:8083 conveyor-connectors status --profile local
  conveyor-connectors replay warehouse-rabbitmq-events --since 2026-12-01T02:00Z --dry-run
  conveyor-connectors preview connectors/configs/local/rabbitmq-events.json --records 5

\b
Exit codes:
{chr(10).join(f"  {c.value}  {c.name}" for c in ExitCode)}
"""


def _fail(code: ExitCode, message: str) -> NoReturn:
    click.secho(message, fg="red", err=True)
    sys.exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """Our exceptions become a message and a named exit code, never a traceback."""
    try:
        yield
    except ConfigFileError as exc:
        _fail(ExitCode.INVALID_CONFIG, f"error: {exc}")
    except ConnectUnreachable as exc:
        _fail(ExitCode.UNREACHABLE,
              f"error: no Connect worker answers: {exc}\n"
              "  is the stack up (`make up`)? point at another worker with --connect-url "
              "or CONNECT_URL")
    except ConnectError as exc:
        _fail(ExitCode.REFUSED, f"error: Connect refused: {exc}")


def _select(files: tuple[Path, ...], profile: str | None) -> list[ConnectorFile]:
    if files and profile:
        raise click.UsageError("give connector FILES or --profile, not both")
    if profile:
        return load_profile(profile)
    if not files:
        raise click.UsageError(f"give connector FILES or --profile ({', '.join(profiles())})")
    return load_files(files)


pass_client = click.make_pass_decorator(ConnectClient)
files_argument = click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False,
                                                                   path_type=Path))
profile_option = click.option("--profile", "-p", metavar="NAME",
                              help="Every file of connectors/configs/NAME/ (e.g. local).")


@click.group(help=MAIN_HELP, context_settings={"help_option_names": ["-h", "--help"],
                                               "max_content_width": 100})
@click.option("--connect-url", envvar="CONNECT_URL", default=DEFAULT_CONNECT_URL,
              show_default=True, help="Any worker of the Connect cluster (env: CONNECT_URL).")
@click.pass_context
def main(ctx: click.Context, connect_url: str) -> None:
    ctx.obj = ctx.with_resource(_closing(ConnectClient(connect_url)))


@contextmanager
def _closing(client: ConnectClient) -> Iterator[ConnectClient]:
    try:
        yield client
    finally:
        client.close()


@main.command("validate")
@files_argument
@profile_option
@pass_client
def validate_cmd(client: ConnectClient, files: tuple[Path, ...], profile: str | None) -> None:
    """Check connector files with the worker's validate endpoint; change nothing.

    \b
    Every error the worker finds is printed under its key, e.g.
      warehouse-rabbitmq-events: 1 error
        transforms.unwrap.payload.flatten.depth: Invalid value -1 ... at least 0
    Exits INVALID_CONFIG (3) when any file has an error.
    """
    with _errors():
        connectors = _select(files, profile)
        bad = 0
        for c in connectors:
            problems = deploy.validate(client, c)
            _print_problems(c.name, problems)
            bad += bool(problems)
    if bad:
        sys.exit(ExitCode.INVALID_CONFIG)


@main.command("apply")
@files_argument
@profile_option
@click.option("--timeout", default=deploy.WAIT_TIMEOUT_S, show_default=True, type=float,
              help="Seconds to wait for RUNNING, per connector.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@pass_client
def apply_cmd(client: ConnectClient, files: tuple[Path, ...], profile: str | None,
              timeout: float, dry_run: bool) -> None:
    """Create or update connectors, then wait until they and their tasks are RUNNING.

    \b
    Idempotent: a connector whose config already matches its file is left alone and
    reported "unchanged" (nothing restarts). Every file is validated by the worker first;
    if any is invalid, nothing is applied (exit INVALID_CONFIG). A connector or task that
    FAILS is shown with its stack trace (exit NOT_RUNNING).
    """
    with _errors():
        connectors = _select(files, profile)
        invalid = [(c, p) for c in connectors if (p := deploy.validate(client, c))]
        if invalid:
            for c, problems in invalid:
                _print_problems(c.name, problems)
            _fail(ExitCode.INVALID_CONFIG, "nothing applied: fix the errors above")
        failed = 0
        for c in connectors:
            if dry_run:
                _print_plan(c, client.config(c.name))
                continue
            click.echo(f"{c.name}: applying ...", err=True)
            try:
                result = deploy.apply(client, c, timeout=timeout)
            except deploy.NotRunning as exc:
                click.secho(f"{c.name}: NOT RUNNING", fg="red")
                click.echo(_indent(str(exc)))
                failed += 1
                continue
            _print_applied(result)
    if failed:
        sys.exit(ExitCode.NOT_RUNNING)


@main.command("status")
@click.argument("names", nargs=-1)
@profile_option
@pass_client
def status_cmd(client: ConnectClient, names: tuple[str, ...], profile: str | None) -> None:
    """Show connectors and their tasks (default: every connector on the worker).

    \b
    Exits NOT_RUNNING (1) when one is not fully RUNNING (failed tasks print their trace),
    NOT_FOUND (5) when a named connector does not exist.
    """
    with _errors():
        if profile and names:
            raise click.UsageError("give connector NAMES or --profile, not both")
        wanted = [c.name for c in load_profile(profile)] if profile else list(names)
        wanted = wanted or sorted(client.connectors())
        if not wanted:
            click.echo("no connectors")
            return
        code = ExitCode.OK
        for name in wanted:
            state = deploy.status(client, name)
            if state is None:
                click.secho(f"{name}: NOT FOUND", fg="red")
                code = ExitCode.NOT_FOUND
                continue
            _print_state(state)
            if not state.running and code == ExitCode.OK:
                code = ExitCode.NOT_RUNNING
    sys.exit(code)


@main.command("delete")
@click.argument("names", nargs=-1)
@profile_option
@pass_client
def delete_cmd(client: ConnectClient, names: tuple[str, ...], profile: str | None) -> None:
    """Delete connectors by name (or every connector of a profile).

    \b
    Idempotent: a connector that does not exist is reported and skipped. The tables it
    wrote and its consumer group offsets stay; applying it again resumes where it stopped.
    """
    with _errors():
        if profile and names:
            raise click.UsageError("give connector NAMES or --profile, not both")
        wanted = [c.name for c in load_profile(profile)] if profile else list(names)
        if not wanted:
            raise click.UsageError("name the connectors to delete, or give --profile")
        for name in wanted:
            gone = deploy.delete(client, name)
            click.echo(f"{name}: {'deleted' if gone else 'not found (nothing to delete)'}")


# -- output ---------------------------------------------------------------------------------

@main.command("replay")
@click.argument("name")
@click.option("--since", required=True,
              help="Replay every record stamped at or after this: ISO 8601 (UTC unless a "
                   "zone is given), or e.g. -6h.")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--force", is_flag=True,
              help="Replay even where retention has deleted records of the window.")
@click.option("--timeout", default=600.0, show_default=True, type=float,
              help="Seconds to wait for each step (stop, resume, catching up).")
@click.option("--json", "as_json", is_flag=True, help="The plan as JSON on stdout.")
@pass_client
def replay_cmd(client: ConnectClient, name: str, since: str, dry_run: bool, force: bool,
               timeout: float, as_json: bool) -> None:
    """Write a sink connector's records again from a time (after the night the database
    refused writes): plan, stop, move the offsets, resume, wait until caught up.

    \b
    The plan comes first: per partition the committed offset, the first offset stamped at
    or after --since, and the records that replays. Refused (NOT_SAFE, 7) when retention
    has already deleted records of the window, and for sinks whose progress is not
    Connect's offsets (the Iceberg and Snowflake sinks). Safe to repeat: our JDBC sink
    upserts on event_id. Kafka from KAFKA_BOOTSTRAP (default localhost:9092).

    \b
    Afterwards, conveyor-reconcile compares the window with another landing.
    """
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "localhost:9092")
    at = parse_time(since)
    with _errors():
        try:
            plan = replay.make_plan(client, name, at, bootstrap)
        except LookupError:
            _fail(ExitCode.NOT_FOUND, f"no connector named {name}")
        except replay.ReplayRefused as exc:
            _fail(ExitCode.NOT_SAFE, f"refused: {exc}")
        except KafkaException as exc:
            _fail(ExitCode.UNREACHABLE, f"Kafka at {bootstrap}: {exc}")
        if as_json:
            click.echo(json.dumps(plan.as_json(), indent=2))
        else:
            _print_replay_plan(plan)
        if plan.lost_to_retention and not force:
            _fail(ExitCode.NOT_SAFE, "refused: retention has deleted records stamped after "
                  f"--since in {len(plan.lost_to_retention)} partition(s); --force replays "
                  "what is left")
        if dry_run:
            return
        try:
            replay.execute(client, plan, timeout=timeout,
                           say=lambda m: click.echo(m, err=as_json))
        except TimeoutError as exc:
            _fail(ExitCode.NOT_RUNNING, str(exc))
    click.echo(f"replayed {plan.records} records of {name} since {at.isoformat()}",
               err=as_json)


PREVIEW_HELP = f"""Show the rows a sink connector FILE would write from real records of its
topics, or why a record would go to its dead-letter topic. Writes nothing, commits nothing.

\b
The file's converters, predicates and transforms run as a Connect worker runs them: Kafka
Connect's own classes, the worker's plugin path, the file's errors.* settings, in the
Connect image (docker run). Per record: the outcome (row, filtered, dead_letter,
task_failure); for a row its table, each column with the PostgreSQL type the JDBC sink
gives it, and the value; for a dead letter the stage, class and exception that Connect
writes in the record's __connect.errors.* headers.

\b
Saved previews are golden tests of a connector file: --save keeps the records and what
became of them; --check runs the saved records through the file again and exits DIFFERS
(9) when an outcome, table, column or value changed (landed_at is ignored: it is stamped
at conversion).

\b
Where it runs (environment):
  CONVEYOR_PREVIEW_IMAGE          the Connect image      (default {preview.DEFAULT_IMAGE})
  CONVEYOR_PREVIEW_NETWORK        its docker network     (default {preview.DEFAULT_NETWORK})
  CONVEYOR_PREVIEW_BOOTSTRAP      Kafka, as seen there   (default {preview.DEFAULT_BOOTSTRAP})
  CONVEYOR_PREVIEW_WORKER_CONFIG  worker properties file (security.*, sasl.*, converters)
Against a remote cluster: CONVEYOR_PREVIEW_NETWORK=host, Kafka from KAFKA_BOOTSTRAP, and
--set for what differs there (e.g. the registry URL). Variables the file reads as
${{env:NAME}} are passed to the container by name, never on its command line.

\b
Examples:
  conveyor-connectors preview connectors/configs/local/rabbitmq-events.json
  conveyor-connectors preview FILE --since -1h --records 20 --strict
  conveyor-connectors preview FILE --from latest --topic events.order_placed --json
  conveyor-connectors preview FILE --records 50 --save tests/golden/rabbitmq.jsonl
  conveyor-connectors preview FILE --check tests/golden/rabbitmq.jsonl
"""


@main.command("preview", help=PREVIEW_HELP)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--records", "-n", default=10, show_default=True, type=click.IntRange(1, 10_000),
              help="At most this many records (per partition while reading, in all shown).")
@click.option("--from", "start", default="earliest", show_default=True, metavar="WHERE",
              help="earliest, latest (the last N records), or an offset.")
@click.option("--since", default=None, metavar="TIME",
              help="From the first record stamped at or after TIME (ISO 8601 or e.g. -1h).")
@click.option("--topic", default=None, help="Only this topic of the file's topics.")
@click.option("--partition", default=None, type=int, help="Only this partition.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Change a key of the file for the preview (repeatable).")
@click.option("--input", "input_path", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The records of a saved preview instead of Kafka.")
@click.option("--save", "save_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="Write the preview (JSON lines) to this file.")
@click.option("--check", "check_path", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Run a saved preview's records again and compare.")
@click.option("--ignore", multiple=True, default=preview.VOLATILE_COLUMNS, show_default=True,
              help="Columns --check does not compare (repeatable).")
@click.option("--strict", is_flag=True,
              help="Exit WOULD_FAIL (8) when a record would be dead-lettered or fail the task.")
@click.option("--json", "as_json", is_flag=True, help="The JSON lines on stdout.")
def preview_cmd(file: Path, records: int, start: str, since: str | None, topic: str | None,
                partition: int | None, overrides: tuple[str, ...], input_path: Path | None,
                save_path: Path | None, check_path: Path | None, ignore: tuple[str, ...],
                strict: bool, as_json: bool) -> None:
    if start not in ("earliest", "latest") and not start.isdigit():
        raise click.BadParameter("earliest, latest or an offset", param_hint="--from")
    sets = {}
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{item!r}: KEY=VALUE", param_hint="--set")
        sets[key] = value
    if check_path is not None and input_path is not None:
        raise click.UsageError("--check reads its records from the saved file; drop --input")
    with _errors():
        (connector,) = load_files([file])
        for name in preview.env_references(connector.config):
            if name not in os.environ:
                click.secho(f"warning: {name} is not set: ${{env:{name}}} stays as it is "
                            "(set it, or --set the key)", fg="yellow", err=True)
        saved = preview.load_saved(check_path) if check_path is not None else None
        options = preview.Options(
            records=max(records, len(saved)) if saved is not None else records, start=start,
            since_ms=int(parse_time(since).timestamp() * 1000) if since else None,
            topic=topic, partition=partition, overrides=sets,
            input=check_path if check_path is not None else input_path)
        try:
            result = preview.run(connector, options)
        except preview.PreviewFailed as exc:
            code = {"config": ExitCode.INVALID_CONFIG, "usage": ExitCode.USAGE,
                    "source": ExitCode.UNREACHABLE}.get(exc.kind, ExitCode.UNREACHABLE)
            hint = ("\n  is the stack up (`make up`) and the Connect image built? see "
                    "`conveyor-connectors preview --help` for another cluster"
                    if exc.kind in ("runner", "source") else "")
            _fail(code, f"error: preview {exc}{hint}")
    if as_json:
        for r in result.records:
            click.echo(json.dumps(r, sort_keys=True))
        click.echo(json.dumps({"summary": result.summary}, sort_keys=True))
    else:
        click.echo(preview.render(result))
    if save_path is not None:
        preview.save(result, save_path)
        click.echo(f"saved {len(result.records)} records to {save_path}", err=True)
    if saved is not None:
        problems = preview.compare(saved, result.records, ignore)
        if problems:
            for p in problems:
                click.secho(p, fg="red", err=True)
            _fail(ExitCode.DIFFERS, f"{len(problems)} difference(s) from {check_path}")
        click.echo(f"same as {check_path}: {len(saved)} records", err=True)
    if strict and (result.by_outcome("dead_letter") or result.by_outcome("task_failure")):
        _fail(ExitCode.WOULD_FAIL, "some records would not become rows (--strict)")


# -- heal: restart FAILED connectors and tasks with a bounded backoff (connectors/heal.py) ---

HEAL_HELP = """Restart FAILED connectors and tasks by themselves, with a bounded backoff.

\b
Every poll interval it reads every connector's status (GET /connectors?expand=status);
a connector whose connector or a task is FAILED is restarted (POST .../restart?
includeTasks=true&onlyFailed=true) after 2, 4, 8, ... minutes (Strimzi's schedule), at
most --max-restarts times in a row; then it gives up on that connector and says so (log
and conveyor_connect_healer_gave_up). A connector RUNNING --healthy-after seconds has
recovered: its budget starts again. /metrics and /health on --port.

\b
Settings: --config FILE (YAML, the keys of connectors.heal.HealSettings), overridden by
CONVEYOR_HEAL__<KEY> variables, overridden by these options. The Connect URL is the
group's --connect-url (CONNECT_URL) unless the file or CONVEYOR_HEAL__CONNECT_URL sets it.

\b
Examples:
  conveyor-connectors heal                                   # Strimzi's timings
  conveyor-connectors heal --initial-delay 5 --max-restarts 5 --port 9104
  conveyor-connectors heal --once                            # one look, print what it did
"""


@main.command("heal", help=HEAL_HELP)
@click.option("--config", "config_path", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML settings (connectors.heal.HealSettings).")
@click.option("--initial-delay", type=float, default=None, help="Seconds before a first restart.")
@click.option("--multiplier", type=float, default=None, help="Each further delay times this.")
@click.option("--max-delay", type=float, default=None, help="No delay longer than this (s).")
@click.option("--max-restarts", type=int, default=None, help="Restarts in a row, then give up.")
@click.option("--healthy-after", type=float, default=None,
              help="RUNNING this long (s) resets the budget.")
@click.option("--poll-interval", type=float, default=None, help="Seconds between looks.")
@click.option("--port", type=int, default=None, help="/metrics and /health port.")
@click.option("--connector", "patterns", multiple=True, metavar="GLOB",
              help="Only connectors matching (repeatable; default every connector).")
@click.option("--exclude", multiple=True, metavar="GLOB",
              help="Never connectors matching (repeatable).")
@click.option("--once", is_flag=True, help="One look (and the restarts due), then exit.")
@click.pass_context
def heal_cmd(ctx: click.Context, config_path: Path | None, initial_delay: float | None,
             multiplier: float | None, max_delay: float | None, max_restarts: int | None,
             healthy_after: float | None, poll_interval: float | None, port: int | None,
             patterns: tuple[str, ...], exclude: tuple[str, ...], once: bool) -> None:
    import logging

    from pydantic import ValidationError

    from sidecar.common.errors import ConfigError

    from . import heal

    try:
        settings = heal.load(config_path)
        changes = {k: v for k, v in {
            "initial_delay_seconds": initial_delay, "multiplier": multiplier,
            "max_delay_seconds": max_delay, "max_restarts": max_restarts,
            "healthy_after_seconds": healthy_after, "poll_interval_seconds": poll_interval,
            "port": port, "connectors": list(patterns) or None,
            "exclude": list(exclude) or None}.items() if v is not None}
        if "connect_url" not in settings.model_fields_set:
            changes["connect_url"] = ctx.find_root().params["connect_url"]
        settings = heal.HealSettings.model_validate({**settings.model_dump(), **changes})
    except (ConfigError, ValidationError) as exc:
        _fail(ExitCode.INVALID_CONFIG, f"error: heal settings: {exc}")
    if once:
        logging.getLogger("httpx").setLevel(logging.WARNING)
        client = heal.HealClient(settings.connect_url, timeout=settings.timeout_seconds)
        healer = heal.Healer(client, settings.policy(), settings.connectors,
                             exclude=settings.exclude)
        with _errors():
            client.statuses()  # unreachable or refused: a named exit code, not "nothing"
            done = healer.step()
        client.close()
        for name, action in sorted(done.items()):
            click.echo(f"{name}: {action.value}")
        return
    heal.run(settings)


def _print_replay_plan(plan: replay.Plan) -> None:
    click.echo(f"{plan.connector}: replay from {plan.since.isoformat()}, "
               f"{plan.records} records")
    for p in plan.partitions:
        current = "-" if p.current is None else str(p.current)
        note = "" if p.retained else "   RETENTION: records of the window are gone"
        click.echo(f"  {p.topic}[{p.partition}]  committed {current} -> {p.new}  "
                   f"(end {p.end}, {p.records} records){note}")


def _print_problems(name: str, problems: list[deploy.ConfigProblem]) -> None:
    if not problems:
        click.secho(f"{name}: valid", fg="green")
        return
    click.secho(f"{name}: {len(problems)} error{'s' if len(problems) > 1 else ''}", fg="red")
    for p in problems:
        click.echo(f"  {p.key}: {p.message}")


def _print_plan(c: ConnectorFile, current: dict[str, str] | None) -> None:
    from .configs import diff

    changes = diff(c.body(), current)
    if current is None:
        click.echo(f"{c.name}: would be created")
    elif not changes:
        click.echo(f"{c.name}: unchanged")
    else:
        click.echo(f"{c.name}: would be updated")
        _print_changes(changes)


def _print_applied(result: deploy.Applied) -> None:
    colour: Callable[[str], str] = (lambda s: click.style(s, fg="green")) \
        if result.action != "unchanged" else (lambda s: s)
    click.echo(colour(f"{result.name}: {result.action}"))
    _print_changes(result.changes)
    if result.state is not None:
        _print_state(result.state, header=False)


def _print_changes(changes: dict[str, tuple[str | None, str | None]]) -> None:
    for key, (old, new) in changes.items():
        if old is None:
            click.echo(f"  + {key} = {new}")
        elif new is None:
            click.echo(f"  - {key} (was {old})")
        else:
            click.echo(f"  ~ {key}: {old} -> {new}")


def _print_state(state: ConnectorState, header: bool = True) -> None:
    if header:
        ok = state.running
        click.secho(f"{state.name}: {state.state}" + ("" if ok else " (not fully running)"),
                    fg="green" if ok else "red")
    worker = f" on {state.worker_id}" if state.worker_id else ""
    click.echo(f"  connector {state.state}{worker}")
    for task in sorted(state.tasks, key=lambda t: t["id"]):
        click.echo(f"  task {task['id']} {task['state']} on {task.get('worker_id', '?')}")
        if task["state"] == "FAILED":
            click.echo(_indent(task.get("trace", "(no trace)"), 4))


def _indent(text: str, n: int = 2) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


if __name__ == "__main__":
    main()
