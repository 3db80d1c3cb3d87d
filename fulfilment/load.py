"""A steady load on the fulfilment centre's database: inserts, updates and deletes at a set
rate, the way its robots, conveyor segments, totes and order picks write them.

Every update raises the row's ``version`` by one, and every change is counted once its
transaction has committed (``Tally``), so a test can check the warehouse against exactly what
the source committed: the state tables hold the rows still alive, the change tables each
committed change once. All keys carry a ``tag`` (``T3F9A-AMR-0004``, order ids from a range of
its own), so several runs share one database and each finds its own rows.

    conveyor-fulfilment-load --rate 200 --seconds 60          # CONVEYOR_FULFILMENT_DSN
"""
from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import psycopg

log = logging.getLogger(__name__)

TABLES = ("robots", "conveyor_segments", "totes", "picks")
ZONES = ("ambient", "chilled", "frozen")
ROBOT_STATES = ("idle", "picking", "charging", "fault")
# How often each kind of write happens, per transaction: telemetry dominates, as on a real floor.
WEIGHTS = {
    "robot_telemetry": 40, "segment_update": 12, "tote_new": 6, "tote_move": 14,
    "tote_shipped": 4, "order_lines": 10, "pick_progress": 11, "picks_packed": 3,
}
# A tag's order ids: [base, base + ORDER_SPAN).
ORDER_SPAN = 10_000_000


def order_base(tag: str) -> int:
    """The first order id of a tag's range (the same for the same tag, in every process)."""
    return (int(uuid.uuid5(uuid.NAMESPACE_URL, tag)) % 90_000) * ORDER_SPAN


@dataclass
class Tally:
    """Changes committed, per table and operation (c, u, d), and the keys they touched."""
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    keys: dict[str, set[tuple[Any, ...]]] = field(
        default_factory=lambda: {t: set() for t in TABLES})

    def add(self, other: Tally) -> None:
        self.changes.update(other.changes)
        for table, keys in other.keys.items():
            self.keys[table] |= keys

    @property
    def total(self) -> int:
        return sum(self.changes.values())


def default_dsn() -> str:
    dsn = os.environ.get("CONVEYOR_FULFILMENT_DSN")
    if dsn:
        return dsn
    user = quote(os.environ.get("CONVEYOR_POSTGRES_USER", "conveyor"), safe="")
    password = quote(os.environ.get("CONVEYOR_POSTGRES_PASSWORD", ""), safe="")
    return f"postgresql://{user}:{password}@localhost:5433/fulfilment"


