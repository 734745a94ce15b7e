"""The enrolment rules (enrolment.domain.rules): checked in a fixed order, the first failing one decides."""

from __future__ import annotations

import itertools
import typing
from collections.abc import Iterable

import pytest

from enrolment.domain.model import (
    IMPLEMENTATION_TEAM,
    ORG_ADMIN,
    OUTCOME_OF,
    Action,
    Batch,
    Command,
    Decision,
    IdType,
    IdTypeValue,
    Outcome,
    Reason,
    Source,
    User,
    outcome_of,
)
from enrolment.domain.rules import Snapshot, decide, evaluate, is_authorized, may_request

STATE = "KA"
OTHER_STATE = "MH"
LIMIT = 10
BATCH = "b-open"
COURSE = "course-1"
START_COUNT = 5

ADMIN = "admin-ka"
ADMIN_OTHER_STATE = "admin-mh"
ADMIN_INACTIVE = "admin-ka-inactive"
PLAIN_USER = "plain-ka"
MENTOR = "mentor-1"
MENTOR_OTHER_BATCH = "mentor-2"
MENTOR_INACTIVE = "mentor-inactive"
MENTOR_FROM_OTHER_STATE = "mentor-mh"

_ids = itertools.count(1)


def batch(
    batch_id: str = BATCH,
    *,
    state: str = STATE,
    enrollment_type: str = "invite-only",
    status: str = "ongoing",
    count: int = START_COUNT,
    mentors: Iterable[str] = (MENTOR, MENTOR_INACTIVE, MENTOR_FROM_OTHER_STATE),
) -> Batch:
    return Batch(
        batch_id=batch_id,
        course_id=f"course-of-{batch_id}" if batch_id != BATCH else COURSE,
        state=state,
        enrollment_type=enrollment_type,
        status=status,
        mentors=frozenset(mentors),
        participant_count=count,
    )


def user(
    user_id: str, state: str = STATE, status: str = "active", roles: Iterable[str] = (), state_id: str | None = None
) -> User:
    return User(user_id=user_id, state=state, status=status, roles=frozenset(roles), state_id=state_id)


# Learners (the people being enrolled).
ALICE = user("u-alice", state_id="KA-001")
BOB = user("u-bob", state_id="KA-002")
CAROL = user("u-carol", state_id="KA-003")
INACTIVE = user("u-idle", status="inactive", state_id="KA-009")
FOREIGN = user("u-foreign", state=OTHER_STATE, state_id="MH-777")  # exists only in the other state
LEARNERS = (ALICE, BOB, CAROL, INACTIVE, FOREIGN)

REQUESTERS = (
    user(ADMIN, roles={ORG_ADMIN}),
    user(ADMIN_OTHER_STATE, state=OTHER_STATE, roles={ORG_ADMIN}),
    user(ADMIN_INACTIVE, status="inactive", roles={ORG_ADMIN}),
    user(PLAIN_USER, roles={"PUBLIC"}),
    user(MENTOR, roles={"COURSE_MENTOR"}),
    user(MENTOR_OTHER_BATCH, roles={"COURSE_MENTOR"}),
    user(MENTOR_INACTIVE, status="inactive", roles={"COURSE_MENTOR"}),
    user(MENTOR_FROM_OTHER_STATE, state=OTHER_STATE, roles={"COURSE_MENTOR"}),
)


def snapshot(
    *batches: Batch, members: Iterable[tuple[str, str]] = (), completed: Iterable[tuple[str, str]] = ()
) -> Snapshot:
    batches = batches or (batch(),)
    return Snapshot(
        batches={b.batch_id: b for b in batches},
        users_by_id={u.user_id: u for u in LEARNERS},
        users_by_state_id={(u.state, u.state_id): u for u in LEARNERS if u.state_id},
        requesters={u.user_id: u for u in REQUESTERS},
        members=set(members),
        completed=set(completed),
    )


