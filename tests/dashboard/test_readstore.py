"""The read model's SQL adapter on the real PostgreSQL: one transaction per batch, positions, SQL-level guards."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import Engine, text

from dashboard.readmodel import Changes, MembershipEvent, Message, ProgressState, ProgressUpdate
from dashboard.readstore import apply_batch, clear, write_changes
from enrolment.store import positions
from enrolment.store.positions import DASHBOARD_POSITIONS, Position, PositionConflict
from tests.support.dashboard import read_model_content

pytestmark = pytest.mark.integration

T0 = 1_788_000_000_000


@pytest.fixture()
def group(engine: Engine, unique: str) -> Iterator[str]:
    g = f"readstore-{unique}"
    yield g
    raw = engine.raw_connection()
    try:
        clear(raw, g)
    finally:
        raw.close()


def _apply(
    engine: Engine, group: str, messages: Sequence[Message], moves: dict[tuple[str, int], tuple[int | None, int]]
) -> Changes:
    raw = engine.raw_connection()
    try:
        claimed = {
            k: (None if old is None else Position(old, old), Position(new, new)) for k, (old, new) in moves.items()
        }
        return apply_batch(raw, group, messages, lambda cur: positions.claim(cur, DASHBOARD_POSITIONS, group, claimed))
    finally:
        raw.close()


def test_a_batch_applied_again_under_new_positions_changes_nothing(engine: Engine, group: str) -> None:
    msgs: list[Message] = [
        MembershipEvent("e1", "b1", "c1", "u1", "ENROLLED", "BACKEND", T0),
        MembershipEvent("e2", "b1", "c1", "u2", "ENROLLED", "UI", T0 + 1),
        MembershipEvent("e3", "b1", "c1", "u1", "UNENROLLED", "BACKEND", T0 + 2),
        ProgressUpdate("b1", "u2", 60, None, T0 + 10),
    ]
    first = _apply(engine, group, msgs, {("events", 0): (None, 3), ("progress", 0): (None, 1)})
    assert first.changes_state()
    before = read_model_content(engine, group)
    assert [(r[1], r[4]) for r in before["members"]] == [("u2", "ui")]
    assert [r[2] for r in before["counts"]] == [1]

    again = _apply(engine, group, msgs, {("events", 0): (3, 6), ("progress", 0): (1, 2)})
    assert not again.changes_state()
    assert read_model_content(engine, group) == before
    raw = engine.raw_connection()
    try:
        stored = positions.read(raw.cursor(), DASHBOARD_POSITIONS, group)
        assert {k: p.next_offset for k, p in stored.items()} == {("events", 0): 6, ("progress", 0): 2}
    finally:
        raw.close()


def test_a_stale_position_is_a_conflict_and_writes_nothing(engine: Engine, group: str) -> None:
    _apply(engine, group, [MembershipEvent("e1", "b1", "c1", "u1", "ENROLLED", "BACKEND", T0)], {("t", 0): (None, 1)})
    before = read_model_content(engine, group)
    late = [MembershipEvent("e2", "b1", "c1", "u2", "ENROLLED", "BACKEND", T0)]
    with pytest.raises(PositionConflict):
        _apply(engine, group, late, {("t", 0): (None, 1)})  # another instance already stored a position
    with pytest.raises(PositionConflict):
        _apply(engine, group, late, {("t", 0): (0, 1)})  # expected an older position than the stored one
    assert read_model_content(engine, group) == before


def test_the_sql_write_never_moves_progress_backwards(engine: Engine, group: str) -> None:
    _apply(engine, group, [ProgressUpdate("b1", "u1", 90, T0 + 5, T0 + 5)], {})
    # A write planned from a stale snapshot (it did not see the newer row) is still refused by the database.
    raw = engine.raw_connection()
    try:
        write_changes(raw.cursor(), group, Changes(progress_put={("b1", "u1"): ProgressState(10, None, T0)}))
        raw.commit()
    finally:
        raw.close()
    with engine.connect() as conn:
        progress = conn.execute(
            text("SELECT progress FROM dash_progress WHERE group_id = :g AND user_id = 'u1'"), {"g": group}
        ).scalar_one()
    assert progress == 90