class FulfilmentLoad:
    """Writes one small transaction per :meth:`step`, of a kind drawn from ``WEIGHTS``."""

    def __init__(self, conn: psycopg.Connection[Any], tag: str, seed: int = 0,
                 robots: int = 24, segments: int = 12) -> None:
        self.conn = conn
        self.tag = tag
        self.rng = random.Random(seed)
        self.order_base = order_base(tag)
        self._next_order = self.order_base
        self.robots = [f"{tag}-AMR-{i:04d}" for i in range(robots)]
        self.segments = [f"{tag}-{chr(65 + i // 6)}-{i % 6:02d}" for i in range(segments)]
        self.totes: list[uuid.UUID] = []
        self.picks: list[tuple[int, int]] = []
        self.tally = Tally()

    # -- one transaction each -------------------------------------------------------------

    def setup(self) -> Tally:
        """The floor: robots and segments, inserted once (a second call changes nothing);
        order ids go on after the tag's last one, so a tag can be loaded again."""
        done = Tally()
        with self.conn.transaction():
            row = self.conn.execute(
                "SELECT max(order_id) FROM fulfilment.picks WHERE order_id >= %s AND order_id < %s",
                (self.order_base, self.order_base + ORDER_SPAN)).fetchone()
            if row and row[0] is not None:
                self._next_order = int(row[0]) + 1
            for robot in self.robots:
                cur = self.conn.execute(
                    "INSERT INTO fulfilment.robots (robot_id, model, zone, state, battery_pct,"
                    " position_x, position_y) VALUES (%s, %s, %s, 'idle', 100, 0, 0)"
                    " ON CONFLICT DO NOTHING",
                    (robot, self.rng.choice(("Fetch-100", "Hive-3", "Kiva-T2")),
                     self.rng.choice(ZONES)))
                self._count(done, "robots", "c", (robot,), cur.rowcount)
            for segment in self.segments:
                cur = self.conn.execute(
                    "INSERT INTO fulfilment.conveyor_segments (segment_id, zone, status, speed_mps)"
                    " VALUES (%s, %s, 'running', 1.5) ON CONFLICT DO NOTHING",
                    (segment, self.rng.choice(ZONES)))
                self._count(done, "conveyor_segments", "c", (segment,), cur.rowcount)
        self.tally.add(done)
        return done

    def step(self) -> int:
        """One transaction of one kind; the number of rows it changed (0 when the kind had
        nothing to act on, e.g. no tote to move yet)."""
        kind = self.rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        done = Tally()
        with self.conn.transaction():
            getattr(self, f"_{kind}")(done)
        # Only now, after the commit, do these changes exist.
        self.tally.add(done)
        self._after_commit(done)
        return done.total

    # -- the kinds of write ---------------------------------------------------------------

    def _robot_telemetry(self, done: Tally) -> None:
        robot = self.rng.choice(self.robots)
        cur = self.conn.execute(
            "UPDATE fulfilment.robots SET state = %s, battery_pct = %s, position_x = %s,"
            " position_y = %s, version = version + 1, updated_at = now() WHERE robot_id = %s",
            (self.rng.choice(ROBOT_STATES), self.rng.randint(5, 100),
             round(self.rng.uniform(0, 500), 2), round(self.rng.uniform(0, 200), 2), robot))
        self._count(done, "robots", "u", (robot,), cur.rowcount)

    def _segment_update(self, done: Tally) -> None:
        segment = self.rng.choice(self.segments)
        cur = self.conn.execute(
            "UPDATE fulfilment.conveyor_segments SET status = %s, speed_mps = %s,"
            " totes_on = %s, version = version + 1, updated_at = now() WHERE segment_id = %s",
            (self.rng.choices(("running", "stopped", "jammed"), (90, 8, 2))[0],
             round(self.rng.uniform(0.5, 2.5), 2), self.rng.randint(0, 40), segment))
        self._count(done, "conveyor_segments", "u", (segment,), cur.rowcount)

    def _tote_new(self, done: Tally) -> None:
        # Random, not drawn from the seeded rng: two runs with one seed must not collide.
        tote = uuid.uuid4()
        cur = self.conn.execute(
            "INSERT INTO fulfilment.totes (tote_id, barcode, segment_id, status)"
            " VALUES (%s, %s, %s, 'empty')",
            (tote, f"{self.tag}-TOTE-{tote.hex[:12]}", self.rng.choice(self.segments)))
        self._count(done, "totes", "c", (tote,), cur.rowcount)

    def _tote_move(self, done: Tally) -> None:
        if not self.totes:
            return self._tote_new(done)
        tote = self.rng.choice(self.totes)
        cur = self.conn.execute(
            "UPDATE fulfilment.totes SET segment_id = %s, status = %s,"
            " item_count = item_count + %s, version = version + 1, updated_at = now()"
            " WHERE tote_id = %s",
            (self.rng.choice(self.segments), self.rng.choice(("filling", "full")),
             self.rng.randint(0, 3), tote))
        self._count(done, "totes", "u", (tote,), cur.rowcount)

    def _tote_shipped(self, done: Tally) -> None:
        if not self.totes:
            return
        tote = self.rng.choice(self.totes)
        cur = self.conn.execute("DELETE FROM fulfilment.totes WHERE tote_id = %s", (tote,))
        self._count(done, "totes", "d", (tote,), cur.rowcount)

    def _order_lines(self, done: Tally) -> None:
        order_id = self._next_order
        self._next_order += 1
        for line_no in range(1, self.rng.randint(1, 4) + 1):
            cur = self.conn.execute(
                "INSERT INTO fulfilment.picks (order_id, line_no, sku, quantity, status)"
                " VALUES (%s, %s, %s, %s, 'queued')",
                (order_id, line_no, f"SKU-{self.rng.randint(1, 50_000):06d}",
                 self.rng.randint(1, 6)))
            self._count(done, "picks", "c", (order_id, line_no), cur.rowcount)

    def _pick_progress(self, done: Tally) -> None:
        if not self.picks:
            return self._order_lines(done)
        order_id, line_no = self.rng.choice(self.picks)
        cur = self.conn.execute(
            "UPDATE fulfilment.picks SET status = CASE status WHEN 'queued' THEN 'picked'"
            " ELSE 'packed' END, robot_id = %s, tote_id = %s, picked_at = coalesce(picked_at,"
            " now()), version = version + 1, updated_at = now()"
            " WHERE order_id = %s AND line_no = %s",
            (self.rng.choice(self.robots), self.rng.choice(self.totes) if self.totes else None,
             order_id, line_no))
        self._count(done, "picks", "u", (order_id, line_no), cur.rowcount)

    def _picks_packed(self, done: Tally) -> None:
        if not self.picks:
            return
        order_id = self.rng.choice(self.picks)[0]
        cur = self.conn.execute(
            "DELETE FROM fulfilment.picks WHERE order_id = %s RETURNING line_no", (order_id,))
        for (line_no,) in cur.fetchall():
            self._count(done, "picks", "d", (order_id, line_no), 1)

    # -- bookkeeping ----------------------------------------------------------------------

    @staticmethod
    def _count(done: Tally, table: str, op: str, key: tuple[Any, ...], rows: int) -> None:
        if rows > 0:
            done.changes[(table, op)] += rows
            done.keys[table].add(key)

    def _after_commit(self, done: Tally) -> None:
        for (table, op), _ in done.changes.items():
            keys = done.keys[table]
            if table == "totes":
                if op == "c":
                    self.totes.extend(k[0] for k in keys if k[0] not in self.totes)
                elif op == "d":
                    self.totes = [t for t in self.totes if (t,) not in keys]
            elif table == "picks":
                if op == "c":
                    self.picks.extend((k[0], k[1]) for k in keys if k not in self.picks)
                elif op == "d":
                    self.picks = [p for p in self.picks if p not in keys]


