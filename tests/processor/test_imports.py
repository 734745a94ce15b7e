"""Reference-data imports (users, course batches) against the real PostgreSQL.

Every test builds its ids and state codes from the ``unique`` fixture and deletes its rows afterwards, so
it never collides with other data in the shared database.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, text

from processor.imports import (
    ImportFileError,
    ImportReport,
    RowError,
    format_report,
    import_batches,
    import_users,
)

pytestmark = pytest.mark.integration

USERS_HEADER = "user_id,state_id,state,name,roles,status"
BATCHES_HEADER = "batch_id,course_id,course_name,state,enrollment_type,status,start_date,end_date,mentors"


def _file(lines: list[str], *, newline: str = "\n", bom: bool = False) -> io.BytesIO:
    data = newline.join(lines) + newline
    return io.BytesIO(("\ufeff" if bom else "").encode() + data.encode("utf-8"))


def _reasons(report: ImportReport) -> list[tuple[int, str]]:
    return [(e.line, e.reason) for e in report.errors]


@pytest.fixture()
def states(engine: Engine, unique: str) -> Iterator[tuple[str, str]]:
    """Two state codes private to the test; everything in them is deleted afterwards."""
    codes = (f"A{unique}".upper(), f"B{unique}".upper())
    yield codes
    with engine.begin() as conn:
        params = {"codes": list(codes)}
        conn.execute(
            text(
                "DELETE FROM batch_mentors WHERE batch_id IN "
                "(SELECT batch_id FROM course_batches WHERE state = ANY(:codes))"
            ),
            params,
        )
        conn.execute(text("DELETE FROM course_batches WHERE state = ANY(:codes)"), params)
        conn.execute(text("DELETE FROM users WHERE state = ANY(:codes)"), params)
        conn.execute(text("DELETE FROM states WHERE code = ANY(:codes)"), params)


def _column(conn: Connection, sql: str, state: str) -> dict[str, object]:
    """{first column: second column} of a two-column query over one state."""
    return {str(r[0]): r[1] for r in conn.execute(text(sql), {"s": state})}


def _users_fingerprint(engine: Engine, codes: tuple[str, ...]) -> tuple[int, str]:
    """Row count plus a digest of every row's physical version (xmin, ctid) and updated_at."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*), md5(string_agg(user_id || ':' || xmin::text || ':' || ctid::text || ':' "
                "|| updated_at::text, ',' ORDER BY user_id)) FROM users WHERE state = ANY(:codes)"
            ),
            {"codes": list(codes)},
        ).one()
    return int(row[0]), str(row[1])


# ------------------------------------------------------------------------------------------------ users


def test_100k_users_import_then_rerun_changes_nothing(
    engine: Engine, unique: str, states: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ka, mh = states
    lines = [USERS_HEADER]
    for i in range(1, 100_001):
        state = ka if i % 2 else mh
        status = "inactive" if i % 50 == 0 else "active"
        roles = "COURSE_MENTOR;PUBLIC" if i % 1000 == 0 else "PUBLIC"
        lines.append(f"{unique}-{i:06d},{state}-T{i:06d},{state},Teacher {i},{roles},{status}")
    data = _file(lines, newline="\r\n", bom=True).getvalue()

    t0 = time.perf_counter()
    first = import_users(engine, io.BytesIO(data))
    first_s = time.perf_counter() - t0
    assert first == ImportReport(rows_read=100_000, inserted=100_000, updated=0, unchanged=0, errors=[])
    before = _users_fingerprint(engine, states)
    assert before[0] == 100_000

    t0 = time.perf_counter()
    second = import_users(engine, io.BytesIO(data))
    second_s = time.perf_counter() - t0
    assert second == ImportReport(rows_read=100_000, inserted=0, updated=0, unchanged=100_000, errors=[])
    # No row was rewritten: same tuple versions, same updated_at.
    assert _users_fingerprint(engine, states) == before

    with capsys.disabled():
        print(f"\n100k users import: first run {first_s:.2f}s, re-run {second_s:.2f}s")
    assert first_s < 30 and second_s < 30  # "a few seconds" in practice; generous for slow CI boxes

    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT state, state_id, name, roles, status FROM users WHERE user_id = :u"),
            {"u": f"{unique}-001000"},
        ).one()
    assert tuple(row) == (mh, f"{mh}-T001000", "Teacher 1000", ["COURSE_MENTOR", "PUBLIC"], "inactive")