def cmd(
    identifier: str = ALICE.user_id,
    action: Action = Action.ADD,
    *,
    id_type: IdType = IdType.USER_ID,
    batch_id: str = BATCH,
    requested_by: str = ADMIN,
    source: Source = Source.BACKEND,
    dry_run: bool = False,
    include_completed: bool = False,
) -> Command:
    line = next(_ids) + 1
    return Command(
        command_id=f"up-1:{line}",
        upload_id="up-1",
        batch_id=batch_id,
        action=action,
        identifier=identifier,
        id_type=id_type,
        line=line,
        requested_by=requested_by,
        source=source,
        dry_run=dry_run,
        requested_at_ms=1_700_000_000_000,
        include_completed=include_completed,
    )


def add(identifier: str = ALICE.user_id, **kw: object) -> Command:
    return cmd(identifier, Action.ADD, **kw)  # type: ignore[arg-type]


def remove(identifier: str = ALICE.user_id, **kw: object) -> Command:
    return cmd(identifier, Action.REMOVE, **kw)  # type: ignore[arg-type]


def assert_sentence(d: Decision) -> None:
    assert isinstance(d.message, str)
    assert d.message.strip(), d
    assert d.message == d.message.strip()
    assert d.message.endswith("."), d.message


def assert_rejected(d: Decision, reason: Reason) -> None:
    assert d.outcome is Outcome.REJECTED, d
    assert d.reason is reason, d
    assert d.change is None
    assert d.participant_count is None
    assert_sentence(d)


def one(c: Command, snap: Snapshot | None = None, limit: int = LIMIT) -> Decision:
    return decide(c, snap if snap is not None else snapshot(), limit)


# ------------------------------------------------------------------------------------------- batch


def test_batch_not_found() -> None:
    d = one(add(batch_id="no-such-batch"))
    assert_rejected(d, Reason.BATCH_NOT_FOUND)
    assert d.course_id is None and d.user_id is None
    assert "no-such-batch" in d.message


def test_batch_not_invite_only() -> None:
    d = one(add(), snapshot(batch(enrollment_type="open")))
    assert_rejected(d, Reason.BATCH_NOT_INVITE_ONLY)
    assert d.course_id == COURSE
    assert BATCH in d.message


@pytest.mark.parametrize("status", ["ended", "cancelled"])
@pytest.mark.parametrize("action", [Action.ADD, Action.REMOVE])
def test_closed_batches_reject_adds_and_removes(status: str, action: Action) -> None:
    snap = snapshot(batch(status=status), members={(BATCH, ALICE.user_id)})
    d = one(cmd(ALICE.user_id, action), snap)
    assert_rejected(d, Reason.BATCH_CLOSED)
    assert status in d.message
    assert (BATCH, ALICE.user_id) in snap.members
    assert snap.count(BATCH) == START_COUNT


@pytest.mark.parametrize("status", ["upcoming", "ongoing"])
def test_upcoming_and_ongoing_batches_are_open(status: str) -> None:
    d = one(add(), snapshot(batch(status=status)))
    assert d.outcome is Outcome.APPLIED and d.reason is Reason.ENROLLED


# ----------------------------------------------------------------------------------- authorization


@pytest.mark.parametrize(
    "requester",
    [ADMIN_OTHER_STATE, ADMIN_INACTIVE, PLAIN_USER, MENTOR_OTHER_BATCH, MENTOR_INACTIVE, "nobody-we-know"],
    ids=[
        "admin-of-another-state",
        "inactive-admin",
        "non-admin-non-mentor",
        "mentor-of-another-batch",
        "inactive-mentor",
        "unknown-requester",
    ],
)
def test_not_authorized(requester: str) -> None:
    snap = snapshot()
    d = one(add(requested_by=requester), snap)
    assert_rejected(d, Reason.NOT_AUTHORIZED)
    assert requester in d.message
    assert d.course_id == COURSE
    assert snap.members == set() and snap.count(BATCH) == START_COUNT


@pytest.mark.parametrize("requester", [ADMIN, MENTOR, MENTOR_FROM_OTHER_STATE])
def test_org_admin_of_the_state_and_mentors_of_the_batch_are_allowed(requester: str) -> None:
    d = one(add(requested_by=requester))
    assert d.outcome is Outcome.APPLIED and d.reason is Reason.ENROLLED
    assert_sentence(d)


