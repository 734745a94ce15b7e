"""The processor's database step: bulk lookups, the rules, and set-based writes of the ledger and enrolments.

The processor calls these inside one PostgreSQL transaction per consumed batch, after the checkpoint's
compare-and-set (`enrolment.store.positions`): `apply_commands`, then `seal_upload` per sealed upload. A
handful of round-trips whatever the batch size (lookups as joins, COPY for the ledger and new enrolments).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from enrolment.domain.model import IMPLEMENTATION_TEAM, Command, Decision, IdType, User
from enrolment.domain.outputs import Recorded, UploadInfo
from enrolment.domain.rules import Snapshot, evaluate
from enrolment.messages.millis import from_ms, iso, to_ms
from enrolment.store import accounts, reference
from enrolment.store.copy import SEP, copy_cell
from enrolment.store.dead_letters import DeadLetter, letters_between


def ledger_hits(cur: Any, command_ids: Sequence[str]) -> dict[str, str]:
    """Command ids already applied, with their recorded reason."""
    if not command_ids:
        return {}
    if any(SEP in c for c in command_ids):
        cur.execute("SELECT command_id, reason FROM command_ledger WHERE command_id = ANY(%s)", (list(command_ids),))
    else:
        cur.execute(
            "SELECT command_id, reason FROM command_ledger WHERE command_id = ANY(string_to_array(%s, E'\\x1f'))",
            (SEP.join(command_ids),),
        )
    return {r[0]: r[1] for r in cur.fetchall()}


_PAIRS = "unnest(string_to_array(%s, E'\\x1f'), string_to_array(%s, E'\\x1f')) AS q(batch_id, ident)"
# The completion rule needs to know who completed the batch's course (enrolment.store.completions).
_COMPLETED = """
LEFT JOIN course_completions c ON c.batch_id = q.batch_id AND c.user_id = u.user_id
"""
_BY_USER_ID = f"""
SELECT q.batch_id, u.user_id, u.state_id, u.state, u.status, e.user_id IS NOT NULL, c.user_id IS NOT NULL
FROM {_PAIRS}
JOIN users u ON u.user_id = q.ident
LEFT JOIN enrolments e ON e.batch_id = q.batch_id AND e.user_id = u.user_id{_COMPLETED}"""
_BY_STATE_ID = f"""
SELECT q.batch_id, u.user_id, u.state_id, u.state, u.status, e.user_id IS NOT NULL, c.user_id IS NOT NULL
FROM {_PAIRS}
JOIN course_batches b ON b.batch_id = q.batch_id
JOIN users u ON u.state = b.state AND u.state_id = q.ident
LEFT JOIN enrolments e ON e.batch_id = q.batch_id AND e.user_id = u.user_id{_COMPLETED}"""
_BY_USER_ID_LIST = _BY_USER_ID.replace(_PAIRS, "unnest(%s::text[], %s::text[]) AS q(batch_id, ident)")
_BY_STATE_ID_LIST = _BY_STATE_ID.replace(_PAIRS, "unnest(%s::text[], %s::text[]) AS q(batch_id, ident)")
_NO_ROLES: frozenset[str] = frozenset()


def load_snapshot(cur: Any, commands: Sequence[Command]) -> Snapshot:
    """Everything the rules need for these commands, in four queries."""
    batch_ids = sorted({c.batch_id for c in commands})
    batches = reference.batches(cur, batch_ids)
    users_by_id: dict[str, User] = {}
    users_by_state_id: dict[tuple[str, str], User] = {}
    members: set[tuple[str, str]] = set()
    completed: set[tuple[str, str]] = set()
    queries = (
        (IdType.USER_ID, _BY_USER_ID, _BY_USER_ID_LIST),
        (IdType.STATE_ID, _BY_STATE_ID, _BY_STATE_ID_LIST),
    )
    for id_type, sql, list_sql in queries:
        pairs = {(c.batch_id, c.identifier) for c in commands if c.id_type is id_type and c.batch_id in batches}
        if not pairs:
            continue
        b_ids = [p[0] for p in pairs]
        idents = [p[1] for p in pairs]
        if any(SEP in x for x in idents) or any(SEP in x for x in b_ids):
            cur.execute(list_sql, (b_ids, idents))
        else:
            cur.execute(sql, (SEP.join(b_ids), SEP.join(idents)))
        for batch_id, user_id, state_id, state, status, enrolled, done in cur.fetchall():
            user = User(user_id, state, status, _NO_ROLES, state_id)
            users_by_id[user_id] = user
            if state_id is not None:
                users_by_state_id[(state, state_id)] = user
            if enrolled:
                members.add((batch_id, user_id))
            if done:
                completed.add((batch_id, user_id))
    requesters = reference.users(cur, {c.requested_by for c in commands})
    team = sorted(u for u, user in requesters.items() if IMPLEMENTATION_TEAM in user.roles)
    return Snapshot(
        served=accounts.served_states_of(cur, team) if team else {},
        batches=batches,
        users_by_id=users_by_id,
        users_by_state_id=users_by_state_id,
        members=members,
        completed=completed,
        requesters=requesters,
    )


@dataclass(frozen=True, slots=True)
class Positioned:
    """A command with where it was read from."""

    command: Command
    partition: int
    offset: int


@dataclass
class StepResult:
    recorded: list[Recorded] = field(default_factory=list)
    duplicates: int = 0
    recorded_reasons: list[str] = field(default_factory=list)  # of the duplicates: what the ledger says


_LEDGER_COLUMNS = (
    "command_id, upload_id, batch_id, kafka_topic, group_id, kafka_partition, kafka_offset, line, identifier, "
    "id_type, action, outcome, reason, message, user_id, course_id, participant_count, dry_run, source, "
    "requested_by, processed_at, origin_upload_id, origin_line"
)


def recorded_from(d: Decision, p: Positioned, state: str | None, now_ms: int) -> Recorded:
    """The ledger row of a decision (also what its outputs are built from)."""
    c = d.command
    return Recorded(
        command_id=c.command_id,
        upload_id=c.upload_id,
        batch_id=c.batch_id,
        kafka_partition=p.partition,
        kafka_offset=p.offset,
        line=c.line,
        identifier=c.identifier,
        id_type=c.id_type.value,
        action=c.action.value,
        outcome=d.outcome.value,
        reason=d.reason.value,
        message=d.message,
        user_id=d.user_id,
        course_id=d.course_id,
        state=state,
        participant_count=d.participant_count,
        dry_run=c.dry_run,
        source=c.source.value,
        requested_by=c.requested_by,
        processed_at_ms=now_ms,
        origin_upload_id=c.origin_upload_id,
        origin_line=c.origin_line,
    )


def apply_commands(
    cur: Any, items: Sequence[Positioned], ui_limit: int, now_ms: int, topic: str = "", group: str = ""
) -> StepResult:
    """Decides and applies commands (in the given order); ledger hits are duplicates and produce nothing."""
    out = StepResult()
    if not items:
        return out
    # Every lookup here is by key: keep the planner on the indexes even while table statistics lag behind
    # fast-growing tables (a hash join over all users or the whole ledger cost 2.3x in bench/).
    cur.execute("SET LOCAL enable_seqscan = off")
    hits = ledger_hits(cur, [p.command.command_id for p in items])
    fresh: list[Positioned] = []
    seen: set[str] = set()
    for p in items:
        cid = p.command.command_id
        if cid in hits or cid in seen:
            out.duplicates += 1
            out.recorded_reasons.append(hits.get(cid, "DUPLICATE"))
            continue
        seen.add(cid)
        fresh.append(p)
    if not fresh:
        return out
    snapshot = load_snapshot(cur, [p.command for p in fresh])
    initial_members = set(snapshot.members)
    decisions = evaluate((p.command for p in fresh), snapshot, ui_limit)

    ledger = io.StringIO()
    write = ledger.write
    topic_cell, group_cell = copy_cell(topic), copy_cell(group)
    processed_at = iso(now_ms)
    removed: set[tuple[str, str]] = set()
    last_enrol: dict[tuple[str, str], Recorded] = {}
    for d, p in zip(decisions, fresh, strict=True):
        batch = snapshot.batches.get(d.command.batch_id)
        rec = recorded_from(d, p, batch.state if batch else None, now_ms)
        out.recorded.append(rec)
        write(
            f"{copy_cell(rec.command_id)}\t{copy_cell(rec.upload_id)}\t{copy_cell(rec.batch_id)}\t{topic_cell}\t{group_cell}\t"
            f"{rec.kafka_partition}\t"
            f"{rec.kafka_offset}\t{rec.line}\t{copy_cell(rec.identifier)}\t{rec.id_type}\t{rec.action}\t{rec.outcome}\t"
            f"{rec.reason}\t{copy_cell(rec.message)}\t{copy_cell(rec.user_id)}\t{copy_cell(rec.course_id)}\t{copy_cell(rec.participant_count)}\t"
            f"{'t' if rec.dry_run else 'f'}\t{rec.source}\t{copy_cell(rec.requested_by)}\t{processed_at}\t"
            f"{copy_cell(rec.origin_upload_id)}\t{copy_cell(rec.origin_line)}\n"
        )
        if rec.change == "UNENROLLED" and rec.user_id is not None:
            removed.add((rec.batch_id, rec.user_id))
        elif rec.change == "ENROLLED" and rec.user_id is not None:
            last_enrol[(rec.batch_id, rec.user_id)] = rec

    ledger.seek(0)
    cur.copy_expert(f"COPY command_ledger ({_LEDGER_COLUMNS}) FROM STDIN", ledger)

    deletes = [k for k in removed if k in initial_members]
    if deletes:
        cur.execute(
            "DELETE FROM enrolments e USING unnest(%s::text[], %s::text[]) AS d(b, u) "
            "WHERE e.batch_id = d.b AND e.user_id = d.u",
            ([k[0] for k in deletes], [k[1] for k in deletes]),
        )
    inserts = [rec for key, rec in last_enrol.items() if key in snapshot.members]
    if inserts:
        buf = io.StringIO()
        for rec in inserts:
            buf.write(
                f"{copy_cell(rec.batch_id)}\t{copy_cell(rec.user_id)}\t{'ui' if rec.source == 'UI' else 'backend'}\t"
                f"{processed_at}\t{copy_cell(rec.requested_by)}\t{copy_cell(rec.command_id)}\n"
            )
        buf.seek(0)
        cur.copy_expert(
            "COPY enrolments (batch_id, user_id, added_via, enrolled_at, enrolled_by, command_id) FROM STDIN", buf
        )
    changed = {r.batch_id for r in out.recorded if r.change is not None}
    if changed:
        ids = sorted(changed)
        cur.execute(
            "UPDATE course_batches b SET participant_count = v.c, updated_at = now() "
            "FROM unnest(%s::text[], %s::int[]) AS v(id, c) WHERE b.batch_id = v.id",
            (ids, [snapshot.counts[i] for i in ids]),
        )
    return out


def upsert_upload_record(cur: Any, record: dict[str, Any]) -> None:
    """Stores the producer's PUBLISHED upload record (idempotent; a replay rewrites the same values)."""
    cur.execute(
        """
        INSERT INTO uploads (upload_id, batch_id, kind, requested_by, dry_run, file_name, parent_upload_id,
                             commands_published, refused, created_at, submitted_by, include_completed, plan_id,
                             content_hash)
        VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
        ON CONFLICT (upload_id) DO UPDATE SET kind = EXCLUDED.kind, requested_by = EXCLUDED.requested_by,
            submitted_by = EXCLUDED.submitted_by, include_completed = EXCLUDED.include_completed,
            dry_run = EXCLUDED.dry_run, file_name = EXCLUDED.file_name, parent_upload_id = EXCLUDED.parent_upload_id,
            commands_published = EXCLUDED.commands_published, refused = EXCLUDED.refused,
            created_at = EXCLUDED.created_at, plan_id = EXCLUDED.plan_id, content_hash = EXCLUDED.content_hash
        """,
        (
            record["upload_id"],
            record["batch_id"],
            record["kind"],
            record["requested_by"],
            record["dry_run"],
            record["file_name"],
            record["parent_upload_id"],
            record["commands_published"],
            json.dumps(record["refused"]),
            from_ms(to_ms(record["created_at"])),
            record.get("submitted_by"),
            bool(record.get("include_completed", False)),
            record.get("plan_id"),
            record.get("content_hash"),
        ),
    )