def test_users_changed_rows_are_updated_and_only_they_move_updated_at(
    engine: Engine, unique: str, states: tuple[str, str]
) -> None:
    ka, _ = states
    rows = [f"{unique}-{i},{ka}-{i},{ka},Name {i},PUBLIC,active" for i in range(1, 6)]
    assert import_users(engine, _file([USERS_HEADER, *rows])).inserted == 5
    with engine.connect() as conn:
        stamps = _column(conn, "SELECT user_id, updated_at FROM users WHERE state = :s", ka)

    rows[1] = f"{unique}-2,{ka}-2,{ka},Renamed,PUBLIC,active"
    rows[3] = f"{unique}-4,{ka}-4,{ka},Name 4,public;org_admin,INACTIVE"
    rows.append(f"{unique}-6,,{ka},New,,")
    report = import_users(engine, _file([USERS_HEADER, *rows]))
    assert report == ImportReport(rows_read=6, inserted=1, updated=2, unchanged=3, errors=[])

    with engine.connect() as conn:
        after = _column(conn, "SELECT user_id, updated_at FROM users WHERE state = :s", ka)
        new = conn.execute(
            text("SELECT state_id, roles, status FROM users WHERE user_id = :u"), {"u": f"{unique}-6"}
        ).one()
    changed = {u for u in stamps if after[u] != stamps[u]}
    assert changed == {f"{unique}-2", f"{unique}-4"}
    assert tuple(new) == (None, [], "active")


def _served(engine: Engine, state: str) -> dict[str, set[str]]:
    """{user id: states served} for the users of ``state``."""
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT v.user_id, v.state FROM served_states v JOIN users u USING (user_id) WHERE u.state = :s"),
            {"s": state},
        ).all()
    found: dict[str, set[str]] = {}
    for user_id, code in rows:
        found.setdefault(user_id, set()).add(code)
    return found


