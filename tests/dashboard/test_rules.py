"""Page rules: the Edit Batch limit, the edit diff, paging and CSV rows (pure, no I/O)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from dashboard.queries import Participant
from dashboard.rules import (
    CSV_HEADER,
    EDIT_LIMIT_MESSAGE,
    SUNBIRD_CSV_HEADER,
    EditPlan,
    EditState,
    Profile,
    change_summary,
    csv_row,
    edit_allowed,
    edit_problem,
    edit_state,
    like_pattern,
    page_count,
    plan_marked,
    progress_status,
    report_date,
    sunbird_row,
    table_query,
)
from dashboard.web.downloads import csv_chunks, sunbird_rows
from dashboard.web.render import href
from enrolment.settings import Settings

LIMIT = Settings.from_env().ui_participant_limit


def test_edit_allowed_up_to_and_including_the_limit() -> None:
    assert edit_allowed(0, LIMIT)
    assert edit_allowed(LIMIT, LIMIT)
    assert not edit_allowed(LIMIT + 1, LIMIT)
    assert edit_allowed(3, 3) and not edit_allowed(4, 3)


def _state(
    count: int, *, invite_only: bool = True, status: str = "ongoing", mentor: str = "m1", authorized: bool = True
) -> EditState:
    return edit_state(count, LIMIT, invite_only=invite_only, status=status, mentor=mentor, authorized=authorized)


def test_edit_state_above_the_limit_shows_the_exact_message_whoever_asks() -> None:
    for st in (_state(LIMIT + 1), _state(LIMIT + 1, authorized=False), _state(LIMIT + 1, status="ended")):
        assert st.enabled is False and st.limit_reached is True
        assert st.message == EDIT_LIMIT_MESSAGE
    assert EDIT_LIMIT_MESSAGE == "Please contact your state admin to add or remove participants from this batch"


def test_edit_state_at_the_limit_is_enabled_with_no_room_left() -> None:
    st = _state(LIMIT)
    assert st.enabled and st.message is None and st.room == 0


@pytest.mark.parametrize(
    ("st", "words"),
    [
        (_state(1, invite_only=False), "open to everyone"),
        (_state(1, status="ended"), "is ended"),
        (_state(1, authorized=False), "neither a mentor"),
    ],
)
def test_edit_state_other_reasons_are_sentences(st: EditState, words: str) -> None:
    assert not st.enabled and not st.limit_reached and words in (st.message or "")


def test_plan_marked_touches_only_the_people_marked() -> None:
    plan = plan_marked(adds=["x", "a"], removes=["b"], current_members=["a", "b", "c", "late"])
    assert plan == EditPlan(adds=("x",), removes=("b",))  # c and late were not marked: they stay
    # Nothing marked changes nothing, whatever the batch holds: no one is removed by omission.
    assert plan_marked(adds=[], removes=[], current_members=["a", "b"]).empty
    # Someone marked who left meanwhile is not removed again; someone marked who joined meanwhile is not re-added.
    assert plan_marked(adds=["y"], removes=["b"], current_members=["a", "y"]).empty


def test_change_summary_names_the_counts() -> None:
    assert change_summary(EditPlan(adds=("x", "y"), removes=("b",))) == "add 2, remove 1"
    assert change_summary(EditPlan(adds=(), removes=("b",))) == "remove 1"
    assert change_summary(EditPlan(adds=("x",), removes=())) == "add 1"
    assert change_summary(EditPlan(adds=(), removes=())) == "no change"


def test_edit_problem_when_the_change_goes_over_the_limit() -> None:
    assert edit_problem(LIMIT - 1, EditPlan(adds=("x",), removes=()), LIMIT) is None
    msg = edit_problem(LIMIT - 1, EditPlan(adds=("x", "y"), removes=()), LIMIT)
    assert msg is not None and "can take 1 more participant " in msg and EDIT_LIMIT_MESSAGE in msg
    assert edit_problem(LIMIT, EditPlan(adds=("x",), removes=("a",)), LIMIT) is None
    assert edit_problem(LIMIT + 5, EditPlan(adds=(), removes=("a",)), LIMIT) is None


def test_table_query_normalises_untrusted_input() -> None:
    tq = table_query(0, 7, "drop table", "DESC", "  Ana   Rao ")
    assert (tq.page, tq.size, tq.sort, tq.descending, tq.q) == (1, 50, "name", True, "Ana Rao")
    assert table_query(3, 25, "progress", "asc", None).offset == 50
    assert page_count(0, 50) == 1 and page_count(10_000, 50) == 200 and page_count(10_001, 50) == 201


def test_like_pattern_escapes_wildcards() -> None:
    assert like_pattern("50%_a\\b") == "%50\\%\\_a\\\\b%"


def test_csv_row_formats_times_and_the_download_neutralises_formulas() -> None:
    when = datetime(2026, 9, 1, 10, 30, 5, tzinfo=UTC)
    row = csv_row("=HYPERLINK(1)", "+u1", "-S1", when, "@ui", 75, None)
    assert row == ["=HYPERLINK(1)", "+u1", "-S1", "2026-09-01T10:30:05Z", "@ui", "75", ""]
    assert csv_row(None, "u2", None, when, "backend", None, when)[5:] == ["0", "2026-09-01T10:30:05Z"]
    odd = Participant("\u200b=u1", "\uff1dHYPERLINK(1)", "\ufeff-S1", when, "@ui", 75, None)
    data = b"".join(csv_chunks(iter([odd]))).decode("utf-8").removeprefix("\ufeff")
    (_header, got) = list(csv.reader(io.StringIO(data)))
    assert got == [
        "'\uff1dHYPERLINK(1)",
        "'\u200b=u1",
        "'\ufeff-S1",
        "2026-09-01T10:30:05Z",
        "'@ui",
        "75",
        "",
        *[""] * 7,
    ]
    assert csv_row("n", "u", None, when, "ui", 1, None, "c1", "b1", None, "=D")[7:] == ["c1", "b1", "", "=D"]


def test_the_page_shows_completed_for_a_completer_as_sunbird_does() -> None:
    done = datetime(2026, 9, 1, tzinfo=UTC)
    assert progress_status(100, done) == "Completed" and progress_status(40, None) == "40%"
    assert progress_status(None, None) == "0%"


def test_sunbird_rows_have_sunbird_names_order_percent_and_indian_dates() -> None:
    assert SUNBIRD_CSV_HEADER == (  # CourseMetricsJob's columns, in its order
        "External ID", "User ID", "User Name", "Email ID", "Mobile Number", "Organisation Name", "State Name",
        "District Name", "School UDISE Code", "School Name", "Block Name", "Enrolment Date", "Course Progress",
        "Completion Date", "Certificate Status",
    )  # fmt: skip
    late = datetime(2026, 9, 1, 20, 0, tzinfo=UTC)  # 2 September in India
    profile = Profile("Org", "Dist", "Blk", "School", "2922")
    row = sunbird_row("KA-1", "u1", "Asha", profile, "Karnataka", late, 40, None)
    assert dict(zip(SUNBIRD_CSV_HEADER, row, strict=True)) == {
        "External ID": "KA-1", "User ID": "u1", "User Name": "Asha", "Email ID": "", "Mobile Number": "",
        "Organisation Name": "Org", "State Name": "Karnataka", "District Name": "Dist", "School UDISE Code": "2922",
        "School Name": "School", "Block Name": "Blk", "Enrolment Date": "02/09/2026", "Course Progress": "40%",
        "Completion Date": "", "Certificate Status": "",
    }  # fmt: skip
    assert report_date(datetime(2026, 12, 31, 18, 29, tzinfo=UTC)) == "31/12/2026"
    assert sunbird_row(None, "u2", None, Profile(), "KA", late, None, late)[11:] == [
        "02/09/2026",
        "0%",
        "02/09/2026",
        "",
    ]
    odd = Participant("u3", "=cmd()", None, late, "ui", 100, late, org_name="+Org")
    data = b"".join(csv_chunks(iter([odd]), row=sunbird_rows("KA"), header=SUNBIRD_CSV_HEADER)).decode("utf-8")
    (header, got) = list(csv.reader(io.StringIO(data.removeprefix("\ufeff"))))
    assert tuple(header) == SUNBIRD_CSV_HEADER and (got[2], got[5]) == ("'=cmd()", "'+Org") and got[12] == "100%"


def _participants(n: int) -> Iterator[Participant]:
    when = datetime(2026, 9, 1, tzinfo=UTC)
    for i in range(n):
        yield Participant(f"u{i}", f"Name {i}", f"S{i}", when, "backend", i % 101, None)


def test_csv_chunks_stream_a_bom_header_and_every_row() -> None:
    chunks = list(csv_chunks(_participants(2500), chunk_rows=1000))
    assert len(chunks) == 3  # streamed in pieces, not built whole
    data = b"".join(chunks).decode("utf-8")
    assert data.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(data.removeprefix("\ufeff"))))
    assert tuple(rows[0]) == CSV_HEADER
    assert len(rows) == 2501 and rows[-1][1] == "u2499" and rows[-1][5] == str(2499 % 101)


def test_href_keeps_only_given_parameters() -> None:
    assert href("/courses") == "/courses"
    assert href("/batches/b1", mentor="m 1", q="", page=None) == "/batches/b1?mentor=m+1"
