"""Who may see or act on a batch or an upload: the pure rules behind every dashboard and API route.

A signed-in person (or an API token's user) is a :class:`Viewer`: the user's row plus the states an
implementation team member serves.  An inactive user may do nothing.  The rules:

- COURSE_MENTOR (any user listed as a batch's mentor): sees and edits the batches they mentor, and their uploads;
- ORG_ADMIN: sees and edits every batch of their own state, and every upload to one;
- IMPLEMENTATION_TEAM: sees the uploads to batches of the states it serves (and may submit uploads there);
- everyone sees the uploads they requested themselves.

Routes answer 404 for an object the viewer may not see (so its existence is not confirmed) and 403 for an
action on one they may see but not change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from enrolment.domain.model import IMPLEMENTATION_TEAM, ORG_ADMIN, Batch, User
from enrolment.domain.rules import is_authorized


@dataclass(frozen=True, slots=True)
class Viewer:
    """A proven identity: the user and, for the implementation team, the states served."""

    user: User
    serves: frozenset[str] = field(default_factory=frozenset)

    @property
    def user_id(self) -> str:
        return self.user.user_id

    @property
    def active(self) -> bool:
        return self.user.status == "active"

    @property
    def admin_states(self) -> frozenset[str]:
        """The states whose batches this viewer sees in full (ORG_ADMIN of their own state)."""
        return frozenset({self.user.state}) if self.active and ORG_ADMIN in self.user.roles else frozenset()

    @property
    def upload_states(self) -> frozenset[str]:
        """The states whose uploads this viewer sees: their admin state and the states they serve."""
        served = self.serves if self.active and IMPLEMENTATION_TEAM in self.user.roles else frozenset()
        return self.admin_states | served


def may_view_batch(viewer: Viewer, batch: Batch) -> bool:
    """Its page, participants, CSV and Edit Batch state: an ORG_ADMIN of its state or one of its mentors."""
    return viewer.active and (batch.state in viewer.admin_states or viewer.user_id in batch.mentors)


def may_edit_batch(viewer: Viewer, batch: Batch) -> bool:
    """Change participants from the dashboard: the processor's own rule (ORG_ADMIN of the state, or a mentor)."""
    return is_authorized(viewer.user, batch)


def may_submit_upload(viewer: Viewer, batch: Batch) -> bool:
    """Send a file of participants to the batch: whoever may edit it, or the implementation team of its state."""
    if may_edit_batch(viewer, batch):
        return True
    return viewer.active and IMPLEMENTATION_TEAM in viewer.user.roles and batch.state in viewer.serves


def may_view_upload(viewer: Viewer, batch: Batch | None, requested_by: str | None) -> bool:
    """An upload: its requester, whoever may see its batch, and the admins and teams of the batch's state."""
    if not viewer.active:
        return False
    if requested_by is not None and requested_by == viewer.user_id:
        return True
    if batch is None:
        return False
    return may_view_batch(viewer, batch) or batch.state in viewer.upload_states


def may_know_user(viewer: Viewer, owner: User) -> bool:
    """Whether a route may confirm that ``owner`` exists (else 404): themselves, or a user of a state the viewer
    administers or serves (whose uploads name their requesters anyway)."""
    return viewer.active and (owner.user_id == viewer.user_id or owner.state in viewer.upload_states)


PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 1024  # argon2 takes any length; this only bounds the work one request can ask for


def password_problem(password: str) -> str | None:
    """Why a new password cannot be used, as a sentence; None when it can."""
    if not password.strip():
        return "The password is empty."
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"The password is too short: use at least {PASSWORD_MIN_LENGTH} characters."
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"The password is too long: use at most {PASSWORD_MAX_LENGTH} characters."
    return None