def test_users_served_states_column_sets_what_the_team_serves(
    engine: Engine, unique: str, states: tuple[str, str]
) -> None:
    ka, mh = states
    header = f"{USERS_HEADER},Served States"
    team, other, admin = f"{unique}-team", f"{unique}-team2", f"{unique}-admin"
    rows = [
        f"{team},,{ka},Team,IMPLEMENTATION_TEAM,active,{mh.lower()}; {ka}",
        f"{other},,{ka},Team 2,implementation_team,active,",
        f"{admin},,{mh},Admin,ORG_ADMIN,active,",
    ]
    report = import_users(engine, _file([header, *rows]))
    assert report == ImportReport(rows_read=3, inserted=3, updated=0, unchanged=0, errors=[])
    assert _served(engine, ka) == {team: {ka, mh}}  # MH is known: the admin's row of the same file made it

    # Bad values are refused by line, with a reason and a sentence; the good rows load.
    bad = [
        f"{team},,{ka},Team,IMPLEMENTATION_TEAM,active,{ka}|{mh}",
        f"{other},,{ka},Team 2,IMPLEMENTATION_TEAM,active,{mh};NOWHERE{unique}",
        f"{admin},,{mh},Admin,ORG_ADMIN,active,{ka}",
        f"{unique}-new,,{ka},New,IMPLEMENTATION_TEAM,active,{mh}",
    ]
    report = import_users(engine, _file([header, *bad]))
    assert _reasons(report) == [(2, "UNKNOWN_STATE"), (3, "UNKNOWN_STATE"), (4, "NOT_IMPLEMENTATION_TEAM")]
    assert (report.inserted, report.updated, report.rejected) == (1, 0, 3)
    assert f'"{ka}|{mh}", not a known state code (separate states with ";")' in report.errors[0].message
    assert f'"NOWHERE{unique}"'.upper() in report.errors[1].message.upper()
    assert "only for IMPLEMENTATION_TEAM users" in report.errors[2].message
    assert "line 4: NOT_IMPLEMENTATION_TEAM — served_states" in format_report(report, "users")
    assert _served(engine, ka) == {team: {ka, mh}, f"{unique}-new": {mh}}  # the refused rows changed nothing

    # A change of served states only is an update; an empty value serves none; no column leaves them alone.
    rows[0] = f"{team},,{ka},Team,IMPLEMENTATION_TEAM,active,{mh}"
    rows[1] = f"{other},,{ka},Team 2,implementation_team,active,{ka}"
    report = import_users(engine, _file([header, *rows]))
    assert (report.inserted, report.updated, report.unchanged, report.errors) == (0, 2, 1, [])
    assert _served(engine, ka) == {team: {mh}, other: {ka}, f"{unique}-new": {mh}}
    assert import_users(engine, _file([header, *rows])).updated == 0  # the same file again changes nothing
    plain = [r.rsplit(",", 1)[0] for r in rows]
    assert import_users(engine, _file([USERS_HEADER, *plain])).updated == 0
    assert _served(engine, ka) == {team: {mh}, other: {ka}, f"{unique}-new": {mh}}
    rows[0] = f"{team},,{ka},Team,IMPLEMENTATION_TEAM,active,"
    assert import_users(engine, _file([header, *rows])).updated == 1
    assert team not in _served(engine, ka)


def test_users_missing_column_is_a_file_error_and_loads_nothing(
    engine: Engine, unique: str, states: tuple[str, str]
) -> None:
    ka, _ = states
    data = _file(["user_id,state_id,STATE,name", f"{unique}-1,{ka}-1,{ka},Ann"])
    with pytest.raises(ImportFileError) as err:
        import_users(engine, data)
    assert err.value.reason == "MISSING_COLUMN"
    assert "roles" in err.value.message and "status" in err.value.message
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM states WHERE code = :s"), {"s": ka}).scalar() == 0
        assert conn.execute(text("SELECT count(*) FROM users WHERE state = :s"), {"s": ka}).scalar() == 0


def test_users_header_follows_the_one_header_rule_of_every_file(
    engine: Engine, unique: str, states: tuple[str, str]
) -> None:
    """``user-id`` (refused before the readers shared one rule) and ``External ID`` for state_id now load."""
    ka, _ = states
    data = _file(["user-id,External ID,State,NAME,roles,Status", f"{unique}-1,{ka}-1,{ka},Ann,PUBLIC,active"])
    assert import_users(engine, data).inserted == 1
    with engine.connect() as conn:
        assert _column(conn, "SELECT user_id, state_id FROM users WHERE state = :s", ka) == {f"{unique}-1": f"{ka}-1"}
    # Two spellings of one column are still ambiguous: the file is refused, nothing loads.
    with pytest.raises(ImportFileError) as err:
        import_users(engine, _file(["user_id,userid,state_id,state,name,roles,status"]))
    assert err.value.reason == "DUPLICATE_COLUMN" and "user_id" in err.value.message


