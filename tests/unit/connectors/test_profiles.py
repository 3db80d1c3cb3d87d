"""Every connector profile, checked as files: no worker, no network.

The local profile is exercised end to end against PostgreSQL by the integration tests; the
production profiles (snowflake, s3) are only checked here. These tests hold them to what the
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

README = CONFIG_ROOT.parent / "README.md"

# Keys that name a credential, matched loosely and on purpose more widely than the loader's
# own rule: if either is wrong, one of them still catches a secret written in clear.
_SECRETISH_KEY = re.compile(
    r"password|passphrase|secret|private|token|credential|jaas|hash\.key|api\.key"
    r"|access\.key|accesskey|secretkey", re.IGNORECASE)
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
# offsets by topic, and the S3 sink names objects by topic, partition and first offset; a
# renamed topic breaks both (offsets never committed, objects of two topics overwriting each
# other), so the production profiles must not use them.
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


def _transform_types(connector: ConnectorFile) -> list[str]:
    aliases = [a.strip() for a in connector.config.get("transforms", "").split(",") if a.strip()]
    return [connector.config[f"transforms.{a}.type"] for a in aliases]


# -- the profiles exist and load --------------------------------------------------------------

def test_every_profile_is_offered_and_loads_through_the_loader() -> None:
    assert set(ALL_PROFILES) <= set(profiles())
    for profile in ALL_PROFILES:
        # load_profile parses every file: JSON, string values, no clear secret, unique names.
        assert len(load_profile(profile)) == len(STREAMS), profile


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_each_profile_has_one_file_per_stream(profile: str) -> None:
    assert tuple(p.stem for p in profile_files(profile)) == STREAMS


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_connector_names_are_the_prefix_and_the_stream(profile: str) -> None:
    for stream, connector in _profile(profile).items():
        assert connector.name == f"{PREFIX[profile]}-{stream}"


def test_snowflake_keeps_the_local_names_and_s3_never_collides_with_them() -> None:
    local = {c.name for c in load_profile("local")}
    assert {c.name for c in load_profile("snowflake")} == local
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
}


def _takes(connector: ConnectorFile, topic: str) -> bool:
    cfg = connector.config
    if "topics" in cfg:
        return topic in [t.strip() for t in cfg["topics"].split(",")]
    return re.fullmatch(cfg["topics.regex"], topic) is not None


@pytest.mark.parametrize("profile", ALL_PROFILES)
@pytest.mark.parametrize("topic", TOPIC_OWNERS)
def test_each_topic_lands_through_exactly_one_connector(profile: str, topic: str) -> None:
    takers = [s for s, c in _profile(profile).items() if _takes(c, topic)]
    owner = TOPIC_OWNERS[topic]
    assert takers == ([owner] if owner else []), takers


# -- nothing dropped silently, nothing uncommitted ---------------------------------------------

@pytest.mark.parametrize(("profile", "stream", "connector"), CONNECTORS, ids=IDS)
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


@pytest.mark.parametrize(("profile", "stream", "connector"), CONNECTORS, ids=IDS)
def test_reads_only_committed_records(profile: str, stream: str, connector: ConnectorFile) -> None:
    # The bridges write in transactions; an aborted batch must never land.
    assert connector.config["consumer.override.isolation.level"] == "read_committed"


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
                                 "transforms.mask.hash.key", "connection.password"])
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


def test_s3_objects_are_named_by_real_topic_partition_and_offset() -> None:
    for stream, connector in _profile("s3").items():
        cfg = connector.config
        template = cfg["file.name.template"]
        # Deterministic names: a batch written again after a crash replaces its object.
        for variable in ("{{topic}}", "{{partition}}", "{{start_offset"):
            assert variable in template, (stream, variable)
        assert "timestamp" not in template, "wall-clock names would duplicate a replayed batch"
        assert template.startswith(f"{stream}/")
        assert _REFERENCE.match(cfg["aws.s3.endpoint"]), "S3-compatible stores need an endpoint"
