"""The token rules (enrolment.domain.tokens): who may manage whose tokens, expiry, refusal, recording a use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from enrolment.domain.model import ORG_ADMIN, User
from enrolment.domain.tokens import (
    DEFAULT_EXPIRY_DAYS,
    MAX_EXPIRY_DAYS,
    expiry_days,
    may_manage_tokens,
    needs_touch,
    presented_tokens,
    refusal,
    status,
)

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def user(user_id: str, state: str = "KA", *roles: str, active: bool = True) -> User:
    return User(user_id, state, "active" if active else "inactive", frozenset(roles))


OWNER = user("teacher-ka", "KA", "COURSE_MENTOR")


@pytest.mark.parametrize(
    ("actor", "allowed"),
    [
        (OWNER, True),  # the user themselves
        (user("admin-ka", "KA", ORG_ADMIN), True),  # an ORG_ADMIN of their state
        (user("admin-mh", "MH", ORG_ADMIN), False),  # an ORG_ADMIN of another state
        (user("mentor-ka", "KA", "COURSE_MENTOR"), False),  # same state, not an admin
        (user("public-ka", "KA", "PUBLIC"), False),
        (user("admin-ka", "KA", ORG_ADMIN, active=False), False),  # an inactive admin
        (user("teacher-ka", "KA", "COURSE_MENTOR", active=False), False),  # the owner, now inactive
        (None, False),  # nobody
    ],
)
def test_who_may_create_or_revoke_a_token(actor: User | None, allowed: bool) -> None:
    assert may_manage_tokens(actor, OWNER) is allowed


def test_an_admin_manages_an_admins_tokens_of_the_same_state_only() -> None:
    admin = user("admin-ka", "KA", ORG_ADMIN)
    assert may_manage_tokens(admin, user("admin2-ka", "KA", ORG_ADMIN))
    assert not may_manage_tokens(admin, user("admin-mh", "MH", ORG_ADMIN))


def test_expiry_days_default_and_bounds() -> None:
    assert DEFAULT_EXPIRY_DAYS == 90
    assert expiry_days("90") == 90 and expiry_days(" 7 ") == 7 and expiry_days(MAX_EXPIRY_DAYS) == MAX_EXPIRY_DAYS


@pytest.mark.parametrize("bad", ["0", "-1", "1.5", "abc", "", str(MAX_EXPIRY_DAYS + 1), "99999999999"])
def test_expiry_days_must_be_a_positive_whole_number(bad: str) -> None:
    with pytest.raises(ValueError, match=r"--expires-days must be a whole number of days from 1 to 3650"):
        expiry_days(bad)


def test_a_token_is_refused_once_revoked_or_expired() -> None:
    later = NOW + timedelta(days=90)
    assert status(None, later, NOW) == "active" and refusal(None, later, NOW) is None
    assert status(None, NOW, NOW) == "expired", "it expires at the instant expires_at is reached"
    gone = datetime(2026, 3, 1, 8, 30, tzinfo=timezone(timedelta(hours=5, minutes=30)))  # printed in UTC
    assert refusal(None, gone, gone + timedelta(seconds=1)) == (
        "This token expired on 2026-03-01 03:00 UTC; ask for a new one (participants api-tokens create, or "
        "/api/tokens)."
    )
    assert status(NOW, later, NOW) == "revoked"
    assert (refusal(gone, later, NOW) or "").startswith("This token was revoked on 2026-03-01 03:00 UTC; ")
    assert status(NOW, NOW - timedelta(days=1), NOW) == "revoked", "revoked wins over expired"


def test_a_use_is_recorded_at_most_once_a_minute() -> None:
    assert needs_touch(None, NOW)
    assert not needs_touch(NOW - timedelta(seconds=59), NOW)
    assert needs_touch(NOW - timedelta(minutes=1), NOW)
    assert needs_touch(NOW - timedelta(days=3), NOW)


@pytest.mark.parametrize(
    ("authorization", "user_token", "expected"),
    [
        ("Bearer abc", None, ["abc"]),
        ("bearer  abc ", None, ["abc"]),
        (None, "abc", ["abc"]),
        (None, "Bearer abc", ["abc"]),  # some clients prefix it
        ("Bearer abc", "abc", ["abc"]),  # the same token twice is one
        ("Bearer sunbird-api-key", "abc", ["sunbird-api-key", "abc"]),  # both looked up; unknown ones ignored
        ("Basic dXNlcjpwYXNz", None, []),
        ("Bearer ", "", []),
        (None, None, []),
    ],
)
def test_the_token_comes_from_either_header(
    authorization: str | None, user_token: str | None, expected: list[str]
) -> None:
    assert presented_tokens(authorization, user_token) == expected