def test_broken_users_csv_reports_lines_and_loads_good_rows(
    engine: Engine, unique: str, states: tuple[str, str]
) -> None:
    ka, mh = states
    u = unique
    lines = [
        " User_ID ,State_Id,STATE,Name,Roles,Status",  # 1: header, names matched loosely
        f"{u}-1,{ka}-1,{ka.lower()},Ann,org_admin ; course_mentor,Active",  # 2: ok (state upper-cased)
        f'{u}-2,,{ka},"Bob',  # 3: CONTROL_CHARACTER, the quoted name spans two physical lines (CR LF in it)
        'Smith",,',  # 4
        f"{u}-3,{ka}-3,{ka},Cid,PUBLIC,finished",  # 5: BAD_STATUS
        f"{u}-4,{ka}-4,{ka},Dee,PUBLIC;SUPERUSER,",  # 6: UNKNOWN_ROLE
        f"{u}-1,{ka}-9,{ka},Ann again,PUBLIC,active",  # 7: DUPLICATE_ID (user_id of line 2)
        f"{u}-5,{ka}-1,{ka},Eve,PUBLIC,active",  # 8: DUPLICATE_ID (state_id of line 2)
        f"{u}-6,{ka}-6,{ka},Fay,PUBLIC",  # 9: WRONG_COLUMN_COUNT
        "",  # 10: blank, skipped
        f"{u}-7,{mh}-7,{mh},Gus,CONTENT_CREATOR,inactive",  # 11: ok, second state created
        f",{ka}-8,{ka},No Id,PUBLIC,active",  # 12: EMPTY_FIELD
        f"{u}-8,{ka}-1,{mh},Hal,PUBLIC,active",  # 13: ok, same state_id in another state
    ]
    report = import_users(engine, _file(lines, newline="\r\n", bom=True))

    assert _reasons(report) == [
        (3, "CONTROL_CHARACTER"),
        (5, "BAD_STATUS"),
        (6, "UNKNOWN_ROLE"),
        (7, "DUPLICATE_ID"),
        (8, "DUPLICATE_ID"),
        (9, "WRONG_COLUMN_COUNT"),
        (12, "EMPTY_FIELD"),
    ]
    assert report.rows_read == 10
    assert (report.inserted, report.updated, report.unchanged) == (3, 0, 0)
    assert report.rejected == 7
    assert "carriage return" in report.errors[0].message and "name" in report.errors[0].message
    assert report.errors[1] == RowError(5, "BAD_STATUS", 'status "finished" is not one of active, inactive')
    assert "SUPERUSER" in report.errors[2].message
    assert "line 2" in report.errors[3].message and "line 2" in report.errors[4].message

    text_report = format_report(report, "users")
    assert text_report.splitlines()[0].startswith("users import: 10 rows read — 3 inserted, 0 updated, 0 unchanged")
    assert 'line 5: BAD_STATUS — status "finished" is not one of active, inactive' in text_report.splitlines()

    with engine.connect() as conn:
        users = {
            r[0]: tuple(r[1:])
            for r in conn.execute(
                text("SELECT user_id, state_id, state, name, roles, status FROM users WHERE state = ANY(:c)"),
                {"c": [ka, mh]},
            )
        }
        state_rows = conn.execute(
            text("SELECT code, name FROM states WHERE code = ANY(:c) ORDER BY code"), {"c": [ka, mh]}
        ).all()
    assert users == {
        f"{u}-1": (f"{ka}-1", ka, "Ann", ["ORG_ADMIN", "COURSE_MENTOR"], "active"),
        f"{u}-7": (f"{mh}-7", mh, "Gus", ["CONTENT_CREATOR"], "inactive"),
        f"{u}-8": (f"{ka}-1", mh, "Hal", ["PUBLIC"], "active"),
    }
    assert [tuple(r) for r in state_rows] == [(ka, ka), (mh, mh)]

    # Same file again: nothing changes, the same errors are reported.
    again = import_users(engine, _file(lines, newline="\r\n", bom=True))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    assert _reasons(again) == _reasons(report)


