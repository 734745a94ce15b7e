"""Pure rules of the pages: the Edit Batch limit, the edit diff, table paging and sorting, CSV rows.

No I/O here, so the rules the issue states are unit-tested directly and the routes stay thin.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

from enrolment.domain.model import OPEN_STATUSES

EDIT_LIMIT_MESSAGE = "Please contact your state admin to add or remove participants from this batch"


def edit_allowed(count: int, limit: int) -> bool:
    """Invite-only batches are sized for the UI up to ``limit``; above it only the backend may change them."""
    return count <= limit


@dataclass(frozen=True, slots=True)
class EditState:
    """What the Edit Batch page shows: whether the participant controls work, and why not."""

    enabled: bool
    message: str | None
    limit_reached: bool
    room: int  # how many more the UI may add


def edit_state(count: int, limit: int, *, invite_only: bool, status: str, mentor: str, authorized: bool) -> EditState:
    """The first rule that fails decides the message; the participant limit comes first, whoever asks."""
    room = max(limit - count, 0)
    if not edit_allowed(count, limit):
        return EditState(False, EDIT_LIMIT_MESSAGE, True, 0)
    if not invite_only:
        return EditState(False, "This batch is open to everyone, so it has no participant list to edit.", False, 0)
    if status not in OPEN_STATUSES:
        return EditState(False, f"This batch is {status}, so its participants can no longer change.", False, 0)
    if not authorized:
        return EditState(
            False,
            f"{mentor} is neither a mentor of this batch nor an admin of its state, so cannot change its participants.",
            False,
            room,
        )
    return EditState(True, None, False, room)


@dataclass(frozen=True, slots=True)
class EditPlan:
    adds: tuple[str, ...]
    removes: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.adds and not self.removes


def plan_marked(adds: Iterable[str], removes: Iterable[str], current_members: Iterable[str]) -> EditPlan:
    """What the marks on the Edit Batch page change: only people marked are touched, nobody by omission.

    A person marked "remove" who is no longer a member, or marked "add" who already is one, changes nothing.
    """
    current = set(current_members)
    return EditPlan(adds=tuple(sorted(set(adds) - current)), removes=tuple(sorted(set(removes) & current)))


def change_summary(plan: EditPlan) -> str:
    """The confirmation's headline, e.g. "add 2, remove 1" (a side with nobody is left out)."""
    parts = [f"{verb} {len(people)}" for verb, people in (("add", plan.adds), ("remove", plan.removes)) if people]
    return ", ".join(parts) or "no change"


def edit_problem(count: int, plan: EditPlan, limit: int) -> str | None:
    """A sentence when the change would take the batch over the UI limit; None when it fits."""
    after = count - len(plan.removes) + len(plan.adds)
    if plan.adds and after > limit:
        room = max(limit - count + len(plan.removes), 0)
        return (
            f"This batch can take {room} more participant{'s' if room != 1 else ''} from here and you selected "
            f"{len(plan.adds)}. {EDIT_LIMIT_MESSAGE}."
        )
    return None


# ------------------------------------------------------------------------------------------ the table

SORT_KEYS: tuple[str, ...] = ("name", "user_id", "state_id", "enrolled_at", "added_via", "progress", "completed_at")
PAGE_SIZES: tuple[int, ...] = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
MAX_QUERY_LENGTH = 100


@dataclass(frozen=True, slots=True)
class TableQuery:
    page: int
    size: int
    sort: str
    descending: bool
    q: str

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size

    @property
    def direction(self) -> str:
        return "desc" if self.descending else "asc"


def table_query(
    page: int | None, size: int | None, sort: str | None, direction: str | None, q: str | None
) -> TableQuery:
    """Normalises user-supplied paging: unknown sort keys fall back to name, sizes to the nearest allowed."""
    size = size if size in PAGE_SIZES else DEFAULT_PAGE_SIZE
    key = sort if sort in SORT_KEYS else "name"
    text = " ".join((q or "").split())[:MAX_QUERY_LENGTH]
    return TableQuery(max(page or 1, 1), size, key, (direction or "").lower() == "desc", text)