def test_is_authorized_directly() -> None:
    b = batch()
    reqs = {u.user_id: u for u in REQUESTERS}
    assert is_authorized(reqs[ADMIN], b)
    assert is_authorized(reqs[MENTOR], b)
    assert not is_authorized(None, b)
    assert not is_authorized(reqs[ADMIN_OTHER_STATE], b)
    assert not is_authorized(reqs[ADMIN_INACTIVE], b)
    assert not is_authorized(reqs[PLAIN_USER], b)
    # The admin of the other state is authorized for a batch of that state.
    assert is_authorized(reqs[ADMIN_OTHER_STATE], batch(state=OTHER_STATE))


def test_the_implementation_team_may_request_for_the_states_it_serves_only() -> None:
    team = User("team-1", OTHER_STATE, "active", frozenset({IMPLEMENTATION_TEAM}))
    snap = snapshot()
    snap.requesters = {**snap.requesters, team.user_id: team}
    assert_rejected(one(add(requested_by=team.user_id), snap), Reason.NOT_AUTHORIZED)
    snap.served = {team.user_id: frozenset({STATE})}
    assert one(add(requested_by=team.user_id), snap).outcome is Outcome.APPLIED
    retired = User("team-2", OTHER_STATE, "inactive", frozenset({IMPLEMENTATION_TEAM}))
    assert not may_request(retired, batch(), frozenset({STATE}))
    plain = User("plain-1", OTHER_STATE, "active", frozenset({"PUBLIC"}))
    assert not may_request(plain, batch(), frozenset({STATE}))


# ------------------------------------------------------------------------------------------ users


def test_user_not_found_by_user_id() -> None:
    d = one(add("u-ghost"))
    assert_rejected(d, Reason.USER_NOT_FOUND)
    assert "u-ghost" in d.message and "user id" in d.message
    assert d.user_id is None and d.course_id == COURSE


def test_user_not_found_by_state_id() -> None:
    d = one(add("KA-404", id_type=IdType.STATE_ID))
    assert_rejected(d, Reason.USER_NOT_FOUND)
    assert "KA-404" in d.message and "state id" in d.message and STATE in d.message


def test_state_id_that_exists_only_in_another_state_is_not_found() -> None:
    d = one(add(FOREIGN.state_id or "", id_type=IdType.STATE_ID))
    assert_rejected(d, Reason.USER_NOT_FOUND)
    # ... but the same state id resolves in a batch of its own state.
    snap = snapshot(batch("b-mh", state=OTHER_STATE))
    ok = one(
        add(FOREIGN.state_id or "", id_type=IdType.STATE_ID, batch_id="b-mh", requested_by=ADMIN_OTHER_STATE), snap
    )
    assert ok.outcome is Outcome.APPLIED and ok.user_id == FOREIGN.user_id


def test_state_id_resolves_to_the_platform_user() -> None:
    snap = snapshot()
    d = one(add(BOB.state_id or "", id_type=IdType.STATE_ID), snap)
    assert d.outcome is Outcome.APPLIED and d.reason is Reason.ENROLLED
    assert d.user_id == BOB.user_id
    assert (BATCH, BOB.user_id) in snap.members


@pytest.mark.parametrize("action", [Action.ADD, Action.REMOVE])
def test_user_of_another_state(action: Action) -> None:
    d = one(cmd(FOREIGN.user_id, action))
    assert_rejected(d, Reason.USER_OTHER_STATE)
    assert d.user_id == FOREIGN.user_id and d.course_id == COURSE
    assert OTHER_STATE in d.message and STATE in d.message


def test_inactive_user_cannot_be_added() -> None:
    snap = snapshot()
    d = one(add(INACTIVE.user_id), snap)
    assert_rejected(d, Reason.USER_INACTIVE)
    assert d.user_id == INACTIVE.user_id
    assert snap.members == set() and snap.count(BATCH) == START_COUNT


