"""What the replay refuses before touching anything, and which topics it would move."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connectors import replay
from connectors.configs import load_profile
from connectors.replay import PartitionPlan, ReplayRefused, make_plan, sink_topics

SINCE = datetime(2026, 12, 1, tzinfo=UTC)


class FakeClient:
    def __init__(self, config: dict[str, str] | None) -> None:
        self._config = config
        self.calls: list[str] = []

    def config(self, name: str) -> dict[str, str] | None:
        return self._config

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"{name} called: a refused replay must change nothing")


@pytest.mark.parametrize("profile", ["s3", "snowflake"])
def test_sinks_with_offsets_of_their_own_are_refused_by_name(profile: str) -> None:
    for c in load_profile(profile):
        cls = c.config["connector.class"]
        if cls in replay.SUPPORTED:
            continue
        with pytest.raises(ReplayRefused) as info:
            make_plan(FakeClient(c.config), c.name, SINCE, "unused:9092")  # type: ignore[arg-type]
        assert "offsets" in str(info.value) or "not a sink" in str(info.value)


def test_every_local_sink_is_supported() -> None:
    # The CDC source is no sink: replay refuses it by name (test above).
    sinks = {c.config["connector.class"] for c in load_profile("local")} - {
        "io.debezium.connector.postgresql.PostgresConnector"}
    assert sinks and sinks <= set(replay.SUPPORTED)


def test_a_missing_connector_is_a_lookup_error() -> None:
    with pytest.raises(LookupError):
        make_plan(FakeClient(None), "nope", SINCE, "unused:9092")  # type: ignore[arg-type]


def test_topics_from_a_list_or_a_regex_matched_whole() -> None:
    assert sink_topics({"topics": "b, a"}, []) == ["a", "b"]
    names = ["snowplow.events", "snowplow.bad", "x.snowplow.events", "snowplow.page_views"]
    assert sink_topics({"topics.regex": r"snowplow\.(?!bad$).+"}, names) == [
        "snowplow.events", "snowplow.page_views"]
    with pytest.raises(ReplayRefused):
        sink_topics({}, names)


def test_records_replayed_per_partition() -> None:
    assert PartitionPlan("t", 0, current=100, new=40, end=120, log_start=0,
                         retained=True).records == 60
    assert PartitionPlan("t", 0, current=None, new=40, end=120, log_start=0,
                         retained=True).records == 80
    # A time past the end: nothing to replay, the partition stays where it is.
    assert PartitionPlan("t", 0, current=120, new=120, end=120, log_start=0,
                         retained=True).records == 0