def run(load: FulfilmentLoad, rate: float, seconds: float | None = None,
        stop: threading.Event | None = None,
        on_error: Callable[[Exception], None] | None = None) -> Tally:
    """Steps at ``rate`` transactions per second until ``seconds`` pass or ``stop`` is set.
    Paced against a schedule, so a slow transaction is caught up rather than lowering the
    rate. A failed transaction (rolled back, nothing counted) is passed to ``on_error``, or
    raised when there is none."""
    stop = stop or threading.Event()
    interval = 1.0 / rate
    start = time.monotonic()
    n = 0
    while not stop.is_set() and (seconds is None or time.monotonic() - start < seconds):
        try:
            load.step()
        except psycopg.Error as exc:
            if on_error is None:
                raise
            on_error(exc)
        n += 1
        delay = start + n * interval - time.monotonic()
        if delay > 0:
            stop.wait(delay)
    return load.tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="conveyor-fulfilment-load",
        description="Write a steady load of robot, conveyor, tote and pick changes to the "
                    "fulfilment centre's database (CONVEYOR_FULFILMENT_DSN, default: the "
                    "compose stack's fulfilment-db on localhost:5433).")
    parser.add_argument("--rate", type=float, default=100.0,
                        help="transactions per second (default 100)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long (default 60)")
    parser.add_argument("--tag", default=f"T{uuid.uuid4().hex[:5].upper()}",
                        help="prefix of every key written (default: a random one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with psycopg.connect(default_dsn()) as conn:
        load = FulfilmentLoad(conn, args.tag)
        load.setup()
        tally = run(load, args.rate, args.seconds)
    by_op = ", ".join(f"{t}.{op} {n}" for (t, op), n in sorted(tally.changes.items()))
    print(f"tag {args.tag}: {tally.total} changes committed ({by_op})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
