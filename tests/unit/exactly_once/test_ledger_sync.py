"""The ledger's read-to-end protocol against a fake partition log with transactions.

The log holds records of transactions, their commit/abort markers (which take an offset
but are never handed to a consumer), and transactions still open. A read_committed
consumer sees committed records only, and nothing past the first open transaction (the
last stable offset); the probe's high watermark counts everything written."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError

from sidecar.exactly_once import ledger as ledger_module
from sidecar.exactly_once.ledger import DedupLedger, LedgerUnavailable


class Log:
    def __init__(self) -> None:
        self.entries: list[tuple[str, str, bytes]] = []  # (kind, txn, key)

    def write(self, txn: str, *keys: str) -> None:
        self.entries += [("rec", txn, k.encode()) for k in keys]

    def end(self, txn: str, outcome: str) -> None:
        self.entries.append((outcome, txn, b""))

    def outcome(self, txn: str) -> str | None:
        for kind, t, _ in self.entries:
            if t == txn and kind in ("commit", "abort"):
                return kind
        return None

    def lso(self) -> int:
        for off, (kind, txn, _) in enumerate(self.entries):
            if kind == "rec" and self.outcome(txn) is None:
                return off
        return len(self.entries)


class Msg:
    def __init__(self, offset: int, key: bytes | None = None, eof: bool = False) -> None:
        self._off, self._key, self._eof = offset, key, eof

    def error(self) -> KafkaError | None:
        return KafkaError(KafkaError._PARTITION_EOF) if self._eof else None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._off

    def key(self) -> bytes | None:
        return self._key

    def timestamp(self) -> tuple[int, int]:
        return (1, 0)


class ReadCommitted:
    def __init__(self, log: Log) -> None:
        self.log, self.pos, self.eof_at = log, 0, -1

    def consume(self, n: int, timeout: float) -> list[Msg]:
        out: list[Msg] = []
        lso = self.log.lso()
        while self.pos < lso and len(out) < n:
            kind, txn, key = self.log.entries[self.pos]
            if kind == "rec" and self.log.outcome(txn) == "commit":
                out.append(Msg(self.pos, key))
            self.pos += 1
        if self.pos == lso and self.eof_at != lso and len(out) < n:
            self.eof_at = lso
            out.append(Msg(lso, eof=True))
        return out


class Probe:
    def __init__(self, log: Log) -> None:
        self.log = log

    def get_watermark_offsets(self, tp: Any, timeout: float, cached: bool) -> tuple[int, int]:
        return 0, len(self.log.entries)


def ledger_over(log: Log, monkeypatch: pytest.MonkeyPatch) -> DedupLedger:
    clients = iter([ReadCommitted(log), Probe(log)])
    monkeypatch.setattr(ledger_module, "Consumer", lambda config: next(clients))
    ledger = DedupLedger({}, "conveyor.ledger.t", group_id="g")
    ledger._partitions = [0]
    return ledger


def test_committed_ids_are_seen_although_the_marker_is_never_delivered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log()
    log.write("a", "e1", "e2")
    log.end("a", "commit")
    ledger = ledger_over(log, monkeypatch)
    assert ledger.seen(["e1", "e2", "e3"], sync=True, timeout=2) == {"e1", "e2"}


def test_aborted_ids_never_count(monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log()
    log.write("a", "e1")
    log.end("a", "abort")
    log.write("b", "e2")
    log.end("b", "commit")
    ledger = ledger_over(log, monkeypatch)
    assert ledger.seen(["e1", "e2"], sync=True, timeout=2) == {"e2"}


def test_sync_waits_for_a_transaction_open_when_it_began(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Another owner wrote e1 and has not decided yet: the answer must wait for it, or a
    redelivery of e1 decided now could be committed twice."""
    log = Log()
    log.write("other", "e1")
    ledger = ledger_over(log, monkeypatch)
    with pytest.raises(LedgerUnavailable, match="not read to its end"):
        ledger.seen(["e1"], sync=True, timeout=0.2)
    log.end("other", "commit")
    assert ledger.seen(["e1"], sync=True, timeout=2) == {"e1"}


def test_each_sync_waits_for_what_was_written_before_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log()
    log.write("a", "e1")
    log.end("a", "commit")
    ledger = ledger_over(log, monkeypatch)
    ledger.seen([], sync=True, timeout=2)
    assert ledger.seen(["e1"], sync=True, timeout=2) == {"e1"}
    log.write("later", "e2")  # below the high watermark of the next sync: it must wait
    with pytest.raises(LedgerUnavailable):
        ledger.seen(["e2"], sync=True, timeout=0.2)
    log.end("later", "abort")
    assert ledger.seen(["e2"], sync=True, timeout=2) == set()


def test_without_sync_only_what_was_fetched_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    log = Log()
    ledger = ledger_over(log, monkeypatch)
    ledger.seen([], sync=True, timeout=2)
    log.write("a", "e1")
    log.end("a", "commit")
    ledger.remember(["mine"])
    assert ledger.seen(["e1", "mine"], sync=False) == {"e1", "mine"}
