"""A sink double: records batches, fails on demand, dedups like the real one."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from sidecar.common.errors import FatalKafkaError, TransactionAborted
from sidecar.exactly_once.ledger import RecentIds
from sidecar.exactly_once.producer import RecordRejected
from sidecar.snowplow.pipeline import Output
from sidecar.snowplow.sink import BatchResult, plan_batch


class FakeSink:
    def __init__(self, slots: int = 1) -> None:
        self.slots = slots
        self._lock = threading.Lock()
        self.batches: list[list[Output]] = []
        self.slots_used: list[int] = []
        self.written: list[Output] = []
        self.window = RecentIds(10_000)
        self.fail_next: list[type[Exception]] = []
        self.fail_batches_with: set[str | None] = set()   # fail once, a batch holding one
        self.gate: threading.Event | None = None   # set: commits block until released
        self.rebuilt = 0
        self.started = False
        self.probe_ok = True
        self.reject_values: set[bytes] = set()   # Kafka refuses records with these values
        self.settings: Any = None

    def start(self) -> None:
        self.started = True

    def commit(self, outputs: Sequence[Output], slot: int = 0) -> BatchResult:
        if self.gate is not None:
            self.gate.wait(10)
        with self._lock:
            self.batches.append(list(outputs))
            self.slots_used.append(slot)
            if self.fail_next:
                raise self.fail_next.pop(0)("injected")
            for i, o in enumerate(outputs):
                if o.value in self.reject_values:
                    raise RecordRejected(i, "MSG_SIZE_TOO_LARGE (injected)")
            hit = self.fail_batches_with & {o.dedup_id for o in outputs}
            if hit:
                self.fail_batches_with -= hit
                raise TransactionAborted("injected")
            ids = [o.dedup_id for o in outputs if o.dedup_id]
            _, fresh, dups = plan_batch(outputs, self.window.seen(ids))
            self.written.extend(o for i, o in enumerate(outputs) if i not in dups)
            for i in fresh:
                self.window.add(i, 0)
            return BatchResult(frozenset(dups), len(outputs) - len(dups))

    def rebuild(self, slot: int = 0) -> None:
        self.rebuilt += 1

    def probe(self) -> bool:
        return self.probe_ok

    def close(self) -> None:
        pass


__all__ = ["FakeSink", "FatalKafkaError", "RecordRejected", "TransactionAborted"]