def test_inactive_user_who_is_enrolled_is_still_removed() -> None:
    snap = snapshot(members={(BATCH, INACTIVE.user_id)})
    d = one(remove(INACTIVE.user_id), snap)
    assert d.outcome is Outcome.APPLIED and d.reason is Reason.UNENROLLED and d.change is Reason.UNENROLLED
    assert d.participant_count == START_COUNT - 1
    assert snap.members == set()
    assert_sentence(d)


def test_remove_of_inactive_user_who_is_not_enrolled_is_skipped() -> None:
    d = one(remove(INACTIVE.user_id))
    assert d.outcome is Outcome.SKIPPED and d.reason is Reason.NOT_ENROLLED


def test_add_of_enrolled_inactive_user_is_rejected_as_inactive() -> None:
    """USER_INACTIVE comes before the ALREADY_ENROLLED skip."""
    d = one(add(INACTIVE.user_id), snapshot(members={(BATCH, INACTIVE.user_id)}))
    assert_rejected(d, Reason.USER_INACTIVE)


# ------------------------------------------------------------------------------------------- skips


def test_already_enrolled_is_skipped() -> None:
    snap = snapshot(members={(BATCH, ALICE.user_id)})
    d = one(add(), snap)
    assert d.outcome is Outcome.SKIPPED and d.reason is Reason.ALREADY_ENROLLED
    assert d.change is None and d.participant_count == START_COUNT
    assert d.user_id == ALICE.user_id and d.course_id == COURSE
    assert snap.count(BATCH) == START_COUNT
    assert_sentence(d)


def test_not_enrolled_is_skipped() -> None:
    snap = snapshot()
    d = one(remove(), snap)
    assert d.outcome is Outcome.SKIPPED and d.reason is Reason.NOT_ENROLLED
    assert d.change is None and d.participant_count == START_COUNT
    assert snap.count(BATCH) == START_COUNT
    assert_sentence(d)


# ------------------------------------------------------------------------------------ applied + order


def test_add_applies_and_counts() -> None:
    snap = snapshot()
    d = one(add(), snap)
    assert d.outcome is Outcome.APPLIED and d.reason is Reason.ENROLLED and d.change is Reason.ENROLLED
    assert d.user_id == ALICE.user_id and d.course_id == COURSE
    assert d.participant_count == START_COUNT + 1
    assert snap.members == {(BATCH, ALICE.user_id)} and snap.count(BATCH) == START_COUNT + 1
    assert_sentence(d)


def test_add_then_remove_of_the_same_person_ends_out() -> None:
    snap = snapshot()
    ds = evaluate([add(), remove()], snap, LIMIT)
    assert [(d.outcome, d.reason) for d in ds] == [
        (Outcome.APPLIED, Reason.ENROLLED),
        (Outcome.APPLIED, Reason.UNENROLLED),
    ]
    assert [d.participant_count for d in ds] == [START_COUNT + 1, START_COUNT]
    assert [d.change for d in ds] == [Reason.ENROLLED, Reason.UNENROLLED]
    assert snap.members == set() and snap.count(BATCH) == START_COUNT


def test_remove_then_add_of_the_same_person_ends_in() -> None:
    snap = snapshot(members={(BATCH, ALICE.user_id)})
    ds = evaluate([remove(), add()], snap, LIMIT)
    assert [(d.outcome, d.reason) for d in ds] == [
        (Outcome.APPLIED, Reason.UNENROLLED),
        (Outcome.APPLIED, Reason.ENROLLED),
    ]
    assert [d.participant_count for d in ds] == [START_COUNT - 1, START_COUNT]
    assert snap.members == {(BATCH, ALICE.user_id)} and snap.count(BATCH) == START_COUNT