def seal_upload(
    cur: Any, record: dict[str, Any], partition: int, offset: int, now_ms: int, topic: str = "", group: str = ""
) -> UploadInfo | None:
    """Completes an upload when its seal (the PUBLISHED record, after all its commands) is processed.

    Returns the summary, or None when the upload was already completed (a replayed seal emits nothing).
    """
    upload_id = record["upload_id"]
    cur.execute("SELECT completed_at FROM uploads WHERE upload_id = %s FOR UPDATE", (upload_id,))
    row = cur.fetchone()
    if row is not None and row[0] is not None:
        return None
    upsert_upload_record(cur, record)
    cur.execute(
        "SELECT outcome, reason, count(*) FROM command_ledger WHERE upload_id = %s GROUP BY outcome, reason",
        (upload_id,),
    )
    outcomes: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for outcome, reason, n in cur.fetchall():
        outcomes[outcome] += int(n)
        reasons[reason] += int(n)
    cur.execute(
        """
        UPDATE uploads SET sealed_topic = %s, sealed_group = %s, sealed_partition = %s, sealed_offset = %s,
                           completed_at = %s, outcomes = %s, reasons = %s
        WHERE upload_id = %s
        """,
        (
            topic,
            group,
            partition,
            offset,
            iso(now_ms),
            json.dumps(dict(outcomes)),
            json.dumps(dict(reasons)),
            upload_id,
        ),
    )
    return load_upload_info(cur, upload_id)


