"""Replaying candidates through an enricher, and what a recovery run reports (pure).

The enricher is the one enrich itself builds from the settings (``build_enricher``): the
same Iglu repositories, routes, limits and enrichments, so what the dry run predicts is
exactly what the real run writes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import codec
from ..enrich.core import Enricher
from ..pipeline import Output
from .rows import Candidate, Refused

RECOVERED_HEADER = "sp-recovered-from"   # on every recovered event: the bad row it came from


@dataclass
class Tally:
    """A count, with the first example seen (a bad row id and a message)."""

    count: int = 0
    example: dict[str, str | None] = field(default_factory=dict)

    def add(self, bad_row_id: str | None, message: str) -> None:
        if self.count == 0:
            self.example = {"bad_row_id": bad_row_id, "message": message[:300]}
        self.count += 1


@dataclass
class Report:
    dry_run: bool
    window: dict[str, Any] = field(default_factory=dict)
    rows: int = 0                 # bad rows read in the window
    candidates: int = 0           # of those, replayed through enrich
    good: int = 0                 # good events the replays produced
    recovered: int = 0            # written now (dry run: would be written)
    already_recovered: int = 0    # good events a previous recovery already wrote
    still_failing: dict[str, Tally] = field(default_factory=dict)   # "check/reason"
    refused: dict[str, Tally] = field(default_factory=dict)         # kind
    filtered: int = 0             # other checks or reasons than asked for

    def refuse(self, r: Refused) -> None:
        if r.kind == "filtered":
            self.filtered += 1
            return
        self.refused.setdefault(r.kind, Tally()).add(r.bad_row_id, r.detail)

    def as_json(self) -> dict[str, Any]:
        def tallies(d: dict[str, Tally]) -> dict[str, Any]:
            return {k: {"count": t.count, "example": t.example} for k, t in sorted(d.items())}
        return {"dry_run": self.dry_run, "window": self.window, "rows": self.rows,
                "candidates": self.candidates, "good_events": self.good,
                "would_recover" if self.dry_run else "recovered": self.recovered,
                "already_recovered": self.already_recovered,
                "still_failing": tallies(self.still_failing),
                "refused": tallies(self.refused), "filtered_out": self.filtered}

    def lines(self) -> list[str]:
        verb = "would recover" if self.dry_run else "recovered"
        out = [f"bad rows in the window: {self.rows} ({self.filtered} of other checks or "
               f"reasons than asked for), replayed through enrich: {self.candidates}",
               f"{verb}: {self.recovered} good event(s); already recovered before: "
               f"{self.already_recovered}"]
        if self.still_failing:
            out.append(f"still failing: {sum(t.count for t in self.still_failing.values())}")
            for key, t in sorted(self.still_failing.items()):
                out.append(f"  {key}: {t.count}, e.g. bad row {t.example.get('bad_row_id')}: "
                           f"{t.example.get('message')}")
        for kind, t in sorted(self.refused.items()):
            out.append(f"not recoverable ({kind}): {t.count}, e.g. bad row "
                       f"{t.example.get('bad_row_id')}: {t.example.get('message')}")
        return out


def replay(candidates: Iterable[Candidate], enricher: Enricher, report: Report
           ) -> list[Output]:
    """The good events the candidates become now, each marked with its bad row; what
    still fails is counted in ``report`` by check and reason, never written again."""
    good: list[Output] = []
    for c in candidates:
        report.candidates += 1
        result = enricher.enrich(c.raw.headers(), c.raw.body, c.raw.received_at_ms)
        for o in result.outputs:
            if o.outcome == "good":
                good.append(dataclasses.replace(
                    o, headers=(*o.headers, (RECOVERED_HEADER, c.bad_row_id.encode()))))
            else:
                report.still_failing.setdefault(f"{o.check}/{o.reason}", Tally()).add(
                    c.bad_row_id, _message(o.value))
    report.good += len(good)
    return good


def _message(value: bytes) -> str:
    try:
        doc = codec.loads(value)
        return str(doc["data"]["message"])
    except Exception:
        return "(no message)"
