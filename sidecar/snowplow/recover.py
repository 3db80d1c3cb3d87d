"""``conveyor-bridge snowplow-recover``: bad rows of a window back through enrich, once.

A thin command over ``recovery/``: read the window (``recovery.kafka.read_window``), plan
each row (``recovery.rows.plan_row``), replay the candidates through the enricher enrich
builds from the same settings (``recovery.report.replay``), then either report (dry run)
or commit the good events with their ids in the recovery ledger
(``recovery.kafka.RecoveryWriter``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from enum import IntEnum
from pathlib import Path
from typing import Any

import click

from sidecar.common import logs
from sidecar.common.cli import load_or_exit

log = logging.getLogger("sidecar.snowplow.recover")


class Exit(IntEnum):
    OK = 0
    FAILED = 1          # unexpected error, or Kafka refused the transaction: run it again
    USAGE = 2           # bad command line (click's own code)
    CONFIG = 3          # the config file, routes or Iglu schemas are invalid
    KAFKA = 4           # Kafka (or the bad-row topic, or the schema registry) unreachable
    RETENTION = 5       # Kafka no longer holds the start of the window: nothing was done


HELP = f"""Recover Snowplow bad rows of a time window: replay them through enrich so
that those that now pass land as good events, exactly once.

\b
Typical use, once the cause is fixed (a schema added to an Iglu repository
of iglu.repositories, an enrichment repaired):
  conveyor-bridge snowplow-recover --config snowplow.yaml --since -24h \\
      --reason schema_not_found --dry-run      how many would recover, why not the rest
  conveyor-bridge snowplow-recover --config snowplow.yaml --since -24h \\
      --reason schema_not_found                do it; a second run changes nothing

\b
Reads topics.bad read_committed from the first bad row written at or after
--since up to --until (default: the end now), keeps those of --check and
--reason, rebuilds from each the request enrich read (one event of a POST as
a one-event POST with the request's facts, a GET as the same GET, a whole
body as sent) and runs it through enrich's own code with the settings of
--config (Iglu repositories, routes, limits, enrichments). The good events go
to their topics in one Kafka transaction with their ids in the recovery
ledger <dedup.ledger_topic>.recovered, so an event recovered once is never
written again; what still fails is counted by check/reason with an example,
and is not written again. Never recovered, and counted: size bad rows and
protocol/raw_format rows (no replay can pass), truncated originals (the rest
was never kept), rows that are not bad rows (unreadable).

\b
--since/--until: ISO 8601 (UTC unless a zone is given), 'now', or e.g. -24h.
Kafka and secrets as for the collector (CONVEYOR_SNOWPLOW__KAFKA__...,
CONVEYOR_KAFKA_SASL_...). A window retention no longer holds is refused.

