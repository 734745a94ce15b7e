"""The plans tables' SQL (``plans``, ``plan_rows``, ``plan_settings``) and the lookups planning needs.

Functions take a DB-API cursor (SQLAlchemy callers pass ``conn.connection.cursor()``) and leave the commit to
the caller. Decisions are compare-and-set on ``status``: of two admins approving at once, one wins and the
other's update finds no waiting plan, so a plan is applied once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from enrolment.domain.plans import Applied, Pending, StateSettings
from enrolment.store.copy import copy_rows


@dataclass(frozen=True, slots=True)
class PlanRow:
    """One row of a plan: what it names, who that resolved to, and what the rules expect for it."""

    line: int
    id_type: str | None  # USER_ID | STATE_ID (None for a file row refused before it said)
    identifier: str
    user_id: str | None
    action: str  # ADD | REMOVE
    outcome: str  # APPLIED | SKIPPED | REJECTED
    reason: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class NewPlan:
    """What a plan is made of, before the store adds its status and times."""

    plan_id: str
    kind: str
    batch_id: str
    state: str
    made_by: str
    expires_in_s: float
    counts: Mapping[str, Any]
    basis: Mapping[str, int]
    batch_size: int
    submitted_by: str | None = None
    content_hash: str | None = None
    file_name: str | None = None
    needs_approval_reason: str | None = None
    breaker: Mapping[str, Any] | None = None
    include_completed: bool = False
    allow_repeat: bool = False


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """A stored plan."""

    plan_id: str
    kind: str
    batch_id: str
    state: str
    status: str
    made_by: str
    made_at: datetime
    expires_at: datetime
    counts: dict[str, Any]
    basis: dict[str, int]
    batch_size: int
    submitted_by: str | None = None
    content_hash: str | None = None
    file_name: str | None = None
    needs_approval_reason: str | None = None
    breaker: dict[str, Any] | None = None
    include_completed: bool = False
    allow_repeat: bool = False
    decided_by: str | None = None
    decided_at: datetime | None = None
    upload_id: str | None = None
    applied_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_PLAN_COLUMNS = (
    "plan_id, kind, batch_id, state, status, made_by, made_at, expires_at, counts, basis, batch_size, "
    "submitted_by, content_hash, file_name, needs_approval_reason, breaker, include_completed, allow_repeat, "
    "decided_by, decided_at, upload_id, applied_at"
)
_ROW_COLUMNS = "line, id_type, identifier, user_id, action, outcome, reason, message"


def create(cur: Any, plan: NewPlan, rows: Iterable[PlanRow]) -> PlanRecord:
    """Stores a waiting plan and its rows (COPY); returns it as stored."""
    cur.execute(
        "INSERT INTO plans (plan_id, kind, batch_id, state, status, made_by, expires_at, counts, basis, batch_size, "
        "submitted_by, content_hash, file_name, needs_approval_reason, breaker, include_completed, allow_repeat) "
        "VALUES (%s,%s,%s,%s,'waiting',%s, now() + %s * interval '1 second',%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
        (
            plan.plan_id,
            plan.kind,
            plan.batch_id,
            plan.state,
            plan.made_by,
            plan.expires_in_s,
            json.dumps(dict(plan.counts)),
            json.dumps(dict(plan.basis)),
            plan.batch_size,
            plan.submitted_by,
            plan.content_hash,
            plan.file_name,
            plan.needs_approval_reason,
            None if plan.breaker is None else json.dumps(dict(plan.breaker)),
            plan.include_completed,
            plan.allow_repeat,
        ),
    )
    copy_rows(
        cur,
        f"plan_rows (plan_id, {_ROW_COLUMNS})",
        (
            (plan.plan_id, r.line, r.id_type, r.identifier, r.user_id, r.action, r.outcome, r.reason, r.message)
            for r in rows
        ),
    )
    found = get(cur, plan.plan_id)
    assert found is not None
    return found


def _record(r: Sequence[Any]) -> PlanRecord:
    return PlanRecord(
        plan_id=r[0],
        kind=r[1],
        batch_id=r[2],
        state=r[3],
        status=r[4],
        made_by=r[5],
        made_at=r[6],
        expires_at=r[7],
        counts=dict(r[8] or {}),
        basis={str(k): int(v) for k, v in (r[9] or {}).items()},
        batch_size=int(r[10]),
        submitted_by=r[11],
        content_hash=r[12],
        file_name=r[13],
        needs_approval_reason=r[14],
        breaker=None if r[15] is None else dict(r[15]),
        include_completed=bool(r[16]),
        allow_repeat=bool(r[17]),
        decided_by=r[18],
        decided_at=r[19],
        upload_id=r[20],
        applied_at=r[21],
    )


def get(cur: Any, plan_id: str) -> PlanRecord | None:
    cur.execute(f"SELECT {_PLAN_COLUMNS} FROM plans WHERE plan_id = %s", (plan_id,))
    row = cur.fetchone()
    return None if row is None else _record(row)


def recent(cur: Any, states: Iterable[str], status: str | None = None, limit: int = 100) -> list[PlanRecord]:
    """The newest plans of batches of ``states`` (optionally of one status), newest first."""
    where = "state = ANY(%s)" + (" AND status = %s" if status else "")
    params: tuple[Any, ...] = (sorted(set(states)), status, limit) if status else (sorted(set(states)), limit)
    cur.execute(f"SELECT {_PLAN_COLUMNS} FROM plans WHERE {where} ORDER BY made_at DESC LIMIT %s", params)
    return [_record(r) for r in cur.fetchall()]


def rows(cur: Any, plan_id: str, outcome: str | None = None) -> list[PlanRow]:
    """The plan's rows by line (only those of one expected outcome, if given)."""
    where = "plan_id = %s" + (" AND outcome = %s" if outcome else "")
    cur.execute(
        f"SELECT {_ROW_COLUMNS} FROM plan_rows WHERE {where} ORDER BY line",
        (plan_id, outcome) if outcome else (plan_id,),
    )
    return [PlanRow(int(n), t, str(i), u, str(a), str(o), str(r), str(m)) for n, t, i, u, a, o, r, m in cur.fetchall()]