def test_sequence_threads_membership_and_counts() -> None:
    snap = snapshot(members={(BATCH, CAROL.user_id)})
    commands = [
        add(ALICE.user_id),  # 6
        add(BOB.state_id or "", id_type=IdType.STATE_ID),  # 7
        add(ALICE.user_id),  # skip, 7
        remove(CAROL.user_id),  # 6
        remove(CAROL.user_id),  # skip, 6
        add("u-ghost"),  # rejected
        remove(BOB.user_id),  # 5
        add(CAROL.user_id),  # 6
    ]
    ds = evaluate(commands, snap, LIMIT)
    assert [d.command for d in ds] == commands
    assert [d.reason for d in ds] == [
        Reason.ENROLLED,
        Reason.ENROLLED,
        Reason.ALREADY_ENROLLED,
        Reason.UNENROLLED,
        Reason.NOT_ENROLLED,
        Reason.USER_NOT_FOUND,
        Reason.UNENROLLED,
        Reason.ENROLLED,
    ]
    assert [d.participant_count for d in ds] == [6, 7, 7, 6, 6, None, 5, 6]
    assert snap.members == {(BATCH, ALICE.user_id), (BATCH, CAROL.user_id)}
    assert snap.count(BATCH) == 6
    for d in ds:
        assert_sentence(d)


def test_counts_are_kept_per_batch() -> None:
    other = batch("b-two", count=40)
    snap = snapshot(batch(), other)
    ds = evaluate(
        [add(ALICE.user_id), add(ALICE.user_id, batch_id="b-two"), add(BOB.user_id, batch_id="b-two")], snap, 1000
    )
    assert [d.participant_count for d in ds] == [START_COUNT + 1, 41, 42]
    assert ds[1].course_id == "course-of-b-two"
    assert snap.count(BATCH) == START_COUNT + 1 and snap.count("b-two") == 42


# --------------------------------------------------------------------------------------------- dry run


def test_dry_run_add_evaluates_but_changes_nothing() -> None:
    snap = snapshot()
    d = one(add(dry_run=True), snap)
    assert d.outcome is Outcome.APPLIED and d.reason is Reason.ENROLLED
    assert d.change is None
    assert d.participant_count == START_COUNT + 1  # what the count would be
    assert "would" in d.message
    assert_sentence(d)
    assert snap.members == set() and snap.count(BATCH) == START_COUNT


def test_dry_run_remove_evaluates_but_changes_nothing() -> None:
    snap = snapshot(members={(BATCH, ALICE.user_id)})
    d = one(remove(dry_run=True), snap)
    assert d.outcome is Outcome.APPLIED and d.reason is Reason.UNENROLLED
    assert d.change is None and d.participant_count == START_COUNT - 1
    assert "would" in d.message
    assert snap.members == {(BATCH, ALICE.user_id)} and snap.count(BATCH) == START_COUNT


def test_dry_run_sequence_does_not_thread_changes() -> None:
    """Each dry-run command sees the untouched snapshot: add then add again is applied twice."""
    snap = snapshot()
    ds = evaluate([add(dry_run=True), add(dry_run=True), remove(dry_run=True)], snap, LIMIT)
    assert [(d.outcome, d.reason) for d in ds] == [
        (Outcome.APPLIED, Reason.ENROLLED),
        (Outcome.APPLIED, Reason.ENROLLED),
        (Outcome.SKIPPED, Reason.NOT_ENROLLED),
    ]
    assert all(d.change is None for d in ds)
    assert [d.participant_count for d in ds] == [START_COUNT + 1, START_COUNT + 1, START_COUNT]
    assert snap.members == set() and snap.count(BATCH) == START_COUNT


def test_dry_run_still_reports_rejections_and_skips() -> None:
    snap = snapshot(batch(count=LIMIT), members={(BATCH, BOB.user_id)})
    ds = evaluate(
        [
            add("u-ghost", dry_run=True),
            add(INACTIVE.user_id, dry_run=True),
            add(BOB.user_id, dry_run=True),
            add(ALICE.user_id, dry_run=True, source=Source.UI),
        ],
        snap,
        LIMIT,
    )
    assert [d.reason for d in ds] == [
        Reason.USER_NOT_FOUND,
        Reason.USER_INACTIVE,
        Reason.ALREADY_ENROLLED,
        Reason.UI_LIMIT_REACHED,
    ]
    assert all(d.change is None for d in ds)
    assert snap.members == {(BATCH, BOB.user_id)} and snap.count(BATCH) == LIMIT


# ------------------------------------------------------------------------------------------- UI limit


