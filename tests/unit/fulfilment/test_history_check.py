"""The check the CDC tests rely on to say "every committed change once" must be able to fail:
it is fed histories with each kind of fault and must name it, and a clean one must pass."""
from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from fulfilment.compare import history_faults


def _row(robot: str, op: str, version: int) -> dict[str, Any]:
    return {"robot_id": robot, "change_op": op, "version": version}


def _clean(updates: int, deleted: bool) -> list[dict[str, Any]]:
    rows = [_row("R1", "c", 1)] + [_row("R1", "u", v) for v in range(2, updates + 2)]
    return rows + ([_row("R1", "d", updates + 1)] if deleted else [])


@given(st.integers(0, 30), st.booleans())
def test_a_clean_history_passes_and_is_counted(updates: int, deleted: bool) -> None:
    ops, faults = history_faults(_clean(updates, deleted), "robots")
    assert faults == []
    assert ops["c"] == 1 and ops["u"] == updates and ops["d"] == int(deleted)


@given(st.integers(1, 30), st.data())
def test_a_change_landed_twice_is_named(updates: int, data: st.DataObject) -> None:
    rows = _clean(updates, False)
    rows.append(dict(data.draw(st.sampled_from(rows))))
    _, faults = history_faults(rows, "robots")
    assert any("repeat" in f or "not version 1" in f for f in faults), faults


@given(st.integers(2, 30), st.data())
def test_a_lost_update_is_named(updates: int, data: st.DataObject) -> None:
    rows = _clean(updates, False)
    lost = data.draw(st.integers(1, len(rows) - 2))  # neither the insert nor the newest
    del rows[lost]
    _, faults = history_faults(rows, "robots")
    assert any("gap" in f for f in faults), faults


def test_two_deletes_and_a_late_insert_are_named() -> None:
    _, faults = history_faults([*_clean(2, True), _row("R1", "d", 3)], "robots")
    assert any("more than once" in f for f in faults)
    _, faults = history_faults([_row("R2", "c", 2)], "robots")
    assert any("not version 1" in f for f in faults)


def test_snapshot_reads_are_left_out_of_the_streamed_counts() -> None:
    rows = [_row("R3", "r", 4), _row("R3", "r", 4), _row("R3", "u", 5)]
    ops, faults = history_faults(rows, "robots")
    assert faults == [] and ops == {"u": 1}