def decide(
    cur: Any,
    plan_id: str,
    status: str,
    decided_by: str,
    upload_id: str | None = None,
    changed_since: Iterable[str] | None = None,
) -> bool:
    """Waiting → ``status`` (approved or rejected) if still waiting and not expired; False when it was not.

    ``changed_since``: an approval's changed-since set (user ids), fixed with the decision so that resuming the
    approved plan reports the same rows.
    """
    fixed = None if changed_since is None else json.dumps(sorted(set(changed_since)))
    cur.execute(
        "UPDATE plans SET status = %s, decided_by = %s, decided_at = now(), upload_id = coalesce(upload_id, %s), "
        "changed_since = coalesce(%s::jsonb, changed_since) "
        "WHERE plan_id = %s AND status = 'waiting' AND expires_at > now()",
        (status, decided_by, upload_id, fixed, plan_id),
    )
    return bool(cur.rowcount == 1)


def fixed_changed_since(cur: Any, plan_id: str) -> set[str] | None:
    """The changed-since set fixed when the plan was approved (None when it was not stored)."""
    cur.execute("SELECT changed_since FROM plans WHERE plan_id = %s", (plan_id,))
    row = cur.fetchone()
    return None if row is None or row[0] is None else {str(u) for u in row[0]}


def mark_applied(cur: Any, plan_id: str) -> bool:
    """Approved → applied, once its upload is published."""
    cur.execute(
        "UPDATE plans SET status = 'applied', applied_at = now() WHERE plan_id = %s AND status = 'approved'",
        (plan_id,),
    )
    return bool(cur.rowcount == 1)


def expire(cur: Any, plan_id: str | None = None) -> list[str]:
    """Waiting plans past their expiry (one, or all) → expired; returns their ids."""
    cur.execute(
        "UPDATE plans SET status = 'expired' WHERE status = 'waiting' AND expires_at <= now()"
        + (" AND plan_id = %s" if plan_id else "")
        + " RETURNING plan_id",
        (plan_id,) if plan_id else (),
    )
    return sorted(str(r[0]) for r in cur.fetchall())


def now(cur: Any) -> datetime:
    """The database's clock (plans expire by it)."""
    cur.execute("SELECT now()")
    value: datetime = cur.fetchone()[0]
    return value


# ---------------------------------------------------------------------------- what planning looks up
def state_settings(cur: Any, state: str) -> StateSettings:
    """A state's plan settings, or the defaults."""
    cur.execute(
        "SELECT team_approval_required, breaker_percent, breaker_max_removals FROM plan_settings WHERE state = %s",
        (state,),
    )
    row = cur.fetchone()
    return StateSettings() if row is None else StateSettings(bool(row[0]), float(row[1]), int(row[2]))


def set_state_settings(cur: Any, state: str, settings: StateSettings) -> None:
    """Stores a state's plan settings (the owner's command)."""
    cur.execute(
        "INSERT INTO plan_settings (state, team_approval_required, breaker_percent, breaker_max_removals) "
        "VALUES (%s,%s,%s,%s) ON CONFLICT (state) DO UPDATE SET"
        " team_approval_required = EXCLUDED.team_approval_required,"
        " breaker_percent = EXCLUDED.breaker_percent, breaker_max_removals = EXCLUDED.breaker_max_removals,"
        " updated_at = now()",
        (state, settings.team_approval_required, settings.breaker_percent, settings.breaker_max_removals),
    )


def members(cur: Any, batch_id: str) -> set[str]:
    """The batch's participants now (a sync removes those its file does not name)."""
    cur.execute("SELECT user_id FROM enrolments WHERE batch_id = %s", (batch_id,))
    return {str(r[0]) for r in cur.fetchall()}


