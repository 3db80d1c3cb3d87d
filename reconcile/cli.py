"""``conveyor-reconcile``: compare two landings of one stream, per bucket of event time."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from enum import IntEnum
from typing import NoReturn

import click
import psycopg
from confluent_kafka import KafkaException

from .core import KINDS, Report, compare, to_drill
from .drill import Reader, both, drill, split
from .kafka import replay_offsets
from .postgres import Side, SideError, TableReader
from .records import RecordSpec
from .times import parse_duration, parse_time
from .topic import NotRetained, TopicReader, TopicSide, TopicStats

# The SLA exporter's RabbitMQ canaries (sla.canary.ID_PREFIX): synthetic events that only
# Conveyor's side has, so a comparison with another landing leaves them out.
CANARY_ID_PREFIX = "canary-"


class ExitCode(IntEnum):
    CLEAN = 0         # nothing missing, twice or different in the window (the go signal)
    DIFFERENCES = 1   # the report lists what differs, or topic records it could not read
    USAGE = 2         # bad command line (click's own code)
    UNREACHABLE = 3   # a database (or Kafka, or the schema registry) did not answer
    INVALID = 4       # a table, column or --where predicate is wrong
    NOT_RETAINED = 5  # --old-topic: retention has deleted records of the window


HELP = f"""Compare two landings of the same stream, keyed on event id, per bucket of event
time: e.g. the legacy pipeline's table against Conveyor's, before a cut-over, or a Kafka
topic against the table its sink landed.

\b
Per bucket: rows on each side, ids missing in either, ids there twice, ids whose compared
columns differ, and rows that landed later than --sla after their event time. Buckets are
compared by checksum first; only those that differ are read row by row, so a clean window
of millions of rows costs one scan of each side.

\b
The old side is a table (--old) or a topic (--old-topic). A topic is read once,
read_committed, from the first record stamped at or after --since to the first stamped at
or after --until plus --lateness (how long after the window an event may still reach
Kafka), and its records are kept by event time. Values may be Avro (the registry's wire
format, read with the registry at $SCHEMA_REGISTRY_URL) or JSON envelopes. On a topic,
--old-id and --old-time name envelope fields, --compare's OLD an envelope field or a
payload field (a.b for nested ones); a record is late when Kafka stamped it more than
--sla after its event time (--old-landed '' turns that off). Records that are not
envelopes are counted as unreadable, and make the verdict a no-go.

\b
Canary events (the SLA exporter's, sla/README.md) are left out by default: the RabbitMQ
bridge's have event ids starting canary- (--exclude-id-prefix, on both sides; '' keeps
them). The Snowplow collector's carry UUIDs like any tracker's, so they are told by their
app_id, conveyor-canary: add --new-where "app_id IS DISTINCT FROM 'conveyor-canary'" for
a Snowplow table, --topic-exclude attributes.app_id=conveyor-canary for its topic.
--topic-exclude FIELD=VALUE leaves a topic's records out where FIELD renders as VALUE;
--new-where or --old-where does the same for a table in SQL.

