"""A commit whose outcome Kafka left unknown: enrich must not read on from its own position.

The offsets went into the same transaction, so if that commit went through, the records
are done; if not, they must be enriched again. Only the group's committed offsets say which,
so the member is rebuilt (and reads from them) rather than rewound.
"""

from __future__ import annotations

import pytest

from sidecar.common.errors import FatalKafkaError
from sidecar.exactly_once.producer import CommitUndecided

from .test_enrich import Msg, _pixel, _runner


def test_an_undecided_commit_rebuilds_the_member_instead_of_rewinding() -> None:
    runner, consumer, producer = _runner()
    producer.fail = [CommitUndecided("commit_transaction: _TIMED_OUT (still retriable)")]
    with pytest.raises(FatalKafkaError, match="outcome unknown"):
        runner.process([Msg(0, 3, _pixel(0)), Msg(0, 4, _pixel(1))])
    assert consumer.seeks == [], "a rewind would enrich a committed batch a second time"
    assert producer.committed == []