def test_users_state_id_taken_in_database_and_swaps(engine: Engine, unique: str, states: tuple[str, str]) -> None:
    ka, _ = states
    u = unique
    first = [
        USERS_HEADER,
        f"{u}-a,{ka}-1,{ka},A,PUBLIC,active",
        f"{u}-b,{ka}-2,{ka},B,PUBLIC,active",
        f"{u}-c,{ka}-3,{ka},C,PUBLIC,active",
    ]
    assert import_users(engine, _file(first)).inserted == 3
    second = [
        USERS_HEADER,
        f"{u}-a,{ka}-2,{ka},A,PUBLIC,active",  # 2: swap with b
        f"{u}-b,{ka}-1,{ka},B,PUBLIC,active",  # 3: swap with a
        f"{u}-d,{ka}-3,{ka},D,PUBLIC,active",  # 4: c (not in this file) holds KA-3
    ]
    report = import_users(engine, _file(second))
    assert _reasons(report) == [(4, "DUPLICATE_ID")]
    assert f'already belongs to user "{u}-c"' in report.errors[0].message
    assert (report.inserted, report.updated, report.unchanged) == (0, 2, 0)
    with engine.connect() as conn:
        ids = _column(conn, "SELECT user_id, state_id FROM users WHERE state = :s", ka)
    assert ids == {f"{u}-a": f"{ka}-2", f"{u}-b": f"{ka}-1", f"{u}-c": f"{ka}-3"}


# ---------------------------------------------------------------------------------------------- batches


def _batch_rows(engine: Engine, state: str) -> dict[str, tuple[object, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT batch_id, course_id, course_name, enrollment_type, status, start_date::text, "
                "end_date::text, participant_count FROM course_batches WHERE state = :s"
            ),
            {"s": state},
        )
        return {r[0]: tuple(r[1:]) for r in rows}


def _mentors(engine: Engine, batch_id: str) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(text("SELECT user_id FROM batch_mentors WHERE batch_id = :b"), {"b": batch_id}).scalars()
        )


def test_broken_batches_csv_reports_lines_and_loads_good_rows(
    engine: Engine, unique: str, states: tuple[str, str]
) -> None:
    ka, _ = states
    b = f"b-{unique}"
    lines = [
        BATCHES_HEADER,  # 1
        f"{b}-1,c1,Course 1,{ka},Invite-Only,ongoing,2026-01-01,2026-06-30,m1;m2",  # 2: ok
        f"{b}-2,c1,Course 1,{ka},closed,ongoing,,,",  # 3: BAD_ENROLLMENT_TYPE
        f"{b}-3,c1,Course 1,{ka},open,finished,,,",  # 4: BAD_STATUS
        f"{b}-4,c1,Course 1,{ka},invite_only,0,2026-01-01,,",  # 5: ok, 0 = upcoming
        f"{b}-5,c1,Course 1,{ka},inviteonly,1,,2026-12-31,",  # 6: ok, 1 = ongoing
        f"{b}-6,c1,Course 1,{ka},OPEN,2,2025-01-01,2025-02-01,",  # 7: ok, 2 = ended
        f"{b}-7,c1,Course 1,{ka},open,ongoing,2026-02-30,,",  # 8: BAD_DATE (no such day)
        f"{b}-8,c1,Course 1,{ka},open,ongoing,01/02/2026,,",  # 9: BAD_DATE (not ISO)
        f"{b}-9,c1,Course 1,{ka},open,ongoing,2026-03-01,2026-02-01,",  # 10: BAD_DATE_RANGE
        f"{b}-1,c9,Other,{ka},open,ongoing,,,",  # 11: DUPLICATE_ID (line 2 wins)
        f"{b}-10,c1,Course 1,{ka},open,Cancelled,,,",  # 12: ok
        f"{b}-11,,Course 1,{ka},open,ongoing,,,",  # 13: EMPTY_FIELD course_id
        f"{b}-12,c1,Course 1,{ka},open,ongoing,,",  # 14: WRONG_COLUMN_COUNT
    ]
    report = import_batches(engine, _file(lines, newline="\r\n"))

    assert _reasons(report) == [
        (3, "BAD_ENROLLMENT_TYPE"),
        (4, "BAD_STATUS"),
        (8, "BAD_DATE"),
        (9, "BAD_DATE"),
        (10, "BAD_DATE_RANGE"),
        (11, "DUPLICATE_ID"),
        (13, "EMPTY_FIELD"),
        (14, "WRONG_COLUMN_COUNT"),
    ]
    assert report.errors[1] == RowError(
        4, "BAD_STATUS", 'status "finished" is not one of upcoming, ongoing, ended, cancelled, 0, 1, 2'
    )
    assert (report.rows_read, report.inserted, report.updated, report.unchanged) == (13, 5, 0, 0)
    assert 'line 4: BAD_STATUS — status "finished" is not one of upcoming, ongoing, ended, cancelled, 0, 1, 2' in (
        format_report(report, "batches").splitlines()
    )

    assert _batch_rows(engine, ka) == {
        f"{b}-1": ("c1", "Course 1", "invite-only", "ongoing", "2026-01-01", "2026-06-30", 0),
        f"{b}-4": ("c1", "Course 1", "invite-only", "upcoming", "2026-01-01", None, 0),
        f"{b}-5": ("c1", "Course 1", "invite-only", "ongoing", None, "2026-12-31", 0),
        f"{b}-6": ("c1", "Course 1", "open", "ended", "2025-01-01", "2025-02-01", 0),
        f"{b}-10": ("c1", "Course 1", "open", "cancelled", None, None, 0),
    }
    assert _mentors(engine, f"{b}-1") == {"m1", "m2"}

    again = import_batches(engine, _file(lines, newline="\r\n"))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 5)