\b
Connections come from the environment, never the command line: --new-dsn-env names the
variable holding the new side's DSN (default POSTGRES_DSN), --old-dsn-env the old side's
(default RECONCILE_OLD_DSN, falling back to the new side's: both tables in one database);
KAFKA_BOOTSTRAP (default localhost:9092) and SCHEMA_REGISTRY_URL for a topic.

\b
Examples:
  conveyor-reconcile --old legacy.orders --new rabbitmq_order_placed \\
      --since 2026-11-30T00:00Z --until 2026-12-01T00:00Z --bucket 1h
  conveyor-reconcile --old legacy.orders --new rabbitmq_order_placed --since -24h \\
      --old-id order_event_id --old-time created --old-landed loaded_at \\
      --compare order_id=order_ref --compare total=amount --json
  conveyor-reconcile ... --topic conveyor.events.orders   # where to replay each gap from
  conveyor-reconcile --old-topic events.orders.placed --new rabbitmq_order_placed \\
      --since -6h --compare total_cents
  conveyor-reconcile --old legacy.struct_events --new snowplow_struct --since -24h \\
      --new-where "app_id IS DISTINCT FROM 'conveyor-canary'"

\b
Exit codes:
{chr(10).join(f"  {c.value}  {c.name}" for c in ExitCode)}
"""

DEFAULT_REGISTRY = "http://localhost:8081/apis/ccompat/v7"


def _fail(code: ExitCode, message: str) -> NoReturn:
    click.secho(message, fg="red", err=True)
    sys.exit(code)


def _pairs(compare_opts: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    new, old = [], []
    for item in compare_opts:
        n, sep, o = item.partition("=")
        if not n:
            raise click.BadParameter(f"{item!r}: NEW_COLUMN or NEW_COLUMN=OLD_COLUMN")
        new.append(n)
        old.append(o if sep else n)
    return tuple(new), tuple(old)


def _excludes(items: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not name or not sep:
            raise click.BadParameter(f"{item!r}: FIELD=VALUE, e.g. attributes.canary=true",
                                     param_hint="--topic-exclude")
        out.append((name, value))
    return tuple(out)


def _bar(label: str, enabled: bool) -> Callable[[int, int], None] | None:
    """A progress bar on stderr, only for a person watching (a TTY, no --json)."""
    if not (enabled and sys.stderr.isatty()):
        return None
    bar = click.progressbar(length=1, label=label, file=sys.stderr)
    shown = [0]

    def tick(done: int, total: int) -> None:
        bar.length = max(total, 1)
        bar.update(done - shown[0])
        shown[0] = done
        if done >= total:
            bar.render_finish()
    return tick


@click.command(help=HELP, context_settings={"max_content_width": 100})
@click.option("--old", "old_table", help="The old side's table ([schema.]name).")
@click.option("--old-topic", help="The old side is this Kafka topic instead of a table.")
@click.option("--new", "new_table", required=True, help="The new side's table ([schema.]name).")
@click.option("--since", required=True, help="Window start (event time), inclusive.")
@click.option("--until", default="now", show_default=True, help="Window end, exclusive.")
@click.option("--bucket", default="1h", show_default=True, help="Bucket size: 5m, 1h, 1d...")
@click.option("--sla", default="15m", show_default=True,
              help="A row landed later than this after its event time is late.")
@click.option("--lateness", default="1h", show_default=True,
              help="--old-topic: how long after --until a record of the window may still "
                   "reach Kafka (its stamp); later ones are not read.")
@click.option("--time-column", default="accepted_at", show_default=True,
              help="Event time on the new side (accepted_at, or occurred_at).")
@click.option("--id-column", default="event_id", show_default=True)
@click.option("--landed-column", default="landed_at", show_default=True,
              help="When the row became visible on the new side ('' if none).")
@click.option("--old-id", help="The old side's id column or field (default: --id-column).")
@click.option("--old-time", help="The old side's event-time column or field "
                                 "(default: --time-column).")
@click.option("--old-landed", help="The old side's landing-time column ('' if none; "
                                   "default: --landed-column; a topic's: its stamp).")
@click.option("--compare", "compare_opts", multiple=True, metavar="NEW[=OLD]",
              help="A column whose values must agree (repeat); OLD names it on the old side.")
@click.option("--old-where", help="SQL predicate rows of the old side's table must meet.")
@click.option("--new-where", help="SQL predicate rows of the new side must meet "
                                  "(e.g. to leave canary events out).")
@click.option("--exclude-id-prefix", metavar="PREFIX", default=CANARY_ID_PREFIX,
              show_default=True,
              help="Leave ids starting with PREFIX out of both sides (the RabbitMQ "
                   "canaries); '' compares every id.")
@click.option("--topic-exclude", "topic_excludes", multiple=True, metavar="FIELD=VALUE",
              help="--old-topic: leave records out whose FIELD renders as VALUE (repeat).")
@click.option("--old-dsn-env", default="RECONCILE_OLD_DSN", show_default=True)
@click.option("--new-dsn-env", default="POSTGRES_DSN", show_default=True)
@click.option("--topic", help="Print where in this topic to replay each gap of the new "
                              "side from (default with --old-topic: that topic).")
@click.option("--fail-on-late", is_flag=True, help="Late rows on the new side are a no-go too.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout.")
def main(old_table: str | None, old_topic: str | None, new_table: str, since: str,
         until: str, bucket: str, sla: str, lateness: str, time_column: str, id_column: str,
         landed_column: str, old_id: str | None, old_time: str | None,
         old_landed: str | None, compare_opts: tuple[str, ...], old_where: str | None,
         new_where: str | None, exclude_id_prefix: str | None,
         topic_excludes: tuple[str, ...], old_dsn_env: str, new_dsn_env: str,
         topic: str | None, fail_on_late: bool, as_json: bool) -> None:
    if (old_table is None) == (old_topic is None):
        raise click.UsageError("name the old side: --old TABLE or --old-topic TOPIC")
    if old_topic and old_where:
        raise click.UsageError("--old-where is SQL, for a table; a topic takes "
                               "--topic-exclude FIELD=VALUE")
    if topic_excludes and not old_topic:
        raise click.UsageError("--topic-exclude is for --old-topic; a table takes --old-where")
    lo, hi = parse_time(since), parse_time(until)
    size, late_after = parse_duration(bucket), parse_duration(sla)
    allowance = parse_duration(lateness)
    excludes = _excludes(topic_excludes)
    if lo >= hi:
        raise click.BadParameter("--since must be before --until")
    new_dsn = os.environ.get(new_dsn_env)
    if not new_dsn:
        _fail(ExitCode.USAGE, f"set {new_dsn_env} to the new side's DSN")
    new_cols, old_cols = _pairs(compare_opts)
    new = Side(new_dsn, new_table, id_column, time_column, landed_column or None, new_cols,
               new_where, label="new", exclude_id_prefix=exclude_id_prefix)
    old_landed_col = landed_column if old_landed is None else old_landed
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "localhost:9092")
    old_side: Side | TopicSide
    if old_topic:
        spec = RecordSpec(old_id or id_column, old_time or time_column, old_cols,
                          exclude_id_prefix, excludes)
        old_side = TopicSide(old_topic, bootstrap,
                             os.environ.get("SCHEMA_REGISTRY_URL", DEFAULT_REGISTRY), spec,
                             allowance, use_stamp_as_landed=old_landed != "")
        topic = topic or old_topic
    else:
        old_dsn = os.environ.get(old_dsn_env) or new_dsn
        assert old_table is not None
        old_side = Side(old_dsn, old_table, old_id or id_column, old_time or time_column,
                        old_landed_col or None, old_cols, old_where, label="old",
                        exclude_id_prefix=exclude_id_prefix)
    report, stats = run(old_side, new, lo, hi, size, late_after, progress=not as_json)
    hints = replay_hints(report, topic) if topic else {}
    clean = report.clean(count_late=fail_on_late) and not (stats and stats.unreadable)
    if as_json:
        doc = report.as_json(count_late=fail_on_late)
        doc["clean"] = clean
        if stats is not None:
            doc["topic"] = {"name": old_topic, **stats.as_json()}
        if topic:
            doc["replay"] = hints
        click.echo(json.dumps(doc, indent=2))
    else:
        old_name = f"topic {old_topic}" if old_topic else str(old_table)
        click.echo(render(report, old_name, new_table, hints, count_late=fail_on_late,
                          stats=stats))
    sys.exit(ExitCode.CLEAN if clean else ExitCode.DIFFERENCES)


def _open(side: Side | TopicSide, progress: bool) -> Reader:
    if isinstance(side, TopicSide):
        return TopicReader(side, _bar(f"reading {side.topic}", progress))
    return TableReader(side)


def run(old: Side | TopicSide, new: Side, lo: datetime, hi: datetime, size: timedelta,
        sla: timedelta, *, progress: bool = False) -> tuple[Report, TopicStats | None]:
    """The report for the window, and what was read of a topic (``None`` for a table)."""
    readers: list[Reader] = []
    try:
        try:
            readers += [_open(old, progress), _open(new, progress)]
        except psycopg.OperationalError as exc:
            _fail(ExitCode.UNREACHABLE, f"cannot connect: {str(exc).splitlines()[0]}")
        o_reader, n_reader = readers
        with ThreadPoolExecutor(2) as pool:
            # Both sides at once: each is a scan its database (or Kafka) does. The first
            # pass sums sub-buckets too, so a narrowing needs no second pass of the rows.
            parts = split(size)
            first = None
            if parts is None:
                o_sum, n_sum = both(pool, lambda r: r.summaries(lo, hi, size, sla),
                                    o_reader, n_reader)
            else:
                sub = parts[0]
                (o_sum, o_sub), (n_sum, n_sub) = both(
                    pool, lambda r: r.summaries_and_finer(lo, hi, size, sub, sla),
                    o_reader, n_reader)
                first = (o_sub, n_sub)
            drilled = drill(o_reader, n_reader, to_drill(o_sum, n_sum), o_sum, n_sum,
                            since=lo, until=hi, bucket=size, sla=sla, pool=pool,
                            progress=_bar("narrowing the buckets that differ", progress),
                            first=first)
        report = compare(o_sum, n_sum, since=lo, until=hi, bucket=size,
                         rows=lambda b: drilled[b])
        stats = o_reader.stats if isinstance(o_reader, TopicReader) else None
        return report, stats
    except SideError as exc:
        _fail(ExitCode.INVALID, str(exc))
    except psycopg.OperationalError as exc:
        _fail(ExitCode.UNREACHABLE, f"database: {str(exc).splitlines()[0]}")
    except NotRetained as exc:
        _fail(ExitCode.NOT_RETAINED, f"{exc}; a shorter window (--since) or a replay "
                                     "source that still holds it")
    except KafkaException as exc:
        _fail(ExitCode.UNREACHABLE, f"Kafka at {getattr(old, 'bootstrap', '?')}: {exc}")
    finally:
        for r in readers:
            r.close()


def replay_hints(report: Report, topic: str) -> dict[str, list[dict[str, object]]]:
    """For each bucket with ids missing on the new side: per partition, the offset to
    replay from (``conveyor-connectors``' replay takes the bucket start as --since)."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "localhost:9092")
    out: dict[str, list[dict[str, object]]] = {}
    for b in report.buckets:
        if not b.missing_in_new:
            continue
        try:
            coords = replay_offsets(bootstrap, topic, b.start)
        except KafkaException as exc:
            _fail(ExitCode.UNREACHABLE, f"Kafka at {bootstrap}: {exc}")
        out[b.start.isoformat()] = [c.as_json() for c in coords]
    return out


def render(report: Report, old_name: str, new_name: str,
           hints: dict[str, list[dict[str, object]]], *,
           count_late: bool, stats: TopicStats | None = None) -> str:
    cols = ("bucket start", "old", "new", "miss new", "miss old", "dup new", "dup old",
            "differ", "late old", "late new")
    lines = [f"{old_name} (old) vs {new_name} (new), {report.since.isoformat()} to "
             f"{report.until.isoformat()}, buckets of {report.bucket}: "
             f"{len(report.buckets)} with rows, {report.drilled} differed (narrowed to "
             "their rows)", ""]
    rows = [(b.start.strftime("%Y-%m-%d %H:%M:%S"), b.old.rows, b.new.rows, b.missing_in_new,
             b.missing_in_old, b.duplicated_new, b.duplicated_old, b.mismatched, b.old.late,
             b.new.late) for b in report.buckets if b.differs or b.old.late or b.new.late]
    if rows:
        widths = [max(len(str(c)), *(len(str(r[i])) for r in rows)) for i, c in enumerate(cols)]
        lines.append("  ".join(str(c).rjust(w) for c, w in zip(cols, widths, strict=True)))
        lines += ["  ".join(str(v).rjust(w) for v, w in zip(r, widths, strict=True))
                  for r in rows]
        lines.append("")
        for b in report.buckets:
            for kind, ids in b.examples.items():
                lines.append(f"  {b.start:%Y-%m-%d %H:%M} {kind}: {', '.join(ids)}"
                             + (" ..." if getattr(b, kind) > len(ids) else ""))
    totals = ", ".join(f"{k.replace('_', ' ')} {report.total(k)}"
                       for k in (*KINDS, "late_old", "late_new"))
    lines.append(f"totals: old {sum(b.old.rows for b in report.buckets)} rows, new "
                 f"{sum(b.new.rows for b in report.buckets)} rows; {totals}")
    for start, coords in hints.items():
        parts = ", ".join(f"p{c['partition']}@{c['offset']}"
                          + ("" if c["retained"] else " (NOT retained)")
                          for c in coords)
        lines.append(f"replay from {start}: {parts}")
    if stats is not None:
        lines.append(f"topic: {stats.records} records read, {stats.excluded} excluded, "
                     f"{stats.outside} outside the window, {stats.unreadable} unreadable")
        for reason, n in sorted(stats.skipped.items()):
            lines.append(f"  unreadable ({n}): {reason}")
    clean = report.clean(count_late=count_late) and not (stats and stats.unreadable)
    lines.append("CLEAN: nothing missing, twice or different" if clean
                 else "DIFFERENCES: see above")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