def page_count(total: int, size: int) -> int:
    return max((total + size - 1) // size, 1)


def like_pattern(q: str) -> str:
    """A LIKE pattern matching ``q`` literally anywhere (the user's % and _ are not wildcards)."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# ---------------------------------------------------------------------------------------------- CSV

CSV_HEADER: tuple[str, ...] = (
    "name",
    "user_id",
    "state_id",
    "enrolled_at",
    "added_via",
    "progress",
    "completed_at",
    # appended (so scripts reading the first columns by position keep working): the state report's columns
    "course_id",
    "batch_id",
    "org_name",
    "district",
    "block",
    "school_name",
    "school_udise",
)
# Sunbird's course progress report (sunbird-data-products CourseMetricsJob), its names and order.  We hold no
# e-mail, mobile number or certificate: those columns are kept (scripts read columns by position) and left empty.
SUNBIRD_CSV_HEADER: tuple[str, ...] = (
    "External ID",
    "User ID",
    "User Name",
    "Email ID",
    "Mobile Number",
    "Organisation Name",
    "State Name",
    "District Name",
    "School UDISE Code",
    "School Name",
    "Block Name",
    "Enrolment Date",
    "Course Progress",
    "Completion Date",
    "Certificate Status",
)
# Report dates are the learners' calendar dates: India Standard Time (UTC+05:30 all year, no DST).
IST = timezone(timedelta(hours=5, minutes=30), "IST")


def iso(value: datetime | None) -> str:
    """UTC, second precision, 'Z' suffix: what spreadsheets and scripts both read."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def shown_time(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def csv_row(
    name: str | None,
    user_id: str,
    state_id: str | None,
    enrolled_at: datetime | None,
    added_via: str,
    progress: int | None,
    completed_at: datetime | None,
    *more: str | None,
) -> list[str]:
    """One participant as CSV cells (no progress yet = 0), then ``more`` (course, batch, profile) as given;
    the CSV writer (enrolment.csvsafe) guards every cell."""
    return [
        name or "",
        user_id,
        state_id or "",
        iso(enrolled_at),
        added_via,
        str(progress if progress is not None else 0),
        iso(completed_at),
        *(m or "" for m in more),
    ]


def report_date(value: datetime | None) -> str:
    """Sunbird's report date, ``dd/MM/yyyy``, in India Standard Time; empty for none."""
    return "" if value is None else value.astimezone(IST).strftime("%d/%m/%Y")


@dataclass(frozen=True, slots=True)
class Profile:
    """Where a learner works (users import): the state report's organisation, district, block and school."""

    org_name: str | None = None
    district: str | None = None
    block: str | None = None
    school_name: str | None = None
    school_udise: str | None = None


def sunbird_row(
    state_id: str | None,
    user_id: str,
    name: str | None,
    profile: Profile,
    state_name: str,
    enrolled_at: datetime | None,
    progress: int | None,
    completed_at: datetime | None,
) -> list[str]:
    """One participant in SUNBIRD_CSV_HEADER's order: progress as ``N%``, dates as ``dd/MM/yyyy``; e-mail,
    mobile and certificate empty (not ours to hold)."""
    return [
        state_id or "",
        user_id,
        name or "",
        "",
        "",
        profile.org_name or "",
        state_name,
        profile.district or "",
        profile.school_udise or "",
        profile.school_name or "",
        profile.block or "",
        report_date(enrolled_at),
        progress_label(progress),
        report_date(completed_at),
        "",
    ]


def progress_label(progress: int | None) -> str:
    return f"{progress if progress is not None else 0}%"


def progress_status(progress: int | None, completed_at: datetime | None) -> str:
    """The batch page's status as Sunbird's course dashboard shows it: `Completed` once completed, else `N%`."""
    return "Completed" if completed_at is not None else progress_label(progress)


def percent(part: int, whole: int | None) -> int:
    """Share for a progress bar, 0..100 (an unknown whole shows 0)."""
    if not whole:
        return 0
    return max(0, min(100, round(100 * part / whole)))