\b
Exit codes: {", ".join(f"{e.value} {e.name.lower()}" for e in Exit)}.
"""


@click.command(name="snowplow-recover", help=HELP)
@click.option("--config", "config_path", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="The collector's and enrich's YAML settings file.")
@click.option("--since", required=True, metavar="TIME",
              help="Start of the window (when the bad rows were written).")
@click.option("--until", default=None, metavar="TIME",
              help="End of the window, exclusive [default: the end of the topic now].")
@click.option("--check", "check_", default=None,
              type=click.Choice(["protocol", "schema", "enrichment_failures", "size"]),
              help="Only bad rows of this check (size rows are counted, never recovered).")
@click.option("--reason", default=None, metavar="REASON",
              help="Only bad rows of this reason (e.g. schema_not_found, ua_parser).")
@click.option("--dry-run", is_flag=True,
              help="Replay locally and report; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def main(config_path: Path, since: str, until: str | None, check_: str | None,
         reason: str | None, dry_run: bool, as_json: bool) -> None:
    try:   # the operators' time syntax, shared with conveyor-reconcile and replay
        from reconcile.times import parse_time
    except ModuleNotFoundError:
        click.echo("error: snowplow-recover needs the reconcile package of this project "
                   "installed beside sidecar (for --since/--until)", err=True)
        sys.exit(Exit.CONFIG)

    from .settings import load_settings  # lazily: keeps --help instant

    start = parse_time(since)
    end = parse_time(until) if until else None
    if end is not None and end <= start:
        raise click.BadParameter("--until must be after --since", param_hint="--until")
    settings = load_or_exit(load_settings, config_path, Exit.CONFIG)
    logs.configure(settings.log_level)
    code, report = recover(settings, start, end, check=check_, reason=reason,
                           dry_run=dry_run, echo=lambda line: click.echo(line, err=True))
    if report is not None:
        if as_json:
            click.echo(json.dumps(report, sort_keys=True))
        else:
            for line in report["lines"]:
                click.echo(line)
    sys.exit(code)


def recover(settings: Any, since: datetime, until: datetime | None, *,
            check: str | None = None, reason: str | None = None, dry_run: bool = False,
            echo: Callable[[str], None] = print) -> tuple[Exit, dict[str, Any] | None]:
    """One recovery run; returns the exit code and the report (as JSON, plus ``lines``)."""
    from confluent_kafka import KafkaException

    from sidecar.common.avro import RegistryUnavailable
    from sidecar.common.errors import FatalKafkaError, TransactionAborted
    from sidecar.exactly_once.ledger import LedgerUnavailable

    from .enrich.runner import build_enricher
    from .recovery.kafka import BadRowWindow, RecoveryWriter, RetentionGone
    from .recovery.report import Report, Tally, replay
    from .recovery.rows import Candidate, plan_row
    from .settings import Secrets

    client_config = Secrets().kafka_client_config(settings)
    report = Report(dry_run=dry_run)
    report.window = {"topic": settings.topics.bad, "since": since.isoformat(),
                     "until": until.isoformat() if until else None,
                     "check": check, "reason": reason}
    enricher = build_enricher(settings)
    predicted: set[str] = set()   # dry run: ids counted already (a row seen twice)
    try:
        with BadRowWindow(client_config, settings.topics.bad, since, until) as window, \
                RecoveryWriter(settings, client_config, write=not dry_run) as writer:
            report.window.update(window.as_json())
            for values in window.batches(settings.enrich.max_batch_records):
                report.rows += len(values)
                candidates: list[Candidate] = []
                for value in values:
                    planned = plan_row(value, check=check, reason=reason)
                    if isinstance(planned, Candidate):
                        candidates.append(planned)
                    else:
                        report.refuse(planned)
                good = replay(candidates, enricher, report)
                if dry_run:
                    _predict(good, writer.already(good), predicted, report)
                    continue
                chunk = max(1, settings.enrich.max_batch_events)
                for i in range(0, len(good), chunk):
                    result, refused = writer.commit(good[i:i + chunk])
                    report.recovered += result.written
                    report.already_recovered += len(result.duplicates)
                    for why in refused.values():
                        report.still_failing.setdefault("avro/unencodable", Tally()).add(
                            None, why)
    except RetentionGone as exc:
        echo(f"refused: retention no longer holds the start of the window ({exc}); "
             f"choose a later --since")
        return Exit.RETENTION, None
    except (LedgerUnavailable, RegistryUnavailable, KafkaException) as exc:
        echo(f"kafka: FAIL {settings.kafka.bootstrap_servers}: {exc}")
        return Exit.KAFKA, None
    except (TransactionAborted, FatalKafkaError) as exc:
        # Nothing of the failed transaction is visible (or the ledger decides it): safe
        # to run again, which skips what did commit.
        echo(f"failed: {exc}; run again (what committed is not written twice)")
        return Exit.FAILED, None
    log.info("recover.done", extra={"dry_run": dry_run, "recovered": report.recovered,
                                    "already": report.already_recovered})
    return Exit.OK, {**report.as_json(), "lines": report.lines()}


def _predict(good: list[Any], seen: set[str], predicted: set[str], report: Any) -> None:
    """Dry run: what the real run would count, without writing."""
    for o in good:
        if o.dedup_id is None:
            report.recovered += 1
        elif o.dedup_id in seen or o.dedup_id in predicted:
            report.already_recovered += 1
        else:
            predicted.add(o.dedup_id)
            report.recovered += 1