def test_ui_add_at_limit_minus_one_is_allowed_and_reaches_the_limit() -> None:
    snap = snapshot(batch(count=LIMIT - 1))
    d = one(add(source=Source.UI), snap)
    assert d.outcome is Outcome.APPLIED and d.reason is Reason.ENROLLED
    assert d.participant_count == LIMIT and snap.count(BATCH) == LIMIT


def test_ui_add_at_the_limit_is_rejected() -> None:
    snap = snapshot(batch(count=LIMIT))
    d = one(add(source=Source.UI), snap)
    assert_rejected(d, Reason.UI_LIMIT_REACHED)
    assert d.user_id == ALICE.user_id
    assert str(LIMIT) in d.message
    assert "Please contact your state admin to add or remove participants from this batch" in d.message
    assert snap.members == set() and snap.count(BATCH) == LIMIT


def test_ui_adds_in_sequence_stop_at_the_limit() -> None:
    snap = snapshot(batch(count=LIMIT - 2))
    ds = evaluate([add(u.user_id, source=Source.UI) for u in (ALICE, BOB, CAROL)], snap, LIMIT)
    assert [d.reason for d in ds] == [Reason.ENROLLED, Reason.ENROLLED, Reason.UI_LIMIT_REACHED]
    assert [d.participant_count for d in ds] == [LIMIT - 1, LIMIT, None]
    assert snap.count(BATCH) == LIMIT


@pytest.mark.parametrize("count", [LIMIT, LIMIT + 1, 10 * LIMIT])
def test_backend_adds_are_not_limited(count: int) -> None:
    snap = snapshot(batch(count=count))
    ds = evaluate([add(ALICE.user_id), add(BOB.user_id)], snap, LIMIT)
    assert [d.reason for d in ds] == [Reason.ENROLLED, Reason.ENROLLED]
    assert [d.participant_count for d in ds] == [count + 1, count + 2]


def test_ui_remove_above_the_limit_is_allowed() -> None:
    snap = snapshot(batch(count=LIMIT + 3), members={(BATCH, ALICE.user_id)})
    d = one(remove(source=Source.UI), snap)
    assert d.outcome is Outcome.APPLIED and d.reason is Reason.UNENROLLED
    assert d.participant_count == LIMIT + 2


def test_ui_add_of_enrolled_user_at_the_limit_is_a_skip_not_a_rejection() -> None:
    d = one(add(source=Source.UI), snapshot(batch(count=LIMIT), members={(BATCH, ALICE.user_id)}))
    assert d.outcome is Outcome.SKIPPED and d.reason is Reason.ALREADY_ENROLLED


# ----------------------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("the_batch", "command", "expected"),
    [
        # Batch checks come before everything else, in their own order.
        (batch(enrollment_type="open", status="ended"), add(requested_by=PLAIN_USER), Reason.BATCH_NOT_INVITE_ONLY),
        (batch(status="ended"), add(requested_by=PLAIN_USER), Reason.BATCH_CLOSED),
        (batch(status="cancelled"), add("u-ghost", requested_by=ADMIN_OTHER_STATE), Reason.BATCH_CLOSED),
        (batch(status="ended", count=LIMIT), add(INACTIVE.user_id, source=Source.UI), Reason.BATCH_CLOSED),
        # Authorization before the person is even looked up.
        (batch(), add("u-ghost", requested_by=PLAIN_USER), Reason.NOT_AUTHORIZED),
        (batch(), add(FOREIGN.user_id, requested_by=ADMIN_INACTIVE), Reason.NOT_AUTHORIZED),
        (batch(count=LIMIT), add(INACTIVE.user_id, source=Source.UI, requested_by=PLAIN_USER), Reason.NOT_AUTHORIZED),
        # The person's state before their status.
        (batch(), add(user("x").user_id), Reason.USER_NOT_FOUND),
        (batch(count=LIMIT), add(INACTIVE.user_id, source=Source.UI), Reason.USER_INACTIVE),
    ],
)
def test_first_failing_rule_decides(the_batch: Batch, command: Command, expected: Reason) -> None:
    d = one(command, snapshot(the_batch))
    assert_rejected(d, expected)