def load_upload_info(cur: Any, upload_id: str) -> UploadInfo | None:
    cur.execute(
        """
        SELECT u.upload_id, u.batch_id, u.kind, u.requested_by, u.dry_run, u.file_name, u.parent_upload_id,
               coalesce(u.commands_published, 0), u.refused,
               (extract(epoch FROM coalesce(u.created_at, u.completed_at)) * 1000)::bigint,
               (extract(epoch FROM u.completed_at) * 1000)::bigint, u.outcomes, u.reasons, b.state, u.submitted_by,
               u.include_completed, u.plan_id, u.content_hash
        FROM uploads u LEFT JOIN course_batches b ON b.batch_id = u.batch_id
        WHERE u.upload_id = %s AND u.completed_at IS NOT NULL
        """,
        (upload_id,),
    )
    r = cur.fetchone()
    if r is None:
        return None
    return UploadInfo(
        upload_id=r[0],
        batch_id=r[1],
        kind=r[2],
        requested_by=r[3],
        dry_run=bool(r[4]),
        file_name=r[5],
        parent_upload_id=r[6],
        commands_published=int(r[7]),
        refused=list(r[8] or []),
        created_at_ms=int(r[9] or 0),
        completed_at_ms=int(r[10] or 0),
        outcomes=dict(r[11] or {}),
        reasons=dict(r[12] or {}),
        state=r[13],
        submitted_by=r[14],
        include_completed=bool(r[15]),
        plan_id=r[16],
        content_hash=r[17],
    )