def basis(cur: Any, group: str, topic: str) -> dict[str, int]:
    """The processor's positions on the commands topic (partition → next offset): what a plan was computed against."""
    cur.execute(
        "SELECT kafka_partition, next_offset FROM consumer_positions WHERE group_id = %s AND topic = %s",
        (group, topic),
    )
    return {str(p): int(o) for p, o in cur.fetchall()}


_CHANGED = """
SELECT DISTINCT l.user_id
FROM unnest(%(parts)s::int[], %(offs)s::bigint[]) AS b(p, o)
JOIN command_ledger l ON l.group_id = %(g)s AND l.kafka_topic = %(t)s AND l.kafka_partition = b.p
                     AND l.kafka_offset >= b.o
WHERE l.batch_id = %(batch)s AND l.outcome = 'APPLIED' AND NOT l.dry_run AND l.user_id = ANY(%(users)s)
  AND l.upload_id IS DISTINCT FROM %(mine)s
"""


def changed_since(
    cur: Any,
    group: str,
    topic: str,
    since: Mapping[str, int],
    batch_id: str,
    user_ids: Iterable[str],
    own_upload: str | None = None,
) -> set[str]:
    """Of ``user_ids``, those whose membership of the batch another upload changed after the positions ``since``.

    A partition missing from ``since`` had no position when the plan was made: all of its ledger counts.
    """
    cur.execute(
        "SELECT DISTINCT kafka_partition FROM consumer_positions WHERE group_id = %s AND topic = %s", (group, topic)
    )
    partitions = sorted({int(p) for (p,) in cur.fetchall()} | {int(p) for p in since})
    users = sorted(set(user_ids))
    if not users or not partitions:
        return set()
    cur.execute(
        _CHANGED,
        {
            "parts": partitions,
            "offs": [int(since.get(str(p), 0)) for p in partitions],
            "g": group,
            "t": topic,
            "batch": batch_id,
            "users": users,
            "mine": own_upload,
        },
    )
    return {str(r[0]) for r in cur.fetchall()}


def applied_before(cur: Any, batch_id: str, content_hash: str) -> Applied | None:
    """The newest completed (not dry-run) upload of this file to this batch, for the resubmission rule."""
    cur.execute(
        "SELECT upload_id, completed_at, coalesce(nullif(requested_by, ''), submitted_by, ''), "
        "coalesce((reasons->>'ENROLLED')::int, 0), coalesce((reasons->>'UNENROLLED')::int, 0) "
        "FROM uploads WHERE content_hash = %s AND batch_id = %s AND completed_at IS NOT NULL AND NOT dry_run "
        "ORDER BY completed_at DESC LIMIT 1",
        (content_hash, batch_id),
    )
    row = cur.fetchone()
    return None if row is None else Applied(str(row[0]), row[1], str(row[2]), int(row[3]), int(row[4]))


_PENDING = """
SELECT 'upload', p.upload_id, NULL, NULL, p.published_at, p.published_by
  FROM published_files p LEFT JOIN uploads u ON u.upload_id = p.upload_id
 WHERE p.content_hash = %(h)s AND p.batch_id = %(b)s AND u.completed_at IS NULL
   AND p.published_at > now() - interval '30 days'
UNION ALL
SELECT 'plan', pl.upload_id, pl.plan_id, pl.status, coalesce(pl.applied_at, pl.made_at), pl.made_by
  FROM plans pl LEFT JOIN uploads u ON u.upload_id = pl.upload_id
 WHERE pl.content_hash = %(h)s AND pl.batch_id = %(b)s
   AND ((pl.status IN ('waiting', 'approved') AND pl.expires_at > now())
        OR (pl.status = 'applied' AND u.completed_at IS NULL AND pl.applied_at > now() - interval '30 days'))
 ORDER BY 5 DESC LIMIT 1
"""


def in_progress(cur: Any, batch_id: str, content_hash: str) -> Pending | None:
    """The newest upload of this file to this batch published but not completed (the processor has not finished
    it, or is down), or plan of it waiting, approved or applied but not completed: the resubmission rule too."""
    cur.execute(_PENDING, {"h": content_hash, "b": batch_id})
    row = cur.fetchone()
    if row is None:
        return None
    kind, upload_id, plan_id, status, since, by = row
    return Pending(str(kind), upload_id, plan_id, status, since, str(by or ""))


def record_published(cur: Any, upload_id: str, batch_id: str, content_hash: str, published_by: str) -> None:
    """The file of an upload just published (``published_files``), so a resend is refused while it is in progress."""
    cur.execute(
        "INSERT INTO published_files (upload_id, batch_id, content_hash, published_by) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (upload_id) DO NOTHING",
        (upload_id, batch_id, content_hash, published_by),
    )
