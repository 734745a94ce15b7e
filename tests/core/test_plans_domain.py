"""The plan rules (enrolment/domain/plans.py), without Kafka or a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from enrolment.domain.model import IMPLEMENTATION_TEAM, ORG_ADMIN, User
from enrolment.domain.plans import (
    NOT_STATE_ADMIN,
    NOT_WAITING,
    OWN_TEAM_PLAN,
    PLAN_EXPIRED,
    REPEATED_FILE,
    Applied,
    PlanStatus,
    StateSettings,
    approver_problem,
    breaker_trips,
    decision_problem,
    effective_status,
    plan_counts,
    repeat_problem,
    sync_diff,
    team_needs_approval,
)

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=7)
ADMIN = User("admin-ka", "KA", "active", frozenset({ORG_ADMIN}))
OTHER_ADMIN = User("admin-ka-2", "KA", "active", frozenset({ORG_ADMIN}))
MH_ADMIN = User("admin-mh", "MH", "active", frozenset({ORG_ADMIN}))
TEAM = User("team-1", "KA", "active", frozenset({IMPLEMENTATION_TEAM}))


def test_only_a_waiting_plan_before_its_expiry_is_decided() -> None:
    assert decision_problem("p", "waiting", LATER, NOW) is None
    for status in ("approved", "rejected", "applied", "expired"):
        problem = decision_problem("p", status, LATER, NOW)
        assert problem is not None and problem.code in (NOT_WAITING, PLAN_EXPIRED), status
    expired = decision_problem("p", "waiting", NOW, NOW)
    assert expired is not None and expired.code == PLAN_EXPIRED and "expired" in expired.message


def test_a_waiting_plan_past_its_expiry_is_expired_and_other_statuses_stay() -> None:
    assert effective_status("waiting", NOW - timedelta(seconds=1), NOW) is PlanStatus.EXPIRED
    assert effective_status("waiting", LATER, NOW) is PlanStatus.WAITING
    assert effective_status("applied", NOW - timedelta(days=30), NOW) is PlanStatus.APPLIED


def test_a_state_admin_of_the_batchs_state_decides() -> None:
    assert approver_problem(ADMIN, "KA", "admin-ka", None) is None
    assert approver_problem(ADMIN, "KA", "admin-ka", "BREAKER") is None  # their own breaker-tripped sync
    for who in (MH_ADMIN, TEAM, None, User("admin-x", "KA", "inactive", frozenset({ORG_ADMIN}))):
        problem = approver_problem(who, "KA", "admin-ka", None)
        assert problem is not None and problem.code == NOT_STATE_ADMIN, who


def test_the_teams_plan_needs_an_admin_other_than_its_maker() -> None:
    both = User("team-admin", "KA", "active", frozenset({ORG_ADMIN, IMPLEMENTATION_TEAM}))
    problem = approver_problem(both, "KA", "team-admin", "IMPLEMENTATION_TEAM")
    assert problem is not None and problem.code == OWN_TEAM_PLAN
    assert approver_problem(OTHER_ADMIN, "KA", "team-admin", "IMPLEMENTATION_TEAM") is None


def test_the_team_needs_approval_where_the_state_says_so_and_only_the_team() -> None:
    assert team_needs_approval(TEAM, False, StateSettings())
    assert not team_needs_approval(TEAM, False, StateSettings(team_approval_required=False))
    assert not team_needs_approval(TEAM, True, StateSettings())  # also a mentor of the batch
    assert not team_needs_approval(ADMIN, True, StateSettings())


def test_the_breaker_trips_over_the_percentage_or_the_maximum() -> None:
    assert breaker_trips(2000, 10000, 10, 500).tripped
    assert breaker_trips(1001, 10000, 10, 5000).tripped  # 10.01 % > 10 %
    assert not breaker_trips(1000, 10000, 10, 5000).tripped  # exactly 10 %: not more than
    assert breaker_trips(501, 100000, 10, 500).tripped  # 0.5 % but more than 500 people
    assert not breaker_trips(500, 100000, 10, 500).tripped
    assert not breaker_trips(0, 0, 10, 500).tripped
    assert "2,000 of 10,000" in breaker_trips(2000, 10000, 10, 500).sentence()


def test_sync_diff_adds_the_missing_and_removes_the_unnamed() -> None:
    diff = sync_diff(["a", "b", "c"], {"b", "c", "d", "e"})
    assert (diff.adds, diff.removes, diff.unchanged) == ({"a"}, {"d", "e"}, {"b", "c"})
    assert sync_diff([], {"x"}).removes == {"x"}


def test_the_same_file_within_30_days_is_refused_unless_allowed() -> None:
    before = Applied("u-1", NOW - timedelta(days=3), "admin-ka", 9808, 0)
    problem = repeat_problem(before, NOW, allow_repeat=False)
    assert problem is not None and problem.code == REPEATED_FILE
    assert "applied as upload u-1 on 2026-11-29 by admin-ka: 9,808 enrolled" in problem.message
    assert repeat_problem(before, NOW, allow_repeat=True) is None
    assert repeat_problem(None, NOW, allow_repeat=False) is None
    old = Applied("u-0", NOW - timedelta(days=31), "admin-ka", 5, 0)
    assert repeat_problem(old, NOW, allow_repeat=False) is None
    removed = repeat_problem(Applied("u-2", NOW, "admin-ka", 0, 12), NOW, False)
    assert removed is not None and "12 removed" in removed.message and "enrolled" not in removed.message


def test_plan_counts_by_change_outcome_and_reason() -> None:
    counts = plan_counts(
        [
            ("ADD", "APPLIED", "ENROLLED"),
            ("ADD", "SKIPPED", "ALREADY_ENROLLED"),
            ("REMOVE", "APPLIED", "UNENROLLED"),
            ("ADD", "REJECTED", "USER_INACTIVE"),
        ]
    )
    assert (counts["rows"], counts["adds"], counts["removes"], counts["unchanged"]) == (4, 1, 1, 1)
    assert counts["outcomes"] == {"APPLIED": 2, "REJECTED": 1, "SKIPPED": 1}