def test_batches_reimport_replaces_mentors_and_keeps_participant_count(
    engine: Engine, unique: str, states: tuple[str, str]
) -> None:
    ka, _ = states
    b = f"b-{unique}"
    first = [
        BATCHES_HEADER,
        f"{b}-x,c1,Course,{ka},invite-only,ongoing,2026-01-01,2026-12-31,m-{unique}-1;m-{unique}-2",
        f"{b}-y,c2,Course 2,{ka},open,upcoming,,,m-{unique}-1",
    ]
    assert import_batches(engine, _file(first)).inserted == 2
    with engine.begin() as conn:  # the processor has enrolled people meanwhile
        conn.execute(text("UPDATE course_batches SET participant_count = 42 WHERE batch_id = :b"), {"b": f"{b}-x"})
        conn.execute(text("UPDATE course_batches SET participant_count = 7 WHERE batch_id = :b"), {"b": f"{b}-y"})
        stamp_y = conn.execute(
            text("SELECT updated_at FROM course_batches WHERE batch_id = :b"), {"b": f"{b}-y"}
        ).scalar_one()

    # Re-running the same file changes nothing, participant counts included.
    same = import_batches(engine, _file(first))
    assert (same.inserted, same.updated, same.unchanged, same.errors) == (0, 0, 2, [])
    assert _batch_rows(engine, ka)[f"{b}-x"][-1] == 42

    second = [
        BATCHES_HEADER,
        # x: row changed (status, name) and mentor set replaced
        f"{b}-x,c1,Course renamed,{ka},invite-only,ended,2026-01-01,2026-12-31,m-{unique}-2; m-{unique}-3",
        # y: only the mentors change (all removed) - still an update
        f"{b}-y,c2,Course 2,{ka},open,upcoming,,,",
    ]
    report = import_batches(engine, _file(second))
    assert (report.inserted, report.updated, report.unchanged, report.errors) == (0, 2, 0, [])
    rows = _batch_rows(engine, ka)
    assert rows[f"{b}-x"] == ("c1", "Course renamed", "invite-only", "ended", "2026-01-01", "2026-12-31", 42)
    assert rows[f"{b}-y"][-1] == 7
    assert _mentors(engine, f"{b}-x") == {f"m-{unique}-2", f"m-{unique}-3"}
    assert _mentors(engine, f"{b}-y") == set()
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT updated_at FROM course_batches WHERE batch_id = :b"), {"b": f"{b}-y"}
            ).scalar_one()
            > stamp_y
        )

    rerun = import_batches(engine, _file(second))
    assert (rerun.inserted, rerun.updated, rerun.unchanged) == (0, 0, 2)


