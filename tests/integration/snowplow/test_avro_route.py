"""A route with format avro: page views land in the Avro envelope through the registry."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from snowplow_tracker import PageView, StructuredEvent

from devstack.stack import Stack

from .conftest import CollectorProcess, read_committed
from .helpers import flush_all, make_tracker

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry_url() -> str:
    config = Stack.from_env()
    if not config.schema_registry_ready():
        pytest.skip(f"no schema registry at {config.schema_registry_url}")
    return config.schema_registry_url


def test_page_views_as_avro(collector: Callable[..., CollectorProcess], kafka_bootstrap: str,
                            registry_url: str) -> None:
    c = collector(schema_registry={"url": registry_url})
    cfg = c.config_path.read_text().replace("kind: page_view\n",
                                            "kind: page_view\n    format: avro\n")
    c.config_path.write_text(cfg)
    c.terminate()
    c.terminate_enrich()   # enrich routes and encodes: it must read the new config too
    c.start()
    tracker, emitter, outcomes = make_tracker(c.endpoint, batch_size=4)
    views = [tracker.track(PageView(page_url=f"https://shop.example/{i}", page_title="P"))
             for i in range(3)]
    other = tracker.track(StructuredEvent(category="c", action="a"))
    flush_all(emitter)
    assert len(outcomes.ok) == 4
    c.wait_enriched()
    client = SchemaRegistryClient({"url": registry_url})
    decode = AvroDeserializer(client)
    got = {}
    for topic, _key, value in read_committed(kafka_bootstrap, [c.topics["views"]]):
        env = decode(value, SerializationContext(topic, MessageField.VALUE))
        got[env["event_id"]] = env
    assert sorted(got) == sorted(views)
    for env in got.values():
        assert env["source"] == "snowplow" and env["event_type"] == "page_view"
        assert env["payload"]["page_title"] == "P"
        assert env["payload"]["params"]["tna"] == "itest"
    assert client.get_latest_version(f"{c.topics['views']}-value").schema_id > 0
    json_side = read_committed(kafka_bootstrap, [c.topics["default"]])
    assert [k.decode() for _t, k, _v in json_side] == [other]