def test_other_state_comes_before_inactive() -> None:
    foreign_idle = user("u-foreign-idle", state=OTHER_STATE, status="inactive")
    snap = snapshot()
    snap.users_by_id = {**snap.users_by_id, foreign_idle.user_id: foreign_idle}
    assert_rejected(one(add(foreign_idle.user_id), snap), Reason.USER_OTHER_STATE)


# ---------------------------------------------------------------------------------------- messages


def test_every_decision_has_a_message_sentence() -> None:
    """One of every reason, each with a non-empty sentence and the outcome the shared vocabulary gives it."""
    scenarios: list[tuple[Snapshot, Command]] = [
        (snapshot(), add(batch_id="nope")),
        (snapshot(batch(enrollment_type="open")), add()),
        (snapshot(batch(status="ended")), add()),
        (snapshot(), add(requested_by=PLAIN_USER)),
        (snapshot(), add("u-ghost")),
        (snapshot(), add("nope", id_type=IdType.STATE_ID)),
        (snapshot(), add(FOREIGN.user_id)),
        (snapshot(), add(INACTIVE.user_id)),
        (snapshot(batch(count=LIMIT)), add(source=Source.UI)),
        (snapshot(members={(BATCH, ALICE.user_id)}), add()),
        (snapshot(), remove()),
        (snapshot(), add()),
        (snapshot(members={(BATCH, ALICE.user_id)}), remove()),
        (snapshot(), add(dry_run=True)),
        (snapshot(members={(BATCH, ALICE.user_id)}), remove(dry_run=True)),
        (snapshot(members={(BATCH, ALICE.user_id)}, completed={(BATCH, ALICE.user_id)}), remove()),
    ]
    seen = set()
    for snap, c in scenarios:
        d = one(c, snap)
        assert d.command == c
        assert_sentence(d)
        assert d.outcome is outcome_of(d.reason), d
        seen.add(d.reason)
    assert seen == set(Reason)


# ---------------------------------------------------------------------------------------- completion rule


def test_a_participant_who_completed_the_course_is_not_removed_unless_the_upload_says_so() -> None:
    done = {(BATCH, ALICE.user_id)}
    snap = snapshot(members={(BATCH, ALICE.user_id)}, completed=done)
    refused = one(remove(), snap)
    assert_rejected(refused, Reason.COURSE_COMPLETED)
    assert refused.user_id == ALICE.user_id and (BATCH, ALICE.user_id) in snap.members
    applied = one(remove(include_completed=True), snap)
    assert applied.reason is Reason.UNENROLLED and (BATCH, ALICE.user_id) not in snap.members


def test_the_completion_rule_guards_removes_only_and_after_the_membership_check() -> None:
    done = {(BATCH, ALICE.user_id)}
    assert one(remove(), snapshot(completed=done)).reason is Reason.NOT_ENROLLED  # not in the batch: nothing to refuse
    assert one(add(), snapshot(completed=done)).reason is Reason.ENROLLED  # re-adding a completer is fine
    other = snapshot(members={(BATCH, ALICE.user_id)}, completed={("another-batch", ALICE.user_id)})
    assert one(remove(), other).reason is Reason.UNENROLLED  # completion counts in the batch it happened in


# ---------------------------------------------------------------------------------------- vocabulary


def test_every_reason_has_one_outcome_and_unknown_reasons_are_rejections() -> None:
    assert set(OUTCOME_OF) == set(Reason) | {"CHANGED_SINCE_PLAN"}  # the plan's refusal at apply time
    assert outcome_of("CHANGED_SINCE_PLAN") is Outcome.SKIPPED
    assert outcome_of("ENROLLED") is Outcome.APPLIED and outcome_of("NOT_ENROLLED") is Outcome.SKIPPED
    # Refusals made before publishing (file rows, undo drift) are not the processor's reasons.
    assert outcome_of("DUPLICATE_IN_FILE") is Outcome.REJECTED and outcome_of("CHANGED_SINCE") is Outcome.REJECTED


def test_id_type_values_are_the_enum_values() -> None:
    assert list(typing.get_args(IdTypeValue)) == [t.value for t in IdType]