def test_batches_missing_columns_and_empty_file(engine: Engine) -> None:
    with pytest.raises(ImportFileError) as err:
        import_batches(engine, _file(["batch_id,course_id,state,status"]))
    assert err.value.reason == "MISSING_COLUMN"
    for column in ("course_name", "enrollment_type", "start_date", "end_date", "mentors"):
        assert column in err.value.message
    with pytest.raises(ImportFileError) as err:
        import_batches(engine, io.BytesIO(b""))
    assert err.value.reason == "MISSING_COLUMN"


def test_header_only_file_is_an_empty_import(engine: Engine) -> None:
    report = import_users(engine, _file([USERS_HEADER]))
    assert report == ImportReport(rows_read=0, inserted=0, updated=0, unchanged=0, errors=[])


def test_special_characters_survive_copy_across_small_chunks(
    engine: Engine, unique: str, states: tuple[str, str]
) -> None:
    ka, _ = states
    names = ["back\\slash", "comma, here", 'quote"q', "semi;colon", "\\N", "unicode ✓ ü"]  # control chars: refused
    body = [USERS_HEADER] + [
        f'{unique}-{i},{ka}-{i},{ka},"{n.replace(chr(34), chr(34) * 2)}",PUBLIC,' for i, n in enumerate(names)
    ]
    assert import_users(engine, _file(body), chunk_size=2).inserted == len(names)
    assert import_users(engine, _file(body), chunk_size=2).unchanged == len(names)
    with engine.connect() as conn:
        got = _column(conn, "SELECT user_id, name FROM users WHERE state = :s", ka)
    assert got == {f"{unique}-{i}": n for i, n in enumerate(names)}

    b = f"b-{unique}"
    batch = [BATCHES_HEADER, f'{b},c,Course,{ka},open,1,,,"we\\ird; q""uote ;{{x}};a,b;a;a"']
    assert import_batches(engine, _file(batch)).inserted == 1
    assert _mentors(engine, b) == {"we\\ird", 'q"uote', "{x}", "a,b", "a"}
    assert import_batches(engine, _file(batch)).unchanged == 1


def test_malformed_files(engine: Engine, unique: str, states: tuple[str, str]) -> None:
    ka, _ = states
    # A row with broken quoting is rejected, the rest loads.
    report = import_users(engine, _file([USERS_HEADER, f'{unique}-1,,{ka},"a"b,,', f"{unique}-2,,{ka},ok,,"]))
    assert _reasons(report) == [(2, "MALFORMED_ROW")]
    assert (report.rows_read, report.inserted) == (2, 1)
    # A quote never closed swallows the rest of the file: file-level error, nothing loaded.
    with pytest.raises(ImportFileError) as err:
        import_users(engine, _file([USERS_HEADER, f'{unique}-3,,{ka},"open,,', f"{unique}-4,,{ka},ok,,"]))
    assert err.value.reason == "MALFORMED_CSV" and "line 2" in err.value.message
    # Not UTF-8: file-level error naming the line; the rows before it are rolled back.
    data = _file([USERS_HEADER, f"{unique}-5,,{ka},ok,,"]).getvalue() + f"{unique}-6,,{ka},".encode() + b"\xff,,\n"
    with pytest.raises(ImportFileError) as err:
        import_users(engine, io.BytesIO(data))
    assert err.value.reason == "BAD_ENCODING" and "line 3" in err.value.message
    with engine.connect() as conn:
        assert set(_column(conn, "SELECT user_id, name FROM users WHERE state = :s", ka)) == {f"{unique}-2"}
