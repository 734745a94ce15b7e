"""Plans as a service — plan, approve, apply — for the CLI's direct path and the dashboard alike.

Every function takes the settings and a SQLAlchemy engine of the caller's role (producer or dashboard) and
raises :class:`PlanRefused` (a reason code, a sentence, an HTTP status and an exit code) for what the person
can fix; a broker that cannot be reached raises ``enrolment.kafka.clients.BrokerUnavailable``. Each step is
logged on the ``audit`` logger (``PLAN_MADE``, ``PLAN_APPROVED``, ``PLAN_REJECTED``, ``PLAN_APPLIED``,
``PLAN_EXPIRED``); callers that publish audit events install its telemetry handler (enrolment.kafka.audit).

The calls (stable; new ones are added, none changed):

- ``make_plan(settings, engine, kind, batch_id, rows, made_by, options) -> PlanSummary`` — evaluates every
  row (``enrolment.files`` rows) against the store now and stores a waiting plan;
- ``approve(settings, engine, plan_id, decider, *, submitted_by=None, producer=None, codec=None) -> ApplyResult``
  — a state admin's approval, applied at once: exactly the plan's rows as one upload (``plan_id`` recorded),
  rows changed since the plan refused as ``CHANGED_SINCE_PLAN``;
- ``reject(settings, engine, plan_id, decider) -> PlanSummary``;
- ``show(engine, plan_id) -> dict`` — ``plan_id``, ``kind``, ``batch_id``, ``state``, ``status``, ``counts``,
  ``made_by``, times, ``needs_approval_reason``, ``breaker``, ``upload_id`` and the upload's progress;
- ``plan_rows(engine, plan_id, outcome=None) -> list[PlanRow]`` — the rows by line (for the page and its CSV);
- ``sync(settings, engine, batch_id, rows, made_by, options, ...) -> SyncResult`` — a sync plan, applied at
  once unless the breaker (or the team's approval setting) makes it wait;
- ``team_approval_needed(engine, batch_id, requester) -> bool`` and ``refuse_repeat(engine, batch_id,
  content_hash, allow_repeat)`` — the checks before an ordinary upload (a file applied, in progress or
  waiting as a plan); ``record_published(engine, request)`` after it is published; ``file_hash(stream) -> str``.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from confluent_kafka import KafkaException, Producer

from enrolment.domain import plans as rules
from enrolment.domain.model import IdTypeValue, Reason
from enrolment.domain.plans import ApprovalReason, PlanKind, PlanStatus, Problem
from enrolment.domain.rules import is_authorized
from enrolment.domain.text import CONTROL_CHARACTER, ControlCharacter, control_sentence
from enrolment.errors import EXIT_INPUT, EXIT_UNREACHABLE
from enrolment.files import InputRow, RefusedRow
from enrolment.kafka.clients import BrokerUnavailable
from enrolment.messages.codec import Codec, default_codec
from enrolment.settings import Settings
from enrolment.store import plans as store
from enrolment.store import reference
from enrolment.store.db import Connections as Engine  # SQLAlchemy's Engine or db.direct(): raw_connection() only
from enrolment.store.plans import NewPlan, PlanRecord, PlanRow
from enrolment.store.uploads import find_upload
from producer.planning import evaluate_rows, is_unchanged
from producer.publish import Published, UploadRequest, publish_upload

audit = logging.getLogger("audit")

PLAN_NOT_FOUND = "PLAN_NOT_FOUND"
BATCH_NOT_FOUND = "BATCH_NOT_FOUND"
# reason code -> (HTTP status, exit code) of a refusal
_STATUS: dict[str, tuple[int, int]] = {
    PLAN_NOT_FOUND: (404, EXIT_INPUT),
    BATCH_NOT_FOUND: (404, EXIT_INPUT),
    rules.NOT_WAITING: (409, EXIT_UNREACHABLE),
    rules.PLAN_EXPIRED: (409, EXIT_UNREACHABLE),
    rules.NOT_STATE_ADMIN: (403, EXIT_UNREACHABLE),
    rules.OWN_TEAM_PLAN: (403, EXIT_UNREACHABLE),
    rules.REPEATED_FILE: (409, EXIT_INPUT),
}


class PlanRefused(Exception):
    """What the person can fix: ``code`` and ``message``; ``http_status`` for the API, ``exit_code`` for the CLI.

    Deciding a plan that is not waiting (or expired, or not the decider's to decide) exits 1 (HTTP 409/403);
    an unknown plan or batch, or a repeated file, exits 2 (HTTP 404/409) and nothing is published.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status, self.exit_code = _STATUS.get(code, (400, EXIT_INPUT))

    @classmethod
    def of(cls, problem: Problem) -> PlanRefused:
        return cls(problem.code, problem.message)


@dataclass(frozen=True)
class PlanOptions:
    """How a plan is made. Breaker thresholds override the state's settings for this call only."""

    submitted_by: str | None = None  # who sent it (the operator cli:LOGIN, or the API's signed-in user)
    content_hash: str | None = None  # SHA-256 of the file (file_hash): the resubmission check
    file_name: str | None = None
    include_completed: bool = False
    allow_repeat: bool = False
    max_removals: int | None = None
    max_removal_percent: float | None = None
    needs_approval_reason: str | None = None  # set by the caller, e.g. IMPLEMENTATION_TEAM for the team's add


@dataclass(frozen=True)
class PlanSummary:
    """A plan as callers show it (``to_json`` is what ``plan show --json`` and the API print)."""

    record: PlanRecord

    @property
    def plan_id(self) -> str:
        return self.record.plan_id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def counts(self) -> dict[str, Any]:
        return self.record.counts

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {
            "plan_id": r.plan_id,
            "kind": r.kind,
            "batch_id": r.batch_id,
            "state": r.state,
            "status": r.status,
            "counts": r.counts,
            "made_by": r.made_by,
            "submitted_by": r.submitted_by,
            "made_at": r.made_at.isoformat(),
            "expires_at": r.expires_at.isoformat(),
            "needs_approval_reason": r.needs_approval_reason,
            "breaker": r.breaker,
            "batch_size": r.batch_size,
            "content_hash": r.content_hash,
            "file_name": r.file_name,
            "include_completed": r.include_completed,
            "decided_by": r.decided_by,
            "decided_at": r.decided_at.isoformat() if r.decided_at else None,
            "upload_id": r.upload_id,
            "applied_at": r.applied_at.isoformat() if r.applied_at else None,
        }


@dataclass
class ApplyResult:
    """An applied plan: its upload (published, to follow like any other) and the rows left alone."""

    plan: PlanSummary
    request: UploadRequest
    published: Published
    changed_since_plan: int

    @property
    def upload_id(self) -> str:
        return self.published.upload_id

    def to_json(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan.plan_id,
            "upload_id": self.upload_id,
            "published": self.published.published,
            "changed_since_plan": self.changed_since_plan,
            "refused": len(self.published.refused),
        }


@dataclass
class SyncResult:
    """A sync: its plan, and its upload when it was applied at once (None while it waits for approval)."""

    plan: PlanSummary
    applied: ApplyResult | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- connections
@contextmanager
def _cursor(engine: Engine, repeatable: bool = False) -> Iterator[Any]:
    """A cursor in one transaction, committed when the block ends without an exception."""
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        if repeatable:  # the basis and the rows' lookups see one snapshot of the store
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield cur
        raw.commit()
    finally:
        raw.close()


def file_hash(stream: BinaryIO) -> str:
    """SHA-256 of the rest of a seekable stream; the stream is put back where it was."""
    start = stream.tell()
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        digest.update(chunk)
    stream.seek(start)
    return digest.hexdigest()


def _log(event: str, by: str, plan: PlanRecord, **more: Any) -> None:
    fields = {"plan_id": plan.plan_id, "batch_id": plan.batch_id, "kind": plan.kind, "state": plan.state}
    audit.info(event.lower().replace("_", " "), extra={"event": event, "by": by, **fields, **more})


# ---------------------------------------------------------------------------- making a plan
def _check_repeat(cur: Any, batch_id: str, content_hash: str | None, allow_repeat: bool) -> None:
    if content_hash is None:
        return
    problem = rules.pending_problem(store.in_progress(cur, batch_id, content_hash), allow_repeat)
    if problem is None:
        previous = store.applied_before(cur, batch_id, content_hash)
        problem = rules.repeat_problem(previous, store.now(cur), allow_repeat)
    if problem is not None:
        raise PlanRefused.of(problem)


def refuse_repeat(engine: Engine, batch_id: str, content_hash: str | None, allow_repeat: bool) -> None:
    """Raises REPEATED_FILE when this file was applied to this batch in the last 30 days (unless allowed)."""
    with _cursor(engine) as cur:
        _check_repeat(cur, batch_id, content_hash, allow_repeat)


def record_published(engine: Engine, request: UploadRequest) -> None:
    """Records an upload's file once it is published (not a dry run, not a plan's: its plan is the record), so
    the same file sent again while it is in progress is refused too."""
    if request.content_hash is None or request.dry_run or request.plan_id is not None:
        return
    by = request.requested_by or request.submitted_by or ""
    with _cursor(engine) as cur:
        store.record_published(cur, request.upload_id, request.batch_id, request.content_hash, by)


def team_approval_needed(engine: Engine, batch_id: str, requester: str) -> bool:
    """Whether ``requester``'s upload to the batch must wait for a state admin (the team, per the state's setting)."""
    with _cursor(engine) as cur:
        batch = reference.batch(cur, batch_id)
        user = reference.user(cur, requester)
        if batch is None:
            return False
        return rules.team_needs_approval(user, is_authorized(user, batch), store.state_settings(cur, batch.state))


def _approval_reason(
    cur: Any, made_by: str, batch: Any, breaker: rules.Breaker | None, given: str | None
) -> str | None:
    """IMPLEMENTATION_TEAM when the team made it and its state requires approval (another admin decides), else
    BREAKER when it tripped."""
    if given is not None:
        return given
    maker = reference.user(cur, made_by)
    if rules.team_needs_approval(maker, is_authorized(maker, batch), store.state_settings(cur, batch.state)):
        return ApprovalReason.IMPLEMENTATION_TEAM.value
    return ApprovalReason.BREAKER.value if breaker is not None and breaker.tripped else None


def _breaker(cur: Any, kind: str, state: str, rows: list[PlanRow], size: int, o: PlanOptions) -> rules.Breaker | None:
    if kind != PlanKind.SYNC:
        return None
    defaults = store.state_settings(cur, state)
    percent = defaults.breaker_percent if o.max_removal_percent is None else o.max_removal_percent
    most = defaults.breaker_max_removals if o.max_removals is None else o.max_removals
    return rules.breaker_trips(sum(1 for r in rows if r.reason == Reason.UNENROLLED), size, percent, most)


def make_plan(
    settings: Settings,
    engine: Engine,
    kind: str,
    batch_id: str,
    rows: Iterable[InputRow | RefusedRow],
    made_by: str,
    options: PlanOptions | None = None,
) -> PlanSummary:
    """Evaluates every row against the store as it is now and stores a waiting plan (expires in the setting's days).

    ``kind``: add | remove | sync. Refused: CONTROL_CHARACTER (in the file name), BATCH_NOT_FOUND, REPEATED_FILE
    (nothing stored).
    """
    o = options or PlanOptions()
    kind = PlanKind(kind).value
    sentence = None if o.file_name is None else control_sentence("file name", o.file_name)
    if sentence is not None:  # the upload applying it would be refused: refuse the plan now
        raise PlanRefused(CONTROL_CHARACTER, f"{sentence} Nothing was planned.")
    with _cursor(engine, repeatable=True) as cur:
        batch = reference.batch(cur, batch_id)
        if batch is None:
            raise PlanRefused(BATCH_NOT_FOUND, f"Batch {batch_id} does not exist. Nothing was planned.")
        _check_repeat(cur, batch_id, o.content_hash, o.allow_repeat)
        basis = store.basis(cur, settings.consumer_group, settings.topics.commands)
        planned = evaluate_rows(cur, kind, batch, rows, made_by, o.include_completed, settings.ui_participant_limit)
        breaker = _breaker(cur, kind, batch.state, planned, batch.participant_count, o)
        record = store.create(cur, _new_plan(settings, kind, batch, made_by, o, planned, basis, breaker), planned)
        record = _with_reason(cur, record, _approval_reason(cur, made_by, batch, breaker, o.needs_approval_reason))
    _log("PLAN_MADE", made_by, record, rows=record.counts.get("rows", 0), reason=record.needs_approval_reason or "")
    return PlanSummary(record)


def _new_plan(
    settings: Settings,
    kind: str,
    batch: Any,
    made_by: str,
    o: PlanOptions,
    planned: list[PlanRow],
    basis: dict[str, int],
    breaker: rules.Breaker | None,
) -> NewPlan:
    return NewPlan(
        plan_id=str(uuid.uuid4()),
        kind=kind,
        batch_id=batch.batch_id,
        state=batch.state,
        made_by=made_by,
        expires_in_s=settings.plan_expiry_days * 86400.0,
        counts=rules.plan_counts((r.action, r.outcome, r.reason) for r in planned),
        basis=basis,
        batch_size=batch.participant_count,
        submitted_by=o.submitted_by,
        content_hash=o.content_hash,
        file_name=o.file_name,
        breaker=None if breaker is None else breaker.to_json(),
        include_completed=o.include_completed,
        allow_repeat=o.allow_repeat,
    )


def _with_reason(cur: Any, record: PlanRecord, reason: str | None) -> PlanRecord:
    if reason is None:
        return record
    cur.execute("UPDATE plans SET needs_approval_reason = %s WHERE plan_id = %s", (reason, record.plan_id))
    found = store.get(cur, record.plan_id)
    assert found is not None
    return found


# ---------------------------------------------------------------------------- reading
def _get(cur: Any, plan_id: str, expired: list[PlanRecord] | None = None) -> PlanRecord:
    """The plan; with ``expired``, a waiting one past its expiry is marked expired (and added to it: audit after
    the commit)."""
    record = store.get(cur, plan_id)
    if record is None:
        raise PlanRefused(PLAN_NOT_FOUND, f"No plan {plan_id} is known.")
    due = rules.effective_status(record.status, record.expires_at, store.now(cur)) is PlanStatus.EXPIRED
    if expired is not None and due and store.expire(cur, plan_id):
        record = store.get(cur, plan_id) or record
        expired.append(record)
    return record


def _audit_expired(records: list[PlanRecord]) -> None:
    for record in records:
        _log("PLAN_EXPIRED", "system", record)


def _expire_if_due(engine: Engine, plan_id: str) -> None:
    """Marks the plan expired if it is past its expiry, in its own committed transaction (a decision refused
    after it does not undo it), audited once after the commit."""
    expired: list[PlanRecord] = []
    with _cursor(engine) as cur:
        _get(cur, plan_id, expired)
    _audit_expired(expired)


def get_plan(engine: Engine, plan_id: str) -> PlanSummary:
    """The plan (a waiting one past its expiry is marked expired first); PLAN_NOT_FOUND when unknown."""
    expired: list[PlanRecord] = []
    with _cursor(engine) as cur:
        record = _get(cur, plan_id, expired)
    _audit_expired(expired)
    return PlanSummary(record)


def show(engine: Engine, plan_id: str) -> dict[str, Any]:
    """The plan as one JSON object, with its upload's progress once applied (``upload``: null before)."""
    expired: list[PlanRecord] = []
    with _cursor(engine) as cur:
        record = _get(cur, plan_id, expired)
        shown = PlanSummary(record).to_json()
        shown["upload"] = upload_json(cur, record.upload_id)
    _audit_expired(expired)
    return shown


def upload_json(cur: Any, upload_id: str | None) -> dict[str, Any] | None:
    """The applying upload's progress as ``show`` (and the API's plan) gives it; None before it is recorded."""
    upload = find_upload(cur, upload_id) if upload_id else None
    if upload is None:
        return None
    return {"upload_id": upload.upload_id, "published": upload.published, "complete": upload.completed}


def plan_rows(engine: Engine, plan_id: str, outcome: str | None = None) -> list[PlanRow]:
    """The plan's rows by line, optionally of one expected outcome (APPLIED, SKIPPED, REJECTED)."""
    expired: list[PlanRecord] = []
    with _cursor(engine) as cur:
        _get(cur, plan_id, expired)
        found = store.rows(cur, plan_id, outcome)
    _audit_expired(expired)
    return found


def expire_due(engine: Engine) -> list[str]:
    """Marks every waiting plan past its expiry as expired (audited); returns their ids."""
    with _cursor(engine) as cur:
        expired = store.expire(cur)
        records = [r for p in expired if (r := store.get(cur, p)) is not None]
    for record in records:
        _log("PLAN_EXPIRED", "system", record)
    return expired


# ---------------------------------------------------------------------------- deciding
def _decidable(cur: Any, plan_id: str, decider: str, approving: bool = False) -> PlanRecord:
    """The plan, if ``decider`` may decide it now (``approving``: or resume its stopped approval); PlanRefused
    otherwise. An overdue plan is expired beforehand, in its own transaction (``_expire_if_due``)."""
    record = _get(cur, plan_id)
    now = store.now(cur)
    if approving:
        problem = rules.approval_problem(plan_id, record.status, record.expires_at, now, record.upload_id)
    else:
        problem = rules.decision_problem(plan_id, record.status, record.expires_at, now)
    if problem is None:
        problem = rules.approver_problem(
            reference.user(cur, decider), record.state, record.made_by, record.needs_approval_reason
        )
    if problem is not None:
        raise PlanRefused.of(problem)
    return record


def reject(settings: Settings, engine: Engine, plan_id: str, decider: str) -> PlanSummary:
    """A state admin's rejection of a waiting plan: nothing is published, the plan cannot be approved after."""
    _expire_if_due(engine, plan_id)
    with _cursor(engine) as cur:
        _decidable(cur, plan_id, decider)
        if not store.decide(cur, plan_id, PlanStatus.REJECTED.value, decider):
            raise PlanRefused(rules.NOT_WAITING, f"Plan {plan_id} was decided by someone else just now.")
        record = _get(cur, plan_id)
    _log("PLAN_REJECTED", decider, record)
    return PlanSummary(record)


@dataclass
class _Prepared:
    """What applying an approved plan publishes, fixed before the decision is committed."""

    rows: list[PlanRow]
    changed: set[str]
    request: UploadRequest


def _prepare(
    settings: Settings, cur: Any, record: PlanRecord, submitted_by: str, upload_id: str, fixed: set[str] | None
) -> _Prepared:
    """The rows to publish, the changed-since set (``fixed`` at the first approval, else computed now) and the
    upload request (refused with CONTROL_CHARACTER before anything is decided or published)."""
    rows = [r for r in store.rows(cur, record.plan_id) if not is_unchanged(record.kind, r)]
    if fixed is None:
        users = (r.user_id for r in rows if r.user_id is not None)
        group, topic = settings.consumer_group, settings.topics.commands
        fixed = store.changed_since(cur, group, topic, record.basis, record.batch_id, users, upload_id)
    try:
        request = _request(record, submitted_by, upload_id)
    except ControlCharacter as exc:
        raise PlanRefused(
            exc.reason, f"{exc.sentence} Plan {record.plan_id} cannot be applied; make a new plan."
        ) from None
    return _Prepared(rows, fixed, request)


def approve(
    settings: Settings,
    engine: Engine,
    plan_id: str,
    decider: str,
    *,
    submitted_by: str | None = None,
    producer: Producer | None = None,
    codec: Codec | None = None,
) -> ApplyResult:
    """A state admin's approval, applied at once (see the module docstring); the plan is applied once.

    The rows, the changed-since set and the request are fixed before the decision is committed (a request
    that cannot be built refuses the approval: the plan keeps waiting). Once approved, a plan never waits
    again: approving an approved plan that is not applied yet resumes its publishing — the same upload id and
    command ids (the processor applies each once) and the same changed-since rows.

    ``submitted_by``: who sent the approval (default the decider); ``producer``: a long-lived one (a server's).
    """
    by = submitted_by or decider
    _expire_if_due(engine, plan_id)
    with _cursor(engine, repeatable=True) as cur:
        record = _decidable(cur, plan_id, decider, approving=True)
        resuming = rules.resumable(record.status, record.upload_id)
        upload_id = record.upload_id or str(uuid.uuid4())
        fixed = store.fixed_changed_since(cur, plan_id) if resuming else None
        prepared = _prepare(settings, cur, record, by, upload_id, fixed)
        if not resuming:
            if not store.decide(cur, plan_id, PlanStatus.APPROVED.value, decider, upload_id, prepared.changed):
                raise PlanRefused(rules.NOT_WAITING, f"Plan {plan_id} was decided by someone else just now.")
            record = _get(cur, plan_id)
    if not resuming:
        _log("PLAN_APPROVED", decider, record)
    return _apply(settings, engine, record, prepared, producer, codec)


class PublishStopped(BrokerUnavailable):
    """An approved plan's publishing stopped part way: the plan stays approved; approving it again finishes it."""


def _apply(
    settings: Settings,
    engine: Engine,
    record: PlanRecord,
    prepared: _Prepared,
    producer: Producer | None,
    codec: Codec | None,
) -> ApplyResult:
    """Publishes an approved plan's rows as its upload. If that fails the plan stays approved (some commands may
    be delivered already: it must not be rejected now) and PublishStopped says how to finish it."""
    rows, request = prepared.rows, prepared.request
    actions = {r.line: r.action for r in rows}
    try:
        published = publish_upload(
            settings,
            codec or default_codec(),
            request,
            _to_publish(rows, prepared.changed, record.batch_id),
            producer=producer,
            action_of=actions.__getitem__,
        )
    except (BrokerUnavailable, KafkaException) as exc:
        why = str(exc).strip() or type(exc).__name__
        raise PublishStopped(
            f"Plan {record.plan_id} is approved; publishing stopped after it began ({why}); some of its commands "
            f"may already be applied. Run `participants plan approve {record.plan_id}` again to finish it."
        ) from None
    with _cursor(engine) as cur:
        store.mark_applied(cur, record.plan_id)
        record = _get(cur, record.plan_id)
    n_changed = sum(1 for r in published.refused if r.reason == rules.CHANGED_SINCE_PLAN)
    by = request.submitted_by or ""
    _log("PLAN_APPLIED", by, record, upload_id=published.upload_id, changed_since_plan=n_changed)
    return ApplyResult(PlanSummary(record), request, published, n_changed)


def _request(record: PlanRecord, submitted_by: str, upload_id: str) -> UploadRequest:
    return UploadRequest(
        batch_id=record.batch_id,
        action="REMOVE" if record.kind == PlanKind.REMOVE else "ADD",
        requested_by=record.made_by,
        kind=record.kind,
        file_name=record.file_name,
        submitted_by=submitted_by,
        include_completed=record.include_completed,
        plan_id=record.plan_id,
        content_hash=record.content_hash,
        upload_id=upload_id,
    )


_PROCESSOR_REASONS = frozenset(Reason)


def _to_publish(rows: list[PlanRow], changed: set[str], batch_id: str) -> Iterator[InputRow | RefusedRow]:
    """The plan's rows as an upload's: file refusals again, members changed since the plan left alone."""
    for r in rows:
        id_type: IdTypeValue = "STATE_ID" if r.id_type == "STATE_ID" else "USER_ID"
        if r.reason not in _PROCESSOR_REASONS:
            yield RefusedRow(r.line, r.identifier, id_type if r.id_type else None, r.reason, r.message)
        elif r.user_id is not None and r.user_id in changed:
            yield RefusedRow(
                r.line,
                r.identifier,
                id_type,
                rules.CHANGED_SINCE_PLAN,
                f"Line {r.line}: {r.user_id}'s membership of {batch_id} was changed by another upload since the "
                "plan was made; left alone.",
            )
        else:
            yield InputRow(r.line, r.identifier, id_type)


# ---------------------------------------------------------------------------- sync
def sync(
    settings: Settings,
    engine: Engine,
    batch_id: str,
    rows: Iterable[InputRow | RefusedRow],
    made_by: str,
    options: PlanOptions | None = None,
    *,
    producer: Producer | None = None,
    codec: Codec | None = None,
) -> SyncResult:
    """Makes the batch's participants equal to the file: a sync plan, applied at once by its maker unless it
    needs approval (the breaker tripped, or the implementation team made it) — then it waits, nothing removed."""
    summary = make_plan(settings, engine, PlanKind.SYNC.value, batch_id, rows, made_by, options)
    if summary.record.needs_approval_reason is not None:
        return SyncResult(summary)
    return SyncResult(summary, apply_own(settings, engine, summary.plan_id, made_by, producer=producer, codec=codec))


def apply_own(
    settings: Settings,
    engine: Engine,
    plan_id: str,
    made_by: str,
    *,
    submitted_by: str | None = None,
    producer: Producer | None = None,
    codec: Codec | None = None,
) -> ApplyResult:
    """Applies a plan that needs no approval (no ``needs_approval_reason``) on its maker's own authority."""
    by = submitted_by or made_by
    _expire_if_due(engine, plan_id)
    with _cursor(engine, repeatable=True) as cur:
        record = _get(cur, plan_id)
        if record.made_by != made_by:
            raise PlanRefused(rules.NOT_STATE_ADMIN, f"Plan {plan_id} was made by {record.made_by}, not {made_by}.")
        if record.needs_approval_reason is not None:
            why = record.needs_approval_reason
            raise PlanRefused(rules.NOT_STATE_ADMIN, f"Plan {plan_id} needs a state admin's approval ({why}).")
        upload_id = record.upload_id or str(uuid.uuid4())
        prepared = _prepare(settings, cur, record, by, upload_id, None)
        if not store.decide(cur, plan_id, PlanStatus.APPROVED.value, made_by, upload_id, prepared.changed):
            raise PlanRefused(rules.NOT_WAITING, f"Plan {plan_id} is {record.status}, not waiting.")
        record = _get(cur, plan_id)
    return _apply(settings, engine, record, prepared, producer, codec)
