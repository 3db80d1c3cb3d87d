"""Every connector profile, checked as files: no worker, no network.

The local profile is exercised end to end against PostgreSQL by the integration tests; the
production profiles (snowflake, s3) are only checked here, never run against Snowflake, an
Iceberg catalog or S3. These tests hold them to what the
local one promises: the same streams from the same topics, a dead-letter topic for every
record they cannot write, transactions respected, and no secret in any file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from connectors.configs import (
    CONFIG_ROOT,
    ConfigFileError,
    ConnectorFile,
    load_profile,
    parse,
    profile_files,
    profiles,
)

PRODUCTION = ("snowflake", "s3")
ALL_PROFILES = ("local", *PRODUCTION)
# Connector names are <prefix>-<stream>, the stream being the file's name. Snowflake takes
# the warehouse role of local PostgreSQL (same names, so status/delete and runbooks carry
# over); the S3 lake runs beside a warehouse, so it needs names, consumer groups and DLQs of
# its own.
PREFIX = {"local": "warehouse", "snowflake": "warehouse", "s3": "lake"}
STREAMS = ("rabbitmq-events", "snowplow-bad-rows", "snowplow-events")
# Snowplow's own layout (the Postgres loader's atomic.events and entity tables): PostgreSQL
# only, for now. The production profiles land the per-kind tables (connectors/README.md).
# The fulfilment centre's CDC (a Debezium source and the two sinks of its changes): local only,
# for now.
LOCAL_ONLY = ("snowplow-atomic", "snowplow-entities",
              "fulfilment-cdc", "fulfilment-changes", "fulfilment-state")
# Source connectors are named after their stream alone: they feed Kafka, not a warehouse.
SOURCES = {"fulfilment-cdc"}


def streams(profile: str) -> tuple[str, ...]:
    return tuple(sorted((*STREAMS, *LOCAL_ONLY))) if profile == "local" else STREAMS

README = CONFIG_ROOT.parent / "README.md"

# Keys that name a credential, matched loosely and on purpose more widely than the loader's
# own rule: if either is wrong, one of them still catches a secret written in clear.
_SECRETISH_KEY = re.compile(
    r"password|passphrase|secret|private|token|credential|jaas|hash\.key|api\.key"
    r"|access[.-]?key|secretkey", re.IGNORECASE)
_REFERENCE = re.compile(r"^\$\{(env|file):[^}]+\}$")
# Values that look like a secret whatever their key: a PEM block, an AWS access key id,
# a password inside a URL, a long unbroken base64/hex run.
_SECRETISH_VALUE = (
    re.compile(r"-----BEGIN [A-Z ]*(PRIVATE )?KEY-----"),
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"://[^/\s:@]+:[^/\s@]+@"),
    re.compile(r"[A-Za-z0-9+/=]{40,}"),
)
# SMTs that change a record's topic. Snowflake's connector keys its channels and committed
# offsets by topic, so a renamed topic leaves the real partitions uncommitted; the Iceberg
# sink routes on a field, not on the topic. The production profiles use none of them.
_TOPIC_RENAMING = ("RouteByField", "RegexRouter", "TimestampRouter", "TopicRegexRouter")
_ENV_REF = re.compile(r"\$\{env:([A-Za-z0-9_]+)\}")


def _profile(name: str) -> dict[str, ConnectorFile]:
    return {c.path.stem: c for c in load_profile(name) if c.path is not None}


def _all_connectors() -> Iterator[tuple[str, str, ConnectorFile]]:
    for profile in ALL_PROFILES:
        for stream, connector in _profile(profile).items():
            yield profile, stream, connector


CONNECTORS = list(_all_connectors())
IDS = [f"{p}/{s}" for p, s, _ in CONNECTORS]
SINKS = [(p, s, c) for p, s, c in CONNECTORS if s not in SOURCES]
SINK_IDS = [f"{p}/{s}" for p, s, _ in SINKS]


def _transform_types(connector: ConnectorFile) -> list[str]:
    aliases = [a.strip() for a in connector.config.get("transforms", "").split(",") if a.strip()]
    return [connector.config[f"transforms.{a}.type"] for a in aliases]


# -- the profiles exist and load --------------------------------------------------------------

def test_every_profile_is_offered_and_loads_through_the_loader() -> None:
    assert set(ALL_PROFILES) <= set(profiles())
    for profile in ALL_PROFILES:
        # load_profile parses every file: JSON, string values, no clear secret, unique names.
        assert len(load_profile(profile)) == len(streams(profile)), profile


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_each_profile_has_one_file_per_stream(profile: str) -> None:
    assert tuple(p.stem for p in profile_files(profile)) == streams(profile)


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_connector_names_are_the_prefix_and_the_stream(profile: str) -> None:
    for stream, connector in _profile(profile).items():
        expected = stream if stream in SOURCES else f"{PREFIX[profile]}-{stream}"
        assert connector.name == expected


def test_snowflake_keeps_the_local_names_and_s3_never_collides_with_them() -> None:
    local = {c.name for c in load_profile("local")}
    assert {c.name for c in load_profile("snowflake")} == local - {
        s if s in SOURCES else f"warehouse-{s}" for s in LOCAL_ONLY}
    assert not {c.name for c in load_profile("s3")} & local


# -- the same streams from the same topics -----------------------------------------------------

@pytest.mark.parametrize("profile", PRODUCTION)
def test_production_reads_exactly_the_topics_local_reads(profile: str) -> None:
    local = _profile("local")
    for stream, connector in _profile(profile).items():
        for key in ("topics", "topics.regex"):
            assert connector.config.get(key) == local[stream].config.get(key), (stream, key)


# Topics the bridges write (their example routes), and the connector that must take each.
TOPIC_OWNERS = {
    "events.orders.placed": "rabbitmq-events",
    "events.robots.telemetry": "rabbitmq-events",
    "events.acme.order_placed": "rabbitmq-events",
    "events.unrouted": None,  # schemaless JSON: no typed table can be made from it
    "snowplow.events": "snowplow-events",
    "snowplow.page_views": "snowplow-events",
    "snowplow.bad": "snowplow-bad-rows",
    "conveyor.ledger.snowplow": None,
    "conveyor.dlq.connect.warehouse-snowplow-events": None,
    "snowplow-atomic.events": "snowplow-atomic",
    "snowplow-atomic.com_acme_product_1": "snowplow-entities",
    "snowplow-atomic.com_snowplowanalytics_snowplow_ua_parser_context_1": "snowplow-entities",
    # Every change of the fulfilment centre lands twice on purpose: as the current state and
    # as history. The heartbeat table's changes are the source's liveness, no one's rows.
    "fulfilment.fulfilment.robots": ("fulfilment-changes", "fulfilment-state"),
    "fulfilment.fulfilment.picks": ("fulfilment-changes", "fulfilment-state"),
    "fulfilment.fulfilment.conveyor_segments": ("fulfilment-changes", "fulfilment-state"),
    "fulfilment.fulfilment.totes": ("fulfilment-changes", "fulfilment-state"),
    "fulfilment.fulfilment.cdc_heartbeat": None,
    "__debezium-heartbeat.fulfilment": None,
}


def _takes(connector: ConnectorFile, topic: str) -> bool:
    cfg = connector.config
    if "topics" in cfg:
        return topic in [t.strip() for t in cfg["topics"].split(",")]
    return re.fullmatch(cfg["topics.regex"], topic) is not None


@pytest.mark.parametrize("profile", ALL_PROFILES)
@pytest.mark.parametrize("topic", TOPIC_OWNERS)
def test_each_topic_lands_through_exactly_one_connector(profile: str, topic: str) -> None:
    takers = [s for s, c in _profile(profile).items()
              if s not in SOURCES and _takes(c, topic)]
    owner = TOPIC_OWNERS[topic]
    owners = [] if owner is None else [owner] if isinstance(owner, str) else list(owner)
    assert takers == [o for o in owners if o in streams(profile)], takers


# -- nothing dropped silently, nothing uncommitted ---------------------------------------------

@pytest.mark.parametrize(("profile", "stream", "connector"), SINKS, ids=SINK_IDS)
def test_records_it_cannot_write_go_to_its_own_dead_letter_topic(
        profile: str, stream: str, connector: ConnectorFile) -> None:
    cfg = connector.config
    assert cfg["errors.tolerance"] == "all"
    assert cfg["errors.log.enable"] == "true"
    assert cfg["errors.deadletterqueue.topic.name"] == f"conveyor.dlq.connect.{connector.name}"
    assert cfg["errors.deadletterqueue.context.headers.enable"] == "true"
    # Dead letters outlive a broker: production DLQs are replicated like any other topic.
    expected_rf = "1" if profile == "local" else "3"
    assert cfg["errors.deadletterqueue.topic.replication.factor"] == expected_rf


def test_the_cdc_source_is_exactly_once_and_fails_rather_than_drops() -> None:
    cfg = _profile("local")["fulfilment-cdc"].config
    # KIP-618: records and source offsets in one transaction (the workers enable it).
    assert cfg["exactly.once.support"] == "required"
    assert cfg["transaction.boundary"] == "poll"
    # A source has no dead-letter topic: tolerating errors would skip changes silently. A
    # failed task is restarted by the healer instead, from its last committed position.
    assert cfg.get("errors.tolerance", "none") == "none"
    assert cfg["plugin.name"] == "pgoutput"
    assert int(cfg["heartbeat.interval.ms"]) <= 60_000 and cfg["heartbeat.action.query"]
    # The sinks take exactly the captured tables' topics, and only those.
    captured = re.fullmatch(r"fulfilment\\\.\((.*)\|cdc_heartbeat\)", cfg["table.include.list"])
    assert captured is not None, cfg["table.include.list"]
    for sink in ("fulfilment-state", "fulfilment-changes"):
        assert _profile("local")[sink].config["topics.regex"] == \
            f"fulfilment\\.fulfilment\\.({captured.group(1)})"


@pytest.mark.parametrize(("profile", "stream", "connector"), SINKS, ids=SINK_IDS)
def test_reads_only_committed_records(profile: str, stream: str, connector: ConnectorFile) -> None:
    # The bridges write in transactions; an aborted batch must never land.
    assert connector.config["consumer.override.isolation.level"] == "read_committed"


@pytest.mark.parametrize(("profile", "stream", "connector"), SINKS, ids=SINK_IDS)
def test_a_regex_subscription_sees_a_new_topic_within_seconds(
        profile: str, stream: str, connector: ConnectorFile) -> None:
    # The RabbitMQ bridge creates a topic on a new event type's first event, after the sink
    # subscribed. A pattern is matched against the consumer's metadata, refreshed every
    # 5 minutes by default: the first events of a new type would land 5 minutes late.
    cfg = connector.config
    if "topics.regex" in cfg:
        assert int(cfg["consumer.override.metadata.max.age.ms"]) <= 30_000, stream
    else:
        assert "consumer.override.metadata.max.age.ms" not in cfg, "a fixed topic list"


@pytest.mark.parametrize(("profile", "stream", "connector"), CONNECTORS, ids=IDS)
def test_every_listed_transform_is_configured_and_none_is_left_over(
        profile: str, stream: str, connector: ConnectorFile) -> None:
    aliases = {a.strip() for a in connector.config.get("transforms", "").split(",") if a.strip()}
    configured = {k.split(".")[1] for k in connector.config if k.startswith("transforms.")}
    assert configured == aliases
    for alias in aliases:
        assert f"transforms.{alias}.type" in connector.config


@pytest.mark.parametrize("profile", PRODUCTION)
def test_production_keeps_our_row_transforms(profile: str) -> None:
    local, prod = _profile("local"), _profile(profile)
    for stream in ("rabbitmq-events", "snowplow-events"):
        ours = {t for t in _transform_types(local[stream]) if "RouteByField" not in t}
        assert ours <= set(_transform_types(prod[stream])), stream


@pytest.mark.parametrize("profile", PRODUCTION)
def test_production_never_renames_topics(profile: str) -> None:
    for stream, connector in _profile(profile).items():
        renaming = [t for t in _transform_types(connector)
                    if any(name in t for name in _TOPIC_RENAMING)]
        assert not renaming, f"{profile}/{stream}: {renaming} rename topics"


# -- no secret in any file ---------------------------------------------------------------------

@pytest.mark.parametrize(("profile", "stream", "connector"), CONNECTORS, ids=IDS)
def test_every_credential_is_a_config_provider_reference(
        profile: str, stream: str, connector: ConnectorFile) -> None:
    for key, value in connector.config.items():
        if _SECRETISH_KEY.search(key) and value:
            assert _REFERENCE.match(value), f"{key} holds {value!r}, not ${{env:...}}/${{file:...}}"


@pytest.mark.parametrize(("profile", "stream", "connector"), CONNECTORS, ids=IDS)
def test_no_value_looks_like_a_secret(profile: str, stream: str, connector: ConnectorFile) -> None:
    for key, value in connector.config.items():
        for pattern in _SECRETISH_VALUE:
            assert not pattern.search(value), f"{key}: {value!r} looks like a secret"


@pytest.mark.parametrize(("profile", "stream", "connector"), CONNECTORS, ids=IDS)
def test_notes_hold_no_secret_either(profile: str, stream: str, connector: ConnectorFile) -> None:
    for note in connector.notes:
        for pattern in _SECRETISH_VALUE:
            assert not pattern.search(note), note


@pytest.mark.parametrize("key", ["aws.access.key.id", "aws.secret.access.key",
                                 "snowflake.private.key", "snowflake.private.key.passphrase",
                                 "transforms.mask.hash.key", "connection.password",
                                 "iceberg.catalog.s3.access-key-id",
                                 "iceberg.catalog.s3.secret-access-key",
                                 "iceberg.catalog.credential"])
def test_the_loader_refuses_a_credential_in_clear(key: str) -> None:
    doc = {"name": "c", "config": {"connector.class": "x", key: "in-clear"}}
    with pytest.raises(ConfigFileError, match=re.escape(key)):
        parse(doc)
    parse({"name": "c", "config": {"connector.class": "x", key: "${env:SOME_SECRET}"}})


# -- what a deployer must know is written down -------------------------------------------------

def test_readme_names_every_environment_variable_the_production_profiles_read() -> None:
    text = README.read_text()
    for profile in PRODUCTION:
        for connector in load_profile(profile):
            for value in connector.config.values():
                for name in _ENV_REF.findall(value):
                    assert f"`{name}`" in text, f"{profile}: {name} is not in {README.name}"


def test_readme_names_every_connector_class_the_profiles_use() -> None:
    text = README.read_text()
    for profile in ALL_PROFILES:
        for connector in load_profile(profile):
            assert f"`{connector.connector_class}`" in text, connector.connector_class


# -- what each production sink needs to keep its promises ---------------------------------------

def test_snowflake_streams_exactly_once_with_explicit_schematization() -> None:
    for stream, connector in _profile("snowflake").items():
        cfg = connector.config
        assert cfg["snowflake.ingestion.method"] == "SNOWPIPE_STREAMING"
        # Snowpipe Streaming refuses to start without a role.
        assert _REFERENCE.match(cfg["snowflake.role.name"])
        assert cfg["snowflake.enable.schematization"] in ("true", "false"), stream
        for key in ("buffer.count.records", "buffer.flush.time", "buffer.size.bytes"):
            assert int(cfg[key]) > 0, key
        # Well inside the 15-minute delivery target.
        assert int(cfg["buffer.flush.time"]) <= 60
        # Snowflake's converters are refused with Snowpipe Streaming, and a string value
        # cannot be schematized.
        assert not cfg["value.converter"].startswith("com.snowflake")
        if cfg["snowflake.enable.schematization"] == "true":
            assert "StringConverter" not in cfg["value.converter"]


def test_snowflake_table_map_entries_are_well_formed_and_distinct() -> None:
    for stream, connector in _profile("snowflake").items():
        entries = [e.split(":") for e in connector.config["snowflake.topic2table.map"].split(",")]
        assert all(len(e) == 2 for e in entries), stream
        tables = [t for _, t in entries]
        assert len(set(tables)) == len(tables), stream
        for topic_pattern, table in entries:
            re.compile(topic_pattern)
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", table), table


ICEBERG_SINK = "org.apache.iceberg.connect.IcebergSinkConnector"
# Within the 15-minute delivery target with room to spare: a row becomes queryable at the
# coordinator's next commit, at worst one interval plus the commit timeout after it is read.
_DELIVERY_TARGET_MS = 15 * 60 * 1000


def test_s3_is_iceberg_exactly_once_through_a_control_topic_of_its_own() -> None:
    control_topics = []
    for stream, connector in _profile("s3").items():
        cfg = connector.config
        assert connector.connector_class == ICEBERG_SINK, stream
        # Each connector commits through its own control topic: one shared by two
        # connectors would mix their commits and their consumer groups' offsets.
        control_topics.append(cfg["iceberg.control.topic"])
        assert cfg["iceberg.control.topic"] == f"conveyor.iceberg.control.{connector.name}"
        interval = int(cfg["iceberg.control.commit.interval-ms"])
        timeout = int(cfg["iceberg.control.commit.timeout-ms"])
        assert 10_000 <= interval <= 5 * 60 * 1000, "small files below, a late lake above"
        assert interval + timeout <= _DELIVERY_TARGET_MS / 3
        assert cfg["iceberg.tables.auto-create-enabled"] == "true"
        assert cfg["iceberg.tables.evolve-schema-enabled"] == "true"
        # No upsert mode in Iceberg 1.12's sink: rows are appended, exactly once.
        assert not [k for k in cfg if "upsert" in k or "cdc" in k], stream
    assert len(set(control_topics)) == len(control_topics)
    # Control topics are no stream's input.
    for topic in control_topics:
        for stream, connector in _profile("s3").items():
            assert not _takes(connector, topic), (topic, stream)


def test_s3_catalog_warehouse_and_store_come_from_the_environment() -> None:
    for stream, connector in _profile("s3").items():
        cfg = connector.config
        assert cfg["iceberg.catalog.type"] == "rest"
        for key in ("iceberg.catalog.uri", "iceberg.catalog.warehouse",
                    "iceberg.catalog.credential", "iceberg.catalog.s3.endpoint",
                    "iceberg.catalog.s3.access-key-id", "iceberg.catalog.s3.secret-access-key",
                    "iceberg.catalog.client.region"):
            assert _REFERENCE.match(cfg[key]), (stream, key, "S3-compatible stores need it")
        assert cfg["iceberg.catalog.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"
        # MinIO and most S3-compatible stores only answer path-style requests.
        assert cfg["iceberg.catalog.s3.path-style-access"] == "true"
        # OAuth2 and its token endpoint said, not inferred: Iceberg 1.12 warns that its
        # fallback to the catalog's own endpoint will be removed.
        assert cfg["iceberg.catalog.rest.auth.type"] == "oauth2"
        assert cfg["iceberg.catalog.oauth2-server-uri"] == \
            "${env:CONVEYOR_ICEBERG_CATALOG_URI}/v1/oauth/tokens"
        # Every iceberg.* key is one the sink documents (or a catalog pass-through).
        for key in cfg:
            if key.startswith("iceberg."):
                assert key.startswith(("iceberg.catalog.", "iceberg.table.")) \
                    or key in _ICEBERG_SINK_KEYS, key


_ICEBERG_SINK_KEYS = {
    "iceberg.tables", "iceberg.tables.dynamic-enabled", "iceberg.tables.route-field",
    "iceberg.tables.auto-create-enabled", "iceberg.tables.evolve-schema-enabled",
    "iceberg.tables.schema-force-optional", "iceberg.control.topic",
    "iceberg.control.commit.interval-ms", "iceberg.control.commit.timeout-ms",
}
_TABLE_NAME = re.compile(r"[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*")


def _route_regexes(cfg: dict[str, str]) -> dict[str, str]:
    return {table: cfg[f"iceberg.table.{table}.route-regex"]
            for table in cfg["iceberg.tables"].split(",")}


def test_s3_tables_are_named_and_every_rabbitmq_event_type_has_exactly_one() -> None:
    s3 = _profile("s3")
    for stream, connector in s3.items():
        cfg = connector.config
        # Static tables: dynamic routing would take the table name from a field as is.
        assert cfg["iceberg.tables.dynamic-enabled"] == "false"
        tables = cfg["iceberg.tables"].split(",")
        assert all(_TABLE_NAME.fullmatch(t) for t in tables), tables
        table_keys = {k.split(".")[2] + "." + k.split(".")[3] for k in cfg
                      if k.startswith("iceberg.table.")}
        assert table_keys <= set(tables), f"{stream}: settings for unlisted tables"
    assert s3["snowplow-events"].config["iceberg.tables"] == "conveyor.snowplow_events"
    assert s3["snowplow-bad-rows"].config["iceberg.tables"] == "conveyor.snowplow_bad_rows"
    # One table per event type, and a catch-all: the sink drops a record no regex matches.
    cfg = s3["rabbitmq-events"].config
    assert cfg["iceberg.tables.route-field"] == "event_type"
    routes = _route_regexes(cfg)
    for event_type in ("order_placed", "robot_telemetry", "acme_order_shipped",
                       "order_placed_v2", "x"):
        takers = [t for t, rx in routes.items() if re.fullmatch(rx, event_type)]
        assert len(takers) == 1, (event_type, takers)
    assert [t for t, rx in routes.items() if re.fullmatch(rx, "order_placed")] == \
        ["conveyor.rabbitmq_order_placed"]


def test_s3_bad_rows_land_whole_as_text_through_kafka_smts_only() -> None:
    cfg = _profile("s3")["snowplow-bad-rows"].config
    assert cfg["value.converter"] == "org.apache.kafka.connect.storage.StringConverter"
    assert cfg["transforms.hoist.type"] == "org.apache.kafka.connect.transforms.HoistField$Value"
    assert cfg["transforms.hoist.field"] == "bad_row"
    # Only SMTs shipped with Kafka: this worker has no Debezium plugin for HeaderToValue.
    for name in cfg["transforms"].split(","):
        assert cfg[f"transforms.{name}.type"].startswith("org.apache.kafka.connect."), name
