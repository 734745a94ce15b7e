"""The `participants` command line as a user runs it: a subprocess against the real broker and database.

Every test works on its own topics (``isolated_settings``) and its own state, users and batches (``World``);
where results are needed a real processor (``participants process``) runs in the background and is stopped
with SIGTERM when the test ends.
"""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from enrolment.settings import Settings
from tests.support.helpers import PARTICIPANTS, World, cli, env_for, read_topic, start_processor, wait_until

pytestmark = pytest.mark.integration

REPORT_HEADER = ["line", "identifier", "id_type", "outcome", "reason", "message"]
UPLOAD_ID = re.compile(r"Upload ([0-9a-f-]{36})")


# ------------------------------------------------------------------------------------------------ helpers


def run(settings: Settings, *args: str, input_bytes: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Runs the CLI; whatever happens, no traceback may reach the user."""
    done: subprocess.CompletedProcess[bytes] = cli(settings, *args, input_bytes=input_bytes, timeout=120)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert "Traceback" not in out and "Traceback" not in err, f"traceback in output:\n{out}\n{err}"
    return done


def out(done: subprocess.CompletedProcess[bytes]) -> str:
    return str(done.stdout.decode())


def err(done: subprocess.CompletedProcess[bytes]) -> str:
    return str(done.stderr.decode())


def summary(done: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    """The one JSON object of `--json`."""
    lines = [line for line in out(done).splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line, got:\n{out(done)}\n{err(done)}"
    value: dict[str, Any] = json.loads(lines[0])
    return value


def write(path: Path, content: str, *, bom: bool = False, newline: str = "\n") -> Path:
    data = content.replace("\n", newline)
    path.write_bytes(("\ufeff" if bom else "").encode() + data.encode("utf-8"))
    return path


def read_report(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert raw.startswith("\ufeff".encode()), "the report starts with a UTF-8 BOM (for spreadsheets)"
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


def batch_info(settings: Settings, batch_id: str) -> dict[str, Any]:
    done = run(settings, "batches", "show", batch_id, "--json")
    assert done.returncode == 0, err(done)
    return summary(done)


def wait_for_status(settings: Settings, upload_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Polls `participants status UPLOAD_ID --json` until the upload is complete."""
    last = [""]

    def complete() -> dict[str, Any] | None:
        done = run(settings, "status", upload_id, "--json")
        last[0] = out(done) + err(done)
        if done.returncode in (0, 3) and done.stdout.strip():
            status = summary(done)
            if status["complete"]:
                status["_exit"] = done.returncode
                return status
        return None

    return wait_until(lambda: f"upload {upload_id} to complete; last answer:\n{last[0]}", complete, timeout, 0.5)


def assert_nothing_published(settings: Settings) -> None:
    assert read_topic(settings, settings.topics.commands) == [], "no command may be published"
    assert read_topic(settings, settings.topics.uploads) == [], "no upload record may be published"


def one_sentence(stderr: str) -> None:
    """An error reaches the user as one short message, not a log dump."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, f"expected a sentence on stderr, got {len(lines)} lines:\n{stderr[:3000]}"
    assert lines[0].startswith("participants: "), stderr
    assert "unexpected error" not in stderr, stderr


@pytest.fixture()
def processor(isolated_settings: Settings, tmp_path: Path) -> Iterator[Callable[[], subprocess.Popen[bytes]]]:
    """Starts `participants process` in the background on demand; SIGTERM (and a clean exit) at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start() -> subprocess.Popen[bytes]:
        n = len(started)
        proc = start_processor(
            isolated_settings,
            "--instance-id",
            f"{isolated_settings.instance_id}-{n}",
            "--metrics-port",
            "0",
            log=tmp_path / f"processor-{n}.log",
        )
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for proc in started:
            try:
                codes.append(proc.wait(timeout=30))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
    assert all(code == 0 for code in codes), f"processor exit codes {codes}; logs in {tmp_path}"


# ------------------------------------------------------------------------------------------------ uploads


def test_loose_csv_wait_json_then_the_same_upload_again(
    isolated_settings: Settings, engine: Engine, unique: str, processor: Callable[[], Any], tmp_path: Path
) -> None:
    """A CSV as states send it (BOM, CRLF, 'State ID', extra columns, blank lines); then the same file again."""
    s = isolated_settings
    world = World(engine, unique, teachers=30)
    batch = world.batch("happy")
    lines = ["Name,State ID,District", ""]
    for n in range(25):
        lines.append(f"Teacher {n},{world.state_id(n)},North")
        if n % 10 == 9:
            lines.append(",,")  # an empty row, as spreadsheets save it
    lines.append("")
    upload = write(tmp_path / "teachers.csv", "\n".join(lines) + "\n", bom=True, newline="\r\n")
    processor()

    done = run(s, "add", str(upload), "--batch", batch, "--as", world.admin, "--wait", "--json")
    assert done.returncode == 0, out(done) + err(done)
    first = summary(done)
    assert re.fullmatch(r"[0-9a-f-]{36}", first["upload_id"])
    assert first["complete"] is True
    assert first["published"] == first["processed"] == 25
    assert first["outcomes"] == {"APPLIED": 25}
    assert first["reasons"] == {"ENROLLED": 25}
    assert first["refused"] == 0
    assert world.members(batch) == {world.user_id(n) for n in range(25)}
    assert batch_info(s, batch)["participant_count"] == 25

    # The same file for the same batch again is refused before anything is published (issue 13) …
    refused = run(s, "add", str(upload), "--batch", batch, "--as", world.admin, "--wait", "--json")
    assert refused.returncode == 2, out(refused) + err(refused)
    assert f"This file was applied as upload {first['upload_id']} on " in err(refused)
    assert f"by {world.admin}: 25 enrolled" in err(refused) and out(refused) == ""
    one_sentence(err(refused))
    # … and goes on with --allow-repeat.
    again = run(s, "add", str(upload), "--batch", batch, "--as", world.admin, "--wait", "--json", "--allow-repeat")
    assert again.returncode == 0, out(again) + err(again)
    second = summary(again)
    assert second["upload_id"] != first["upload_id"]
    assert second["outcomes"] == {"SKIPPED": 25}
    assert second["reasons"] == {"ALREADY_ENROLLED": 25}
    assert batch_info(s, batch)["participant_count"] == 25

    # The human summary of the same upload, at any time after.
    status = run(s, "status", second["upload_id"])
    assert status.returncode == 0, err(status)
    text_out = out(status)
    assert f"Upload {second['upload_id']}" in text_out and "complete" in text_out
    assert "already in batch (ALREADY_ENROLLED) 25" in text_out


def test_refused_and_rejected_rows_with_report(
    isolated_settings: Settings, engine: Engine, unique: str, processor: Callable[[], Any], tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=10)
    batch = world.batch("mixed")
    u = world.user_id
    content = "\n".join(
        [
            "Email, User ID ,Phone",  # line 1
            f"a@x,{u(0)},1",  # 2 ENROLLED
            "",  # 3 blank
            f"b@x,{u(1)},2",  # 4 ENROLLED
            "c@x,,3",  # 5 EMPTY_ID (refused)
            f"d@x,{u(0)},4",  # 6 DUPLICATE_IN_FILE (refused)
            f"e@x,nobody-{unique},5",  # 7 USER_NOT_FOUND (rejected by the processor)
            f"f@x,inactive-{unique},6",  # 8 USER_INACTIVE (rejected by the processor)
            "g@x,u 2,7",  # 9 INVALID_CHARACTERS (refused)
            ",,",  # 10 blank
            f"h@x,{u(3)},8",  # 11 ENROLLED
        ]
    )
    upload = write(tmp_path / "mixed.csv", content + "\n", bom=True, newline="\r\n")
    report = tmp_path / "out" / "report.csv"
    report.parent.mkdir()
    processor()

    done = run(s, "add", str(upload), "--batch", batch, "--as", world.admin, "--wait", "--report", str(report))
    assert done.returncode == 3, out(done) + err(done)
    shown = out(done)
    match = UPLOAD_ID.search(shown)
    assert match, shown
    upload_id = match.group(1)
    assert "complete" in shown
    assert "added (ENROLLED) 3" in shown
    assert re.search(r"REJECTED +2 .*USER_INACTIVE 1", shown) and "USER_NOT_FOUND 1" in shown, shown
    assert "refused before publishing: 3" in shown
    assert "line 5: EMPTY_ID" in shown and "line 6: DUPLICATE_IN_FILE" in shown
    assert f"report: {report}" in shown

    table = read_report(report)
    assert table[0] == REPORT_HEADER
    body = table[1:]
    assert [int(r[0]) for r in body] == [2, 4, 5, 6, 7, 8, 9, 11], "one row per non-blank input row, by line"
    by_line = {int(r[0]): dict(zip(REPORT_HEADER, r, strict=True)) for r in body}
    expected = {
        2: ("APPLIED", "ENROLLED"),
        4: ("APPLIED", "ENROLLED"),
        5: ("REJECTED", "EMPTY_ID"),
        6: ("REJECTED", "DUPLICATE_IN_FILE"),
        7: ("REJECTED", "USER_NOT_FOUND"),
        8: ("REJECTED", "USER_INACTIVE"),
        9: ("REJECTED", "INVALID_CHARACTERS"),
        11: ("APPLIED", "ENROLLED"),
    }
    assert {line: (r["outcome"], r["reason"]) for line, r in by_line.items()} == expected
    assert by_line[2]["identifier"] == u(0) and by_line[2]["id_type"] == "USER_ID"
    assert by_line[6]["identifier"] == u(0) and "line 2" in by_line[6]["message"]
    assert by_line[7]["identifier"] == f"nobody-{unique}"
    assert all(r["message"] for r in by_line.values())
    assert world.members(batch) == {u(0), u(1), u(3)}

    status = wait_for_status(s, upload_id)
    assert status["_exit"] == 3
    assert status["published"] == 5 and status["processed"] == 5
    assert status["outcomes"] == {"APPLIED": 3, "REJECTED": 5}
    assert status["reasons"] == {
        "DUPLICATE_IN_FILE": 1,
        "EMPTY_ID": 1,
        "ENROLLED": 3,
        "INVALID_CHARACTERS": 1,
        "USER_INACTIVE": 1,
        "USER_NOT_FOUND": 1,
    }
    assert sorted(r["line"] for r in status["refused_rows"]) == [5, 6, 9]


def test_stdin_plain_list_without_wait_then_status(
    isolated_settings: Settings, engine: Engine, unique: str, processor: Callable[[], Any], tmp_path: Path
) -> None:
    """`-` reads stdin; a plain list needs --id-type; without --wait the CLI says how to follow the upload."""
    s = isolated_settings
    world = World(engine, unique, teachers=10)
    batch = world.batch("stdin")
    ids = "\r\n".join(world.state_id(n) for n in range(6)) + "\r\n\r\n"
    report = tmp_path / "pending.csv"

    done = run(
        s, "add", "-", "--batch", batch, "--as", world.admin, "--id-type", "state_id", "--report", str(report),
        input_bytes=ids.encode(),
    )  # fmt: skip
    assert done.returncode == 0, out(done) + err(done)
    match = UPLOAD_ID.search(out(done))
    assert match, out(done)
    upload_id = match.group(1)
    assert "6 commands published" in out(done)
    assert f"participants status {upload_id}" in out(done)
    table = read_report(report)
    assert table[0] == REPORT_HEADER
    assert [(r[0], r[2], r[3]) for r in table[1:]] == [(str(n), "STATE_ID", "PENDING") for n in range(1, 7)]

    processor()
    status = wait_for_status(s, upload_id)
    assert status["_exit"] == 0
    assert status["published"] == 6 and status["processed"] == 6
    assert status["reasons"] == {"ENROLLED": 6}
    assert world.members(batch) == {world.user_id(n) for n in range(6)}

    # --json without --wait: one object, not complete yet (or just completed; it is not waited for)
    more = "\n".join(world.state_id(n) for n in range(6, 8)) + "\n"
    done = run(
        s, "add", "-", "--batch", batch, "--as", world.admin, "--id-type", "state_id", "--json",
        input_bytes=more.encode(),
    )  # fmt: skip
    assert done.returncode == 0, err(done)
    queued = summary(done)
    assert queued["complete"] is False and queued["published"] == 2
    assert wait_for_status(s, queued["upload_id"])["reasons"] == {"ENROLLED": 2}
    assert batch_info(s, batch)["participant_count"] == 8


def test_remove_skips_who_is_not_in_the_batch(
    isolated_settings: Settings, engine: Engine, unique: str, processor: Callable[[], Any], tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=10)
    batch = world.batch("remove")
    processor()
    enrolled = "\n".join(world.user_id(n) for n in range(3)) + "\n"
    done = run(
        s, "add", "-", "--batch", batch, "--as", world.admin, "--id-type", "user_id", "--wait", "--json",
        input_bytes=enrolled.encode(),
    )  # fmt: skip
    assert done.returncode == 0, err(done)
    assert summary(done)["reasons"] == {"ENROLLED": 3}

    listed = write(tmp_path / "remove.txt", "\n".join(world.user_id(n) for n in range(5)) + "\n")
    done = run(s, "remove", str(listed), "--batch", batch, "--as", world.admin, "--id-type", "user_id", "--wait")
    assert done.returncode == 0, out(done) + err(done)
    assert "removed (UNENROLLED) 3" in out(done)
    assert "not in batch (NOT_ENROLLED) 2" in out(done)
    assert world.members(batch) == set()
    assert batch_info(s, batch)["participant_count"] == 0


def test_dry_run_changes_nothing(
    isolated_settings: Settings, engine: Engine, unique: str, processor: Callable[[], Any], tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=10)
    batch = world.batch("dry")
    processor()
    two = "\n".join(world.state_id(n) for n in range(2)) + "\n"
    done = run(
        s, "add", "-", "--batch", batch, "--as", world.admin, "--id-type", "state_id", "--wait",
        input_bytes=two.encode(),
    )  # fmt: skip
    assert done.returncode == 0, out(done) + err(done)
    events_before = len(read_topic(s, s.topics.enrollment_events))
    assert events_before == 2

    five = write(tmp_path / "five.csv", "state_id\n" + "\n".join(world.state_id(n) for n in range(5)) + "\n")
    report = tmp_path / "dry.csv"
    args = ("--batch", batch, "--as", world.admin, "--dry-run", "--wait", "--json")
    done = run(s, "add", str(five), *args, "--report", str(report))
    assert done.returncode == 0, out(done) + err(done)
    added = summary(done)
    assert added["dry_run"] is True
    assert added["reasons"] == {"ENROLLED": 3, "ALREADY_ENROLLED": 2}
    rows = read_report(report)[1:]
    assert len(rows) == 5
    assert all("would be added" in r[5] for r in rows if r[4] == "ENROLLED")

    done = run(s, "remove", str(five), *args)
    assert done.returncode == 0, out(done) + err(done)
    assert summary(done)["reasons"] == {"UNENROLLED": 2, "NOT_ENROLLED": 3}

    assert world.members(batch) == {world.user_id(0), world.user_id(1)}
    assert world.count(batch) == 2
    assert batch_info(s, batch)["participant_count"] == 2
    assert len(read_topic(s, s.topics.enrollment_events)) == events_before, "a dry run emits no enrolment event"
    status = wait_for_status(s, added["upload_id"])
    assert status["dry_run"] is True and status["reasons"] == {"ENROLLED": 3, "ALREADY_ENROLLED": 2}


def test_timeout_without_processor_then_status_completes(
    isolated_settings: Settings, engine: Engine, unique: str, processor: Callable[[], Any], tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=10)
    batch = world.batch("late")
    listed = write(tmp_path / "late.csv", "User ID\n" + "\n".join(world.user_id(n) for n in range(4)) + "\n")

    started = time.monotonic()
    done = run(s, "add", str(listed), "--batch", batch, "--as", world.admin, "--wait", "--timeout", "2", "--json")
    assert time.monotonic() - started < 30
    assert done.returncode == 4, out(done) + err(done)
    pending = summary(done)
    upload_id = pending["upload_id"]
    assert pending["complete"] is False and pending["published"] == 4 and pending["processed"] == 0
    assert "Timed out" in err(done)
    assert f"participants status {upload_id}" in err(done)
    assert world.members(batch) == set()

    processor()
    status = wait_for_status(s, upload_id)
    assert status["_exit"] == 0
    assert status["processed"] == 4 and status["reasons"] == {"ENROLLED": 4}
    shown = run(s, "status", upload_id)
    assert shown.returncode == 0 and "complete" in out(shown) and "in progress" not in out(shown)
    assert world.count(batch) == 4


def test_unusable_input_or_arguments_publish_nothing(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=5)
    batch = world.batch("bad")
    common = ("--batch", batch, "--as", world.admin)
    good_lines = "\n".join(f"id-{n}" for n in range(3000))
    cases: list[tuple[str, tuple[str, ...], bytes | None, str]] = [
        ("plain list without --id-type", (str(write(tmp_path / "plain.txt", "a1\na2\n")),), None, "--id-type"),
        (
            "no usable column",
            (str(write(tmp_path / "cols.csv", "Name,Email\nA,a@x\n")),),
            None,
            "none of them is an id column",
        ),
        ("missing file", (str(tmp_path / "nope.csv"),), None, "no such file"),
        ("header only", (str(write(tmp_path / "empty.csv", "user_id\n\n")),), None, "no participant rows"),
        ("empty stdin", ("-", "--id-type", "user_id"), b"", "no participant rows"),
        (
            "a second value far down a plain list",
            (str(write(tmp_path / "late-comma.txt", good_lines + "\nx-1,x-2\n")), "--id-type", "user_id"),
            None,
            "Line 3001",
        ),
        (
            "invalid UTF-8 far down the file",
            ("-",),
            b"user_id\n" + good_lines.encode() + b"\nbad-\xff\xfe\n",
            "not valid UTF-8",
        ),
        (
            "a report that cannot be written",
            (
                str(write(tmp_path / "fine.csv", "user_id\nsomeone\n")),
                "--wait",
                "--report",
                str(tmp_path / "no-such-dir" / "r.csv"),
            ),
            None,
            "Cannot write the report",
        ),
    ]
    for name, args, stdin, expected in cases:
        done = run(s, "add", *args, *common, input_bytes=stdin)
        assert done.returncode == 2, f"{name}: exit {done.returncode}\n{out(done)}\n{err(done)}"
        assert expected in err(done), f"{name}: {err(done)}"
        one_sentence(err(done))
        assert out(done) == "", f"{name}: {out(done)}"

    # argument errors (argparse): exit 2 with the usage
    for args in (("add", "x.csv", "--as", world.admin), ("add", "-", *common, "--id-type", "email")):
        done = run(s, *args)
        assert done.returncode == 2, err(done)
        assert "usage:" in err(done)

    # retry and undo record who ran them: without --as they are refused with a sentence (exit 2)
    for command in ("retry", "undo"):
        done = run(s, command, "00000000-0000-0000-0000-000000000000", "--wait")
        assert done.returncode == 2 and "needs --as" in err(done), err(done)
        one_sentence(err(done))

    unknown = run(s, "status", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 2 and "No upload" in err(unknown)
    one_sentence(err(unknown))

    assert_nothing_published(s)


def test_unreachable_broker(isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=3)
    batch = world.batch("nobroker")
    listed = write(tmp_path / "ids.csv", "user_id\n" + world.user_id(0) + "\n")
    away = replace(s, kafka_bootstrap_servers="localhost:1")
    common = ("--batch", batch, "--as", world.admin)
    # both at once: each spends the client's metadata timeout finding out
    procs = [
        subprocess.Popen(
            [PARTICIPANTS, "add", str(listed), *common, *extra],
            env=env_for(away),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for extra in ((), ("--wait", "--timeout", "5"))
    ]
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=90)
        assert proc.returncode == 1, stderr.decode()[-3000:]
        assert b"Traceback" not in stdout + stderr
        assert "Cannot reach Kafka at localhost:1" in stderr.decode()
        one_sentence(stderr.decode())
    assert_nothing_published(s)
    assert world.members(batch) == set()


def test_unreachable_database(isolated_settings: Settings, tmp_path: Path) -> None:
    s = isolated_settings
    url = s.database_url
    scheme, rest = url.split("://", 1)
    creds, location = rest.rsplit("@", 1)
    host_port, _, database = location.partition("/")
    away = replace(s, database_url=f"{scheme}://{creds}@{host_port.split(':')[0]}:1/{database}")
    users = write(tmp_path / "users.csv", "user_id,state_id,state,name,roles,status\nx,,XX,X,PUBLIC,active\n")
    for args in (
        ("status", "00000000-0000-0000-0000-000000000000"),
        ("status", "00000000-0000-0000-0000-000000000000", "--json"),
        ("batches", "show", "some-batch", "--json"),
        ("users", "import", str(users)),
    ):
        done = run(away, *args)
        assert done.returncode == 1, f"{args}: {out(done)}{err(done)}"
        assert "Cannot reach PostgreSQL" in err(done), err(done)
        one_sentence(err(done))
        password = creds.split(":", 1)[1] if ":" in creds else None
        if password:
            assert f":{password}@" not in err(done) and ":***@" in err(done), "the password is not shown"


# ------------------------------------------------------------------------------------------------ reference data


def test_reference_imports_report_bad_lines_and_load_the_rest(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    state = f"C{unique}".upper()
    users = write(
        tmp_path / "users.csv",
        "\n".join(
            [
                "User ID,State ID,State,Name,Roles,Status,Extra",
                f"cu-{unique}-1,CS-1,{state},One,PUBLIC,active,x",  # 2 ok
                f"cu-{unique}-2,CS-2,{state},Two,PUBLIC,retired,x",  # 3 BAD_STATUS
                "",
                f"cu-{unique}-3,CS-3,,Three,PUBLIC,active,x",  # 5 EMPTY_FIELD (state)
                f"cu-{unique}-1,CS-9,{state},Again,PUBLIC,active,x",  # 6 DUPLICATE_ID
                f"cadmin-{unique},,{state},Admin,ORG_ADMIN,active,x",  # 7 ok
            ]
        )
        + "\n",
        bom=True,
        newline="\r\n",
    )
    done = run(s, "users", "import", str(users))
    assert done.returncode != 0, out(done)
    shown = out(done)
    assert "2 inserted" in shown, shown
    for line, reason in ((3, "BAD_STATUS"), (5, "EMPTY_FIELD"), (6, "DUPLICATE_ID")):
        assert f"line {line}: {reason}" in shown, shown
    with engine.connect() as conn:
        loaded = {
            r[0]: r[1] for r in conn.execute(text("SELECT user_id, name FROM users WHERE state = :s"), {"s": state})
        }
    assert loaded == {f"cu-{unique}-1": "One", f"cadmin-{unique}": "Admin"}

    batch_id = f"cb-{unique}"
    batches = write(
        tmp_path / "batches.csv",
        "\n".join(
            [
                "batch_id,course_id,course_name,state,enrollment_type,status,start_date,end_date,mentors",
                f"{batch_id},c-{unique},Course,{state},invite-only,ongoing,2026-01-01,2027-01-01,",  # 2 ok
                f"cb2-{unique},c-{unique},Course,{state},closed,ongoing,2026-01-01,2027-01-01,",  # 3 bad type
                f"cb3-{unique},c-{unique},Course,{state},open,ongoing,2026-13-01,2027-01-01,",  # 4 bad date
            ]
        )
        + "\n",
    )
    done = run(s, "batches", "import", str(batches))
    assert done.returncode != 0, out(done)
    assert "line 3: BAD_ENROLLMENT_TYPE" in out(done) and "line 4: BAD_DATE" in out(done), out(done)
    info = batch_info(s, batch_id)
    assert info["participant_count"] == 0 and info["state"] == state and info["enrollment_type"] == "invite-only"
    missing = run(s, "batches", "show", f"cb2-{unique}", "--json")
    assert missing.returncode == 2 and "does not exist" in err(missing)

    # a file that cannot be imported at all: a sentence, exit 2, nothing loaded
    broken = write(tmp_path / "broken.csv", f"user_id,name\nzz-{unique},Z\n")
    done = run(s, "users", "import", str(broken))
    assert done.returncode == 2, out(done) + err(done)
    assert "MISSING_COLUMN" in err(done)
    one_sentence(err(done))


def test_a_direct_upload_is_audited_with_its_submitter_on_the_telemetry_topic(
    isolated_settings: Settings, engine: Engine, unique: str
) -> None:
    """Item 7 of the identity issue: every upload's submitter, also on the operators' direct (Kafka) path."""
    s = isolated_settings
    world = World(engine, unique, teachers=4)
    batch = world.batch("audited")
    ids = "\n".join(world.state_id(n) for n in range(3)) + "\n"
    done = run(s, "add", "-", "--batch", batch, "--as", world.admin, "--id-type", "state_id", input_bytes=ids.encode())
    assert done.returncode == 0, out(done) + err(done)
    match = UPLOAD_ID.search(out(done))
    assert match, out(done)
    upload_id = match.group(1)
    audits = [
        r
        for r in read_topic(s, s.topics.telemetry)
        if r["eid"] == "AUDIT" and r["edata"]["type"] == "UPLOAD_SUBMITTED" and r["object"]["id"] == upload_id
    ]
    assert len(audits) == 1, audits
    event = audits[0]
    assert event["actor"]["id"] == world.admin and event["object"]["type"] == "Upload"
    assert event["edata"]["params"]["batch_id"] == batch and event["edata"]["params"]["rows"] == "3"
    assert "upload submitted" not in err(done), "the audit line is not printed on the CLI's terminal"
