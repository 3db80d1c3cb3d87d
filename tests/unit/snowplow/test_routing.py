"""Routing rules: first match wins, then the default."""

from __future__ import annotations

import pytest

from sidecar.snowplow.routing import Route, Router

ORDER = "iglu:com.conveyor.grocer/order_placed/jsonschema/1-0-2"


@pytest.fixture
def router() -> Router:
    return Router([
        Route("orders", schemas=("iglu:com.conveyor.grocer/order_placed/jsonschema/1-*-*",)),
        Route("grocer", schemas=("iglu:com.conveyor.grocer/*",), name="vendor"),
        Route("fc", app_ids=("fc-*",)),
        Route("views", kinds=("page_view", "page_ping")),
        Route("fc-structs", kinds=("struct",), app_ids=("fc-*",)),
    ], "events")


@pytest.mark.parametrize("kind,schema,app_id,topic", [
    ("self_describing", ORDER, "shop", "orders"),
    ("self_describing", ORDER.replace("1-0-2", "2-0-0"), "shop", "grocer"),
    ("self_describing", "iglu:com.acme/x/jsonschema/1-0-0", "fc-ams", "fc"),
    ("page_ping", None, "shop", "views"),
    ("struct", None, "fc-ams", "fc"),          # the earlier rule wins
    ("struct", None, "shop", "events"),
    ("transaction", None, None, "events"),
])
def test_first_match_wins(router: Router, kind: str, schema: str | None, app_id: str | None,
                          topic: str) -> None:
    assert router.route(kind, schema, app_id).topic == topic


def test_destination_names_the_route(router: Router) -> None:
    assert router.route("self_describing", ORDER.replace("1-0-2", "2-0-0"), None).route == "vendor"
    assert router.route("struct", None, None).route == "default"


def test_topics_are_listed_once(router: Router) -> None:
    assert router.topics() == ["orders", "grocer", "fc", "views", "fc-structs", "events"]


def test_unknown_kind_and_empty_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown kind"):
        Route("t", kinds=("pageview",))
    with pytest.raises(ValueError, match="no condition"):
        Route("t")
