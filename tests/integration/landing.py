"""A test's own copy of the local connector files, and the names it lands under.

Each test deploys the files of ``connectors/configs/local/`` with only the names changed:
its own connector name, source topics, table prefix and dead-letter topic, so tests never
see each other's rows.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from connectors.configs import ConnectorFile, load_file

LOCAL = Path(__file__).resolve().parents[2] / "connectors" / "configs" / "local"


@dataclass
class Run:
    """One test's names: ``t<token>`` prefixes its topics and tables."""

    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def prefix(self) -> str:
        return f"t{self.token}"

    def dlq(self, connector: str) -> str:
        return f"conveyor.dlq.connect.{connector}-{self.token}"


def for_test(file: str, run: Run, **changes: str) -> ConnectorFile:
    """A local connector file with this test's names (and any other ``changes``)."""
    c = load_file(LOCAL / file)
    name = f"{c.name}-{run.token}"
    cfg = dict(c.config)
    p = run.prefix
    if "transforms.route.topic.format" in cfg:
        # rabbitmq_${value} -> t<token>_rabbitmq_${value}: the table names of this test.
        cfg["transforms.route.topic.format"] = f"{p}_{cfg['transforms.route.topic.format']}"
    if c.name == "warehouse-rabbitmq-events":
        cfg["topics.regex"] = rf"{p}\.events\..+"
    elif c.name == "warehouse-snowplow-events":
        cfg["topics.regex"] = rf"{p}\.snowplow\.(?!bad$).+"
    elif c.name == "warehouse-snowplow-bad-rows":
        cfg["topics"] = f"{p}.snowplow.bad"
        cfg["collection.name.format"] = f"{p}_{cfg['collection.name.format']}"
    elif c.name == "fulfilment-cdc":
        # Its own topics (t<token>.fulfilment.<table>), slot and publication.
        cfg["topic.prefix"] = p
        cfg["slot.name"] = f"conveyor_{p}"
        cfg["publication.name"] = f"conveyor_{p}"
    elif c.name in ("warehouse-fulfilment-state", "warehouse-fulfilment-changes"):
        cfg["topics.regex"] = cfg["topics.regex"].replace(
            r"fulfilment\.fulfilment\.", rf"{p}\.fulfilment\.", 1)
        cfg["transforms.route.regex"] = rf"{p}\.fulfilment\.(.*)"
        cfg["transforms.route.replacement"] = f"{p}_{cfg['transforms.route.replacement']}"
    if "errors.deadletterqueue.topic.name" in cfg:  # sinks only: a source has none
        cfg["errors.deadletterqueue.topic.name"] = run.dlq(c.name)
    cfg.update(changes)
    return ConnectorFile(name, cfg, c.path, c.notes)


def table(run: Run, kind: str, event_type: str) -> str:
    """The table RouteByField names: ``t<token>_<kind>_<sanitised event type>``; a name over
    63 characters keeps 54 and ends in ``_`` and 8 hex digits of the whole name's SHA-256."""
    name = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", f"{run.prefix}_{kind}_{event_type}"
                                     .lower()))
    if len(name) <= 63:
        return name
    return f"{name[:54]}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
