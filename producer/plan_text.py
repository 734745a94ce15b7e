"""A plan as the CLI prints it — the same on the direct path and in server mode, so the two can be compared.

``render_plan`` is the text; ``--json`` prints ``PlanSummary.to_json()``.  In server mode the API's answer is
turned back into a :class:`PlanSummary` (``summary_from_json``) and printed by the same functions.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from producer.plans import PlanSummary

TEAM_WAITS = "Nothing was changed: the implementation team's uploads to this state need a state admin's approval."
SYNC_WAITS = "Nothing was changed: the sync waits for a state admin's approval."


@dataclass(frozen=True)
class Waiting:
    """An upload that became a plan waiting for a state admin: printed instead of an upload's summary."""

    plan: PlanSummary
    sentence: str


def render_plan(plan: PlanSummary) -> str:
    """A plan as text: what it would do, its status, and how to decide it."""
    r = plan.record
    c = r.counts
    waiting = r.status == "waiting"
    why = f" — needs a state admin's approval ({r.needs_approval_reason})" if r.needs_approval_reason else ""
    lines = [
        f"Plan {r.plan_id}: {r.kind} for batch {r.batch_id}, {r.status}{why if waiting else ''}",
        f"  adds {c.get('adds', 0):,}, removes {c.get('removes', 0):,}, unchanged {c.get('unchanged', 0):,}"
        f" ({c.get('rows', 0):,} rows)",
    ]
    for outcome, n in sorted(c.get("outcomes", {}).items()):
        reasons = ", ".join(
            f"{k} {v:,}" for k, v in sorted(c.get("reasons", {}).items()) if _outcome(k) == outcome and v
        )
        lines.append(f"  {outcome:<9} {n:>7,}  {reasons}")
    if r.breaker:
        from enrolment.domain.plans import Breaker

        lines.append("  " + Breaker(**r.breaker).sentence())
    if waiting:
        lines.append(f"  expires {r.expires_at:%Y-%m-%d %H:%M %Z}")
        lines.append(f"  approve: participants plan approve {r.plan_id} --as ADMIN   (or reject)")
    if r.upload_id and r.status == "applied":
        lines.append(f"  applied as upload {r.upload_id}: participants status {r.upload_id}")
    return "\n".join(lines)


def _outcome(reason: str) -> str:
    from enrolment.domain.model import outcome_of

    return outcome_of(reason).value


def print_plan(args: argparse.Namespace, plan: PlanSummary) -> None:
    print(json.dumps(plan.to_json()) if args.json else render_plan(plan))


def print_waiting(args: argparse.Namespace, waiting: Waiting) -> None:
    """The waiting plan, and (as text) the sentence saying nothing was changed."""
    print_plan(args, waiting.plan)
    if not args.json:
        print(waiting.sentence)


def _when(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def summary_from_json(data: dict[str, Any]) -> PlanSummary:
    """The API's plan (``GET /api/plans/{id}``) as the service's :class:`PlanSummary`, so it prints the same."""
    from enrolment.store.plans import PlanRecord

    made_at, expires_at = _when(data["made_at"]), _when(data["expires_at"])
    assert made_at is not None and expires_at is not None
    record = PlanRecord(
        plan_id=str(data["plan_id"]),
        kind=str(data["kind"]),
        batch_id=str(data["batch_id"]),
        state=str(data["state"]),
        status=str(data["status"]),
        made_by=str(data["made_by"]),
        made_at=made_at,
        expires_at=expires_at,
        counts=dict(data.get("counts") or {}),
        basis={},
        batch_size=int(data.get("batch_size") or 0),
        submitted_by=data.get("submitted_by"),
        content_hash=data.get("content_hash"),
        file_name=data.get("file_name"),
        needs_approval_reason=data.get("needs_approval_reason"),
        breaker=data.get("breaker"),
        include_completed=bool(data.get("include_completed")),
        allow_repeat=bool(data.get("allow_repeat")),
        decided_by=data.get("decided_by"),
        decided_at=_when(data.get("decided_at")),
        upload_id=data.get("upload_id"),
        applied_at=_when(data.get("applied_at")),
    )
    return PlanSummary(record)
