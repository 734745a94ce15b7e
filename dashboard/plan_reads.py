"""Reads of plans for the pages that the plan store does not offer: a plan's rows grouped by outcome (the first
rows of each, so a 10k plan is a short page), the plans a viewer may decide or see, and which uploads repeat an
earlier upload's file (``uploads.content_hash``).

Separate from ``queries`` because these read the plan tables and the processor's ``uploads`` record, which
``queries`` (the read model's reads) never touches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

FIRST_ROWS = 50  # rows shown per outcome on a plan's page; every row is in its CSV


@dataclass(frozen=True, slots=True)
class PlanRow:
    line: int
    identifier: str
    id_type: str | None
    user_id: str | None
    action: str
    outcome: str
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class OutcomeGroup:
    """One outcome of a plan: its total, its reasons with their counts, and its first rows."""

    outcome: str
    total: int
    reasons: tuple[tuple[str, int], ...]
    rows: tuple[PlanRow, ...]


@dataclass(frozen=True, slots=True)
class PlanLine:
    """A plan as the list of plans shows it."""

    plan_id: str
    batch_id: str
    kind: str
    status: str
    total: int
    made_by: str
    made_at: datetime
    expires_at: datetime
    breaker: bool


OUTCOME_ORDER = {"APPLIED": 0, "SKIPPED": 1, "REJECTED": 2}

_REASONS = (
    "SELECT outcome, reason, count(*) FROM plan_rows WHERE plan_id = :p GROUP BY outcome, reason ORDER BY 1, 3 DESC, 2"
)
_FIRST = (
    "SELECT line, identifier, id_type, user_id, action, outcome, reason, message FROM ("
    " SELECT r.*, row_number() OVER (PARTITION BY outcome ORDER BY line) AS n FROM plan_rows r WHERE plan_id = :p"
    ") x WHERE n <= :n ORDER BY outcome, line"
)


def outcome_groups(conn: Connection, plan_id: str, first: int = FIRST_ROWS) -> list[OutcomeGroup]:
    """Each outcome of the plan with its reasons' counts and its first ``first`` rows (two indexed reads)."""
    reasons: dict[str, list[tuple[str, int]]] = {}
    for outcome, reason, n in conn.execute(text(_REASONS), {"p": plan_id}):
        reasons.setdefault(str(outcome), []).append((str(reason), int(n)))
    rows: dict[str, list[PlanRow]] = {}
    for r in conn.execute(text(_FIRST), {"p": plan_id, "n": first}):
        rows.setdefault(str(r[5]), []).append(PlanRow(*r))
    return [
        OutcomeGroup(o, sum(n for _, n in rs), tuple(rs), tuple(rows.get(o, ())))
        for o, rs in sorted(reasons.items(), key=lambda kv: (OUTCOME_ORDER.get(kv[0], 9), kv[0]))
    ]


_PLANS = (
    "SELECT p.plan_id, p.batch_id, p.kind,"
    " CASE WHEN p.status = 'waiting' AND p.expires_at <= now() THEN 'expired' ELSE p.status END AS shown,"
    " coalesce((p.counts->>'rows')::int, 0), p.made_by, p.made_at, p.expires_at,"
    " coalesce((p.breaker->>'tripped')::boolean, false)"
    " FROM plans p WHERE (p.state = ANY(:states) OR p.made_by = :me)"
)


def plan_lines(
    conn: Connection, me: str, states: Sequence[str], status: str | None, limit: int = 200
) -> list[PlanLine]:
    """The newest plans of ``states`` (and the viewer's own), of one shown status when ``status`` is given."""
    where = " AND shown = :status" if status else ""
    sql = f"SELECT * FROM ({_PLANS}) x WHERE true{where} ORDER BY made_at DESC, plan_id LIMIT :lim"
    found = conn.execute(text(sql), {"states": list(states), "me": me, "status": status, "lim": limit})
    return [PlanLine(*r) for r in found]


_REPEATS = (
    "SELECT u.upload_id, ("
    " SELECT e.upload_id FROM uploads e WHERE e.batch_id = u.batch_id AND e.content_hash = u.content_hash"
    " AND e.upload_id <> u.upload_id AND NOT e.dry_run AND e.created_at < u.created_at"
    " ORDER BY e.created_at DESC LIMIT 1)"
    " FROM uploads u WHERE u.upload_id = ANY(:ids) AND u.content_hash IS NOT NULL AND NOT u.dry_run"
)


def repeats(conn: Connection, upload_ids: Sequence[str]) -> dict[str, str]:
    """upload id -> the earlier upload of the same file to the same batch, for the uploads that repeat one."""
    if not upload_ids:
        return {}
    found = conn.execute(text(_REPEATS), {"ids": list(upload_ids)})
    return {str(u): str(e) for u, e in found if e is not None}
