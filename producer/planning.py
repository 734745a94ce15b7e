"""Evaluating a file's rows as a plan: the processor's own rules against the store as it is, nothing changed.

The rows become commands (never published) and go through ``enrolment.store.step.load_snapshot`` and
``enrolment.domain.rules.evaluate`` — the lookups and rules the processor applies — so a plan's expected
outcomes are what applying it would give if nothing changed meanwhile. A sync adds the batch's members that
its file does not name, as removals by user id after the file's last line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from enrolment.domain.model import Action, Batch, Command, IdType, Reason
from enrolment.domain.plans import PlanKind, sync_diff
from enrolment.domain.rules import evaluate
from enrolment.files import InputRow, RefusedRow
from enrolment.store import plans as store
from enrolment.store.plans import PlanRow
from enrolment.store.step import load_snapshot

UNCHANGED_MESSAGE = "In the file and in the batch: unchanged."


def _commands(
    rows: Iterable[InputRow], batch_id: str, action: Action, made_by: str, include_completed: bool
) -> list[Command]:
    return [
        Command(
            command_id=f"plan:{r.line}",
            upload_id="plan",
            batch_id=batch_id,
            action=action,
            identifier=r.identifier,
            id_type=IdType(r.id_type),
            line=r.line,
            requested_by=made_by,
            include_completed=include_completed,
        )
        for r in rows
    ]


def _decide(cur: Any, commands: Sequence[Command], ui_limit: int) -> list[PlanRow]:
    """The rules' verdict on each command, in order (membership threaded through, as the processor does)."""
    if not commands:
        return []
    decisions = evaluate(commands, load_snapshot(cur, commands), ui_limit)
    return [
        PlanRow(
            d.command.line,
            d.command.id_type.value,
            d.command.identifier,
            d.user_id,
            d.command.action.value,
            d.outcome.value,
            d.reason.value,
            d.message,
        )
        for d in decisions
    ]


def refused_row(r: RefusedRow, action: str) -> PlanRow:
    """A row the file reader refused (empty, duplicate …): refused again, the same way, when applied."""
    return PlanRow(r.line, r.id_type, r.identifier, None, action, "REJECTED", r.reason, r.message)


def evaluate_rows(
    cur: Any,
    kind: str,
    batch: Batch,
    rows: Iterable[InputRow | RefusedRow],
    made_by: str,
    include_completed: bool,
    ui_limit: int,
) -> list[PlanRow]:
    """Every row of the plan with its expected outcome, by line."""
    good: list[InputRow] = []
    refused: list[PlanRow] = []
    action = "REMOVE" if kind == PlanKind.REMOVE else "ADD"
    last = 1  # the header's line: a sync's removals are numbered after the file's last row
    for row in rows:
        last = max(last, row.line)
        if isinstance(row, RefusedRow):
            refused.append(refused_row(row, action))
        else:
            good.append(row)
    if kind != PlanKind.SYNC:
        decided = _decide(cur, _commands(good, batch.batch_id, Action(action), made_by, include_completed), ui_limit)
    else:
        decided = _sync_rows(cur, batch, good, last + 1, made_by, include_completed, ui_limit)
    return sorted([*refused, *decided], key=lambda r: r.line)


def _sync_rows(
    cur: Any, batch: Batch, rows: list[InputRow], first: int, made_by: str, include_completed: bool, ui_limit: int
) -> list[PlanRow]:
    """A sync: the file's rows as adds (members among them unchanged), then the members it leaves out as removes."""
    adds = _decide(cur, _commands(rows, batch.batch_id, Action.ADD, made_by, include_completed), ui_limit)
    members = store.members(cur, batch.batch_id)
    named = {r.user_id for r in adds if r.user_id is not None and r.reason != Reason.USER_OTHER_STATE}
    diff = sync_diff(named, members)
    out = [
        PlanRow(r.line, r.id_type, r.identifier, r.user_id, r.action, "SKIPPED", "ALREADY_ENROLLED", UNCHANGED_MESSAGE)
        if r.user_id in diff.unchanged
        else r
        for r in adds
    ]
    leaving = [InputRow(first + i, user_id, "USER_ID") for i, user_id in enumerate(sorted(diff.removes))]
    out += _decide(cur, _commands(leaving, batch.batch_id, Action.REMOVE, made_by, include_completed), ui_limit)
    return out


def is_unchanged(kind: str, row: PlanRow) -> bool:
    """A sync's row for someone already in the batch: counted, never published."""
    return kind == PlanKind.SYNC and row.action == "ADD" and row.reason == "ALREADY_ENROLLED"