_RECORDED_SQL = (
    "SELECT "
    + ", ".join(
        "(extract(epoch FROM l.processed_at) * 1000)::bigint" if c == "processed_at" else f"l.{c}"
        for c in _LEDGER_COLUMNS.split(", ")
        if c not in ("kafka_topic", "group_id")
    )
    + ", b.state FROM command_ledger l LEFT JOIN course_batches b ON b.batch_id = l.batch_id"
)


def _row_to_recorded(r: Sequence[Any]) -> Recorded:
    return Recorded(
        command_id=r[0],
        upload_id=r[1],
        batch_id=r[2],
        kafka_partition=int(r[3]),
        kafka_offset=int(r[4]),
        line=int(r[5]),
        identifier=r[6],
        id_type=r[7],
        action=r[8],
        outcome=r[9],
        reason=r[10],
        message=r[11],
        user_id=r[12],
        course_id=r[13],
        participant_count=r[14],
        dry_run=bool(r[15]),
        source=r[16],
        requested_by=r[17],
        processed_at_ms=int(r[18]),
        origin_upload_id=r[19],
        origin_line=r[20],
        state=r[21],
    )


@dataclass
class InDoubt:
    """Outputs of an applied batch whose Kafka transaction may not have committed."""

    recorded: list[Recorded]
    uploads: list[UploadInfo]
    dead_letters: list[DeadLetter]


def load_in_doubt(cur: Any, group: str, topic: str, partition: int, start: int, end: int) -> InDoubt:
    """Re-reads what this group's batch [start, end) of a partition recorded, to publish its outputs again."""
    cur.execute(
        _RECORDED_SQL + " WHERE l.group_id = %s AND l.kafka_topic = %s AND l.kafka_partition = %s"
        " AND l.kafka_offset >= %s AND l.kafka_offset < %s ORDER BY l.kafka_offset",
        (group, topic, partition, start, end),
    )
    recorded = [_row_to_recorded(r) for r in cur.fetchall()]
    cur.execute(
        "SELECT upload_id FROM uploads WHERE sealed_group = %s AND sealed_topic = %s AND sealed_partition = %s"
        " AND sealed_offset >= %s AND sealed_offset < %s ORDER BY sealed_offset",
        (group, topic, partition, start, end),
    )
    uploads = [u for (uid,) in cur.fetchall() if (u := load_upload_info(cur, uid)) is not None]
    letters = letters_between(cur, topic, partition, start, end)
    return InDoubt(recorded, uploads, letters)
