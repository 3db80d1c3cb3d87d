"""The ledger recovers from what Kafka says while it (re)starts, without a restart of its own.

Fakes stand in for librdkafka's clients: these are the answers a real broker gives while
it starts, which the integration crash test only meets by chance.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from sidecar.exactly_once import ledger as ledger_module
from sidecar.exactly_once.ledger import DedupLedger, LedgerUnavailable

UNKNOWN_PARTITION = KafkaException(KafkaError(KafkaError._UNKNOWN_PARTITION))


class StaleMetadataProbe:
    """Fails every watermark query with "Unknown partition" until its metadata for the
    topic is asked for again: librdkafka's cache for a topic nobody is assigned to."""

    def __init__(self) -> None:
        self.stale = True
        self.refreshes = 0

    def get_watermark_offsets(self, tp: Any, timeout: float, cached: bool) -> tuple[int, int]:
        assert not cached, "the ledger must ask the broker, not its cache"
        if self.stale:
            raise UNKNOWN_PARTITION
        return 0, 42

    def list_topics(self, topic: str, timeout: float) -> object:
        self.refreshes += 1
        self.stale = False
        return object()


class Unused:
    """Stands in for the clients a test does not exercise: no connection is attempted."""

    def __init__(self, config: Any) -> None:
        pass


def _ledger(monkeypatch: pytest.MonkeyPatch, probe: Any = None) -> DedupLedger:
    clients = iter([Unused, lambda _config: probe])  # the reading consumer, then the probe
    monkeypatch.setattr(ledger_module, "Consumer", lambda config: next(clients)(config))
    return DedupLedger({"bootstrap.servers": "kafka:9092"}, "conveyor.ledger.t", group_id="g")


def test_watermarks_recover_once_metadata_is_refreshed(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = StaleMetadataProbe()
    ledger = _ledger(monkeypatch, probe)
    with pytest.raises(LedgerUnavailable, match="Unknown partition"):
        ledger._high_watermarks(timeout=1)
    assert probe.refreshes == 1
    assert ledger._high_watermarks(timeout=1) == {0: 42}  # the caller's retry succeeds


class SilentAdmin(Unused):
    """create_topics whose answer never comes (the broker is not listening yet)."""

    def create_topics(self, topics: list[Any], request_timeout: float
                      ) -> dict[str, concurrent.futures.Future[None]]:
        return {t.topic: concurrent.futures.Future() for t in topics}


def test_ensure_topic_without_an_answer_is_retryable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_module, "AdminClient", SilentAdmin)
    with pytest.raises(LedgerUnavailable, match="no answer within 0s"):
        _ledger(monkeypatch).ensure_topic(timeout=0.01)
