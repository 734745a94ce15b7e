"""The access rules: who may see or change a batch or an upload (pure, no store)."""

from __future__ import annotations

from enrolment.domain.access import (
    PASSWORD_MIN_LENGTH,
    Viewer,
    may_edit_batch,
    may_submit_upload,
    may_view_batch,
    may_view_upload,
    password_problem,
)
from enrolment.domain.model import COURSE_MENTOR, IMPLEMENTATION_TEAM, ORG_ADMIN, Batch, User

KA_BATCH = Batch("b-ka", "c1", "KA", "invite-only", "ongoing", frozenset({"mentor-ka"}), 3)
MH_BATCH = Batch("b-mh", "c1", "MH", "invite-only", "ongoing", frozenset({"mentor-mh"}), 3)


def viewer(user_id: str, state: str, *roles: str, status: str = "active", serves: str = "") -> Viewer:
    return Viewer(User(user_id, state, status, frozenset(roles)), frozenset(s for s in serves.split(",") if s))


MENTOR = viewer("mentor-ka", "KA", COURSE_MENTOR)
ADMIN = viewer("admin-ka", "KA", ORG_ADMIN)
TEAM = viewer("team-1", "KA", IMPLEMENTATION_TEAM, serves="MH")
NOBODY = viewer("someone", "KA", "PUBLIC")


def test_a_mentor_sees_and_edits_only_the_batches_they_mentor() -> None:
    assert may_view_batch(MENTOR, KA_BATCH) and may_edit_batch(MENTOR, KA_BATCH)
    assert not may_view_batch(MENTOR, MH_BATCH) and not may_edit_batch(MENTOR, MH_BATCH)
    other_ka = Batch("b-ka2", "c1", "KA", "invite-only", "ongoing", frozenset({"x"}), 0)
    assert not may_view_batch(MENTOR, other_ka)


def test_an_admin_sees_everything_of_their_state_only() -> None:
    assert may_view_batch(ADMIN, KA_BATCH) and may_edit_batch(ADMIN, KA_BATCH)
    assert not may_view_batch(ADMIN, MH_BATCH) and not may_edit_batch(ADMIN, MH_BATCH)
    assert may_view_upload(ADMIN, KA_BATCH, "someone-else")
    assert not may_view_upload(ADMIN, MH_BATCH, "someone-else")
    assert ADMIN.admin_states == {"KA"} and ADMIN.upload_states == {"KA"}


def test_the_implementation_team_sees_and_submits_uploads_of_the_states_it_serves_but_no_batch_page() -> None:
    assert may_view_upload(TEAM, MH_BATCH, "admin-mh") and may_submit_upload(TEAM, MH_BATCH)
    assert not may_view_upload(TEAM, KA_BATCH, "admin-ka") and not may_submit_upload(TEAM, KA_BATCH)
    assert not may_view_batch(TEAM, MH_BATCH) and not may_edit_batch(TEAM, MH_BATCH)
    # Served states without the role give nothing.
    assert not may_view_upload(viewer("x", "KA", "PUBLIC", serves="MH"), MH_BATCH, "admin-mh")


def test_anyone_sees_their_own_uploads_and_nothing_else() -> None:
    assert may_view_upload(NOBODY, MH_BATCH, "someone")
    assert not may_view_upload(NOBODY, MH_BATCH, "admin-mh") and not may_view_upload(NOBODY, None, None)
    assert not may_view_batch(NOBODY, KA_BATCH) and not may_submit_upload(NOBODY, KA_BATCH)


def test_an_inactive_user_may_do_nothing() -> None:
    gone = viewer("admin-ka", "KA", ORG_ADMIN, status="inactive")
    assert not may_view_batch(gone, KA_BATCH) and not may_edit_batch(gone, KA_BATCH)
    assert not may_view_upload(gone, KA_BATCH, "admin-ka")
    assert gone.admin_states == frozenset() and gone.upload_states == frozenset()


def test_password_rules_say_why_in_a_sentence() -> None:
    assert password_problem("") == "The password is empty."
    assert "too short" in (password_problem("x" * (PASSWORD_MIN_LENGTH - 1)) or "")
    assert password_problem("x" * PASSWORD_MIN_LENGTH) is None
    assert "too long" in (password_problem("x" * 5000) or "")
