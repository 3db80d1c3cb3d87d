"""The status page on the stack's SLA exporter (/status) and ``conveyor-sla --summary``,
read from the stack's Prometheus: both canary paths with a verdict and a p99, the local
profile's sinks and the canary tables listed, the numbers the same as Prometheus gives for
the same queries.

The verdict itself is not asserted: in ``make test`` the tests before this one stop the
bridges, Kafka and the sinks on purpose, so canaries of the last hour were late (LOSING)
or the path is still catching up (LATE); test_canary holds the verdicts to real faults."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from devstack.stack import ROOT, Stack
from sla import status
from tests.integration.monitoring.test_monitoring import wait_for
from tests.integration.sla.test_canary import PATHS, SINKS, canaries  # noqa: F401 (fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def prom(stack: Stack) -> Iterator[status.Prometheus]:
    p = status.Prometheus(stack.prometheus_url)
    yield p
    p.close()


def test_the_page_shows_every_path_sink_and_table(stack: Stack, canaries: str,  # noqa: F811
                                                   prom: status.Prometheus) -> None:
    def every_path_measured() -> status.Status | None:
        s = status.collect(prom, history=False)
        p99 = {p.path: p.canary_p99_s for p in s.paths}
        return s if all(p99.get(p.name) is not None for p in PATHS) else None

    s = wait_for("both canary paths with a p99 in Prometheus", every_path_measured, 120,
                 pause=5,
                 explain=lambda: status.render_text(status.collect(prom, history=False)))
    page = httpx.get(f"{stack.sla_exporter_url}/status", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    for p in PATHS:
        assert p.table in text, p
    # A verdict per path (the page is a later read than `s`: it may have changed since).
    verdicts = re.findall(r"<td class='(?:OK|MISSING|LATE|LOSING|NODATA)'>", text)
    assert len(verdicts) >= len(PATHS), text
    for sink in SINKS:
        assert sink in text, sink
    assert text.count("<svg") >= len(PATHS)        # a plot per path at least
    assert "Prometheus cannot be read" not in text
    # The page's number for a path is Prometheus's for the same query.
    (rabbitmq,) = [p for p in s.paths if p.path == "rabbitmq"]
    direct = {m["path"]: v for m, v in prom.query(status.Q_CANARY_MISSING)}
    assert rabbitmq.missing_after_s == direct["rabbitmq"]

    summary = subprocess.run(
        [sys.executable, "-m", "sla", "--config", str(ROOT / "sla/examples/compose.yaml"),
         "--summary", "--prometheus-url", stack.prometheus_url],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert summary.returncode in (0, 1), summary.stderr
    for p in PATHS:
        assert re.search(rf"path\s+{p.name}\s+(OK|MISSING|LATE|LOSING)", summary.stdout), \
            summary.stdout
    assert "alerts firing:" in summary.stdout
