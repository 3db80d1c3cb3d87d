"""Ends the process when a librdkafka call blocks far past the timeout it was given.

librdkafka's ``send_offsets_to_transaction()`` can block past its timeout when the group
coordinator goes away (librdkafka issues #5456 and #5511, both open): Kafka's coordinator
request timeout is never checked, and a decommissioned coordinator stays cached. The calling
thread is inside C, where nothing in Python can interrupt it, and librdkafka accepts no other
transactional call while one is in progress. Seen here: after the RabbitMQ tests' broker
SIGKILLs, enrich sat in that call for good while its ``/health`` still said "progressing".

So every blocking transactional call runs under ``watch``: when one has run ``grace_s`` past
its timeout, the watchdog logs which call and whose, prints every thread's stack, and ends
the process with ``EXIT_HUNG``. The container's restart policy starts a new process, whose
``init_transactions()`` fences the stuck client's ``transactional.id`` and aborts what it had
open. Nothing is lost and nothing lands twice: the stuck transaction was never committed, so
its inputs are read again (Kafka offsets) or redelivered (RabbitMQ, unacked), and the dedup
ledger decides what was already committed. A process that ends is seen by every
orchestrator; one that hangs is seen by none.
"""

from __future__ import annotations

import contextlib
import faulthandler
import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

# EX_SOFTWARE (sysexits.h): an internal error; compose's and Kubernetes' restart policies
# start the process again.
EXIT_HUNG = 70
# How long past its own timeout a call may still be running. librdkafka itself answers
# within a second or two of the timeout when it honours it.
GRACE_S = 30.0
CHECK_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class Hung:
    call: str           # e.g. "send_offsets_to_transaction"
    owner: str          # the transactional.id
    running_s: float    # how long it has been running
    timeout_s: float    # the timeout it was given


def exit_process(hung: Hung) -> None:
    """Log the hung call, print every thread's stack, and end the process at once (a
    graceful exit would wait on the very thread that is stuck)."""
    log.critical("kafka.call_hung", extra={
        "call": hung.call, "transactional_id": hung.owner,
        "running_s": round(hung.running_s, 1), "timeout_s": hung.timeout_s,
        "exit_code": EXIT_HUNG})
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    if sys.__stderr__ is not None:
        with contextlib.suppress(Exception):
            faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
    os._exit(EXIT_HUNG)


class Watchdog:
    """Watches calls in progress; ``check()`` (run every ``interval_s`` by a daemon thread
    started with the first watch) hands each call overdue by ``grace_s`` to ``on_hung``,
    once."""

    def __init__(self, grace_s: float = GRACE_S, *,
                 on_hung: Callable[[Hung], None] = exit_process,
                 clock: Callable[[], float] = time.monotonic,
                 interval_s: float = CHECK_INTERVAL_S) -> None:
        self.grace_s = grace_s
        self._on_hung = on_hung
        self._clock = clock
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._ids = itertools.count()
        # id -> (call, owner, started at, timeout)
        self._running: dict[int, tuple[str, str, float, float]] = {}
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watch(self, call: str, timeout_s: float, owner: str) -> Iterator[None]:
        """Run the body as one call that must end within ``timeout_s`` + ``grace_s``."""
        key = next(self._ids)
        with self._lock:
            self._running[key] = (call, owner, self._clock(), timeout_s)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kafka-watchdog",
                                                daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(key, None)

    def check(self) -> list[Hung]:
        """The calls overdue now, each handed to ``on_hung`` (and then forgotten)."""
        now = self._clock()
        with self._lock:
            overdue = [(key, Hung(call, owner, now - started, timeout))
                       for key, (call, owner, started, timeout) in self._running.items()
                       if now - started > timeout + self.grace_s]
            for key, _ in overdue:
                del self._running[key]
        for _, hung in overdue:
            self._on_hung(hung)
        return [hung for _, hung in overdue]

    def _run(self) -> None:
        while True:
            time.sleep(self._interval_s)
            try:
                self.check()
            except Exception:   # on_hung's own failure must not end the watching
                log.exception("kafka.watchdog_failed")


# One per process: every TransactionalProducer watches its calls here unless given another.
WATCHDOG = Watchdog()
