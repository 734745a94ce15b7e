"""The CLI's server mode against a real dashboard (web app and read model in threads) and a real processor:
the same file sent with ``--server`` and by the direct path prints the same summary and ends with the same code.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from enrolment.settings import Settings
from enrolment.store.tokens import issue_token
from tests.support.dashboard import World, cleanup_world, make_world, serving
from tests.support.helpers import cli, start_processor

pytestmark = pytest.mark.integration


@pytest.fixture()
def world(isolated_settings: Settings, engine: Engine, unique: str) -> Iterator[World]:
    w = make_world(
        engine, isolated_settings, unique, 8, [("a", "invite-only", "ongoing"), ("b", "invite-only", "ongoing")]
    )
    try:
        yield w
    finally:
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM api_tokens WHERE user_id = ANY(:u)"), {"u": [w.admin, w.mentor]})
        cleanup_world(engine, w)


@pytest.fixture()
def server(world: World, engine: Engine) -> Iterator[str]:
    with serving(world.settings, engine) as url:
        yield url


def same(out: bytes, world: World) -> str:
    """The output with upload ids and batch ids made alike."""
    text_out = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UPLOAD", out.decode())
    return text_out.replace(world.batches[1], "BATCH").replace(world.batches[0], "BATCH")


def json_alike(out: bytes, world: World | None = None) -> dict[str, Any]:
    """The summary without what must differ: ids, and the submitter (the operator on the direct path, the
    token's user through the server); the requester must be the same person on both paths."""
    data: dict[str, Any] = json.loads(out if world is None else same(out, world))
    return {k: v for k, v in data.items() if k not in ("upload_id", "batch_id", "submitted_by")}


def submitters(direct: bytes, through: bytes) -> tuple[str, str]:
    return json.loads(direct)["submitted_by"], json.loads(through)["submitted_by"]


def report_rows(path: Path, world: World) -> list[str]:
    return (
        path.read_text(encoding="utf-8-sig").replace(world.batches[0], "B").replace(world.batches[1], "B").splitlines()
    )


def test_add_through_the_server_prints_what_the_direct_path_prints(
    world: World, engine: Engine, server: str, tmp_path: Path
) -> None:
    s = world.settings
    start_processor(s)
    t = world.teachers
    file = tmp_path / "people.csv"
    file.write_text(f"user_id\n{t[0]}\n{t[1]}\n{t[1]}\nu-nobody-{world.token}\n", encoding="utf-8")
    token = issue_token(engine, world.admin, "cli", by="test").secret
    remote = {"PARTICIPANTS_TOKEN": token}

    direct = cli(s, "add", str(file), "--batch", world.batches[1], "--as", world.admin, "--wait")
    through = cli(s, "add", str(file), "--batch", world.batches[0], "--server", server, "--wait", **remote)
    assert direct.returncode == through.returncode == 3, (direct.stderr, through.stderr)
    assert same(through.stdout, world) == same(direct.stdout, world)
    assert "ENROLLED" in direct.stdout.decode() and "DUPLICATE_IN_FILE" in direct.stdout.decode()

    # Again (already in the batch now: a repeat, so --allow-repeat), as JSON, with the server from the
    # environment and a report.
    args = ("add", str(file), "--wait", "--json", "--allow-repeat", "--report")
    direct = cli(s, *args, str(tmp_path / "d.csv"), "--batch", world.batches[1], "--as", world.admin)
    through = cli(s, *args, str(tmp_path / "t.csv"), "--batch", world.batches[0], PARTICIPANTS_SERVER=server, **remote)
    assert direct.returncode == through.returncode == 3, (direct.stderr, through.stderr)
    assert json_alike(through.stdout) == json_alike(direct.stdout)
    assert json_alike(direct.stdout)["reasons"]["ALREADY_ENROLLED"] == 2
    assert json_alike(direct.stdout)["requested_by"] == world.admin
    operator, user = submitters(direct.stdout, through.stdout)
    assert operator.startswith("cli") and user == world.admin
    served, written = report_rows(tmp_path / "t.csv", world), report_rows(tmp_path / "d.csv", world)
    assert served == written and len(served) == 5
    assert served[3].split(",")[1:5] == [t[1], "USER_ID", "REJECTED", "DUPLICATE_IN_FILE"]  # refused before publishing

    upload_id = json.loads(through.stdout)["upload_id"]
    for flag in (["--json"], []):
        by_server = cli(s, "status", upload_id, "--server", server, *flag, **remote)
        from_store = cli(s, "status", upload_id, *flag)
        assert by_server.returncode == from_store.returncode == 3
        assert by_server.stdout == from_store.stdout, (by_server.stdout, from_store.stdout)

    # Without --wait: the published summary, as the direct path prints it.
    direct = cli(s, "remove", str(file), "--batch", world.batches[1], "--as", world.admin, "--dry-run")
    through = cli(s, "remove", str(file), "--batch", world.batches[0], "--server", server, "--dry-run", **remote)
    assert direct.returncode == through.returncode == 3
    assert same(through.stdout, world) == same(direct.stdout, world)


def test_server_mode_refusals_are_sentences(world: World, engine: Engine, server: str, tmp_path: Path) -> None:
    s = world.settings
    file = tmp_path / "people.csv"
    file.write_text(f"user_id\n{world.teachers[0]}\n", encoding="utf-8")
    token = issue_token(engine, world.admin, "cli", by="test").secret
    remote = {"PARTICIPANTS_TOKEN": token}
    batch = world.batches[0]

    claimed = cli(s, "add", str(file), "--batch", batch, "--server", server, "--as", world.admin, **remote)
    assert claimed.returncode == 2 and b"--as cannot be used with --server" in claimed.stderr

    unusable = tmp_path / "bad.csv"
    unusable.write_bytes(b"user_id\n\xff\xfe\n")
    direct = cli(s, "add", str(unusable), "--batch", batch, "--as", world.admin)
    through = cli(s, "add", str(unusable), "--batch", batch, "--server", server, **remote)
    assert direct.returncode == through.returncode == 2
    assert through.stderr == direct.stderr and b"Nothing was published." in through.stderr

    for args, env, code, words in (
        (["--server", server], {"PARTICIPANTS_TOKEN": "wrong"}, 2, b"refused the token"),
        (["--server", server], {"PARTICIPANTS_CREDENTIALS": str(tmp_path / "none")}, 2, b"No API token for"),
        (["--server", "http://127.0.0.1:9"], remote, 1, b"Cannot reach the server"),
    ):
        r = cli(s, "add", str(file), "--batch", batch, *args, **env)
        assert r.returncode == code and words in r.stderr and b"Traceback" not in r.stderr, r.stderr
    # A token we know but no longer accept says why and since when: the user asks for a new one.
    expired, revoked = (issue_token(engine, world.mentor, name, by="test") for name in ("old", "gone"))
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE api_tokens SET expires_at = '2026-01-02 03:04:05+00' WHERE token_id = :t"),
            {"t": expired.token_id},
        )
        conn.execute(
            text("UPDATE api_tokens SET revoked_at = '2026-01-01 01:02:03+00' WHERE token_id = :t"),
            {"t": revoked.token_id},
        )
    for secret, sentence in (
        (expired.secret, b"This token expired on 2026-01-02 03:04 UTC; ask for a new one"),
        (revoked.secret, b"This token was revoked on 2026-01-01 01:02 UTC; ask for a new one"),
    ):
        r = cli(s, "add", str(file), "--batch", batch, "--server", server, PARTICIPANTS_TOKEN=secret)
        assert r.returncode == 2 and b"refused the token: " + sentence in r.stderr, r.stderr
    mentor = issue_token(engine, world.mentor, "cli", by="test").secret
    r = cli(s, "add", str(file), "--batch", "no-such-batch", "--server", server, PARTICIPANTS_TOKEN=mentor)
    assert r.returncode == 2 and b"Batch no-such-batch does not exist." in r.stderr

    # login checks the token, then keeps it readable by its owner only; a file others may read is refused.
    creds = tmp_path / "config" / "credentials"
    where = {"PARTICIPANTS_CREDENTIALS": str(creds)}
    bad = cli(s, "login", "--server", server, "--token-stdin", input_bytes=b"wrong\n", **where)
    assert bad.returncode == 2 and not creds.exists()
    ok = cli(s, "login", "--server", server, "--token-stdin", input_bytes=token.encode() + b"\n", **where)
    assert ok.returncode == 0, ok.stderr
    assert stat.S_IMODE(os.stat(creds).st_mode) == 0o600 and token.encode() not in ok.stdout + ok.stderr
    r = cli(s, "status", "no-such-upload", "--server", server, **where)
    assert r.returncode == 2 and b"No upload no-such-upload is known yet" in r.stderr
    os.chmod(creds, 0o644)
    r = cli(s, "status", "no-such-upload", "--server", server, **where)
    assert r.returncode == 2 and b"may be read by others" in r.stderr


def test_retry_and_undo_through_the_server_print_what_the_direct_path_prints(
    world: World, engine: Engine, server: str, tmp_path: Path
) -> None:
    s = world.settings
    start_processor(s)
    t = world.teachers
    file = tmp_path / "people.csv"
    file.write_text(f"user_id\n{t[0]}\n{t[1]}\nu-nobody-{world.token}\n", encoding="utf-8")
    remote = {"PARTICIPANTS_TOKEN": issue_token(engine, world.admin, "cli", by="test").secret}
    first = cli(s, "add", str(file), "--batch", world.batches[1], "--as", world.admin, "--wait", "--json")
    second = cli(s, "add", str(file), "--batch", world.batches[0], "--server", server, "--wait", "--json", **remote)
    assert first.returncode == second.returncode == 3, (first.stderr, second.stderr)
    parents = json.loads(first.stdout)["upload_id"], json.loads(second.stdout)["upload_id"]

    def both(*args: str, report: bool = False) -> tuple[subprocess.CompletedProcess[bytes], ...]:
        """The command on the direct path (the first upload, --as) and through the server (the second)."""
        extra = lambda name: ("--report", str(tmp_path / name)) if report else ()  # noqa: E731
        direct = cli(s, args[0], parents[0], *args[1:], *extra("d.csv"), "--as", world.admin)
        through = cli(s, args[0], parents[1], *args[1:], *extra("t.csv"), "--server", server, **remote)
        assert direct.returncode == through.returncode, (direct.stderr, through.stderr)
        assert same(direct.stderr, world) == same(through.stderr, world)
        return direct, through

    # retry: the unknown user is rejected again (exit 3); --reasons that match nothing publish nothing (exit 0).
    direct, through = both("retry", "--wait")
    assert direct.returncode == 3 and same(direct.stdout, world) == same(through.stdout, world)
    assert (
        b"USER_NOT_FOUND" in through.stdout
        and b"retry of UPLOAD: 1 rows to add" in same(through.stderr, world).encode()
    )
    direct, through = both("retry", "--reasons", "batch_full", "--wait", "--json")
    assert direct.returncode == 0 and json_alike(direct.stdout) == json_alike(through.stdout)
    assert json.loads(through.stdout)["published"] == 0 and json.loads(through.stdout)["kind"] == "retry"

    # undo: a dry run publishes the removals and changes nothing; then the undo, followed, with a report.
    direct, through = both("undo", "--dry-run")
    assert direct.returncode == 0 and same(direct.stdout, world) == same(through.stdout, world)
    direct, through = both("undo", "--wait", "--json", report=True)
    assert direct.returncode == 0 and json_alike(direct.stdout) == json_alike(through.stdout)
    assert (
        json_alike(through.stdout)["reasons"] == {"UNENROLLED": 2}
        and json_alike(through.stdout)["requested_by"] == world.admin
    )
    operator, user = submitters(direct.stdout, through.stdout)
    assert operator.startswith("cli") and user == world.admin
    assert report_rows(tmp_path / "d.csv", world) == report_rows(tmp_path / "t.csv", world)
    with engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM enrolments WHERE batch_id = ANY(:b)"), {"b": list(world.batches)}
        )
        assert left.scalar() == 0

    # Undone already: every row changed since, so each is refused (exit 3) and the report names them by id type.
    direct, through = both("undo", "--json", report=True)
    assert direct.returncode == 3 and json_alike(direct.stdout, world) == json_alike(through.stdout, world)
    rows = report_rows(tmp_path / "t.csv", world)
    assert rows == report_rows(tmp_path / "d.csv", world) and len(rows) == 3
    assert {tuple(r.split(",")[2:5]) for r in rows[1:]} == {("USER_ID", "REJECTED", "CHANGED_SINCE")}

    # --as is the direct path's; an upload the server does not know is a sentence.
    r = cli(s, "undo", parents[1], "--server", server, "--as", world.admin, **remote)
    assert r.returncode == 2 and b"--as cannot be used with --server" in r.stderr
    r = cli(s, "retry", "no-such-upload", "--server", server, **remote)
    assert r.returncode == 2 and b"No upload no-such-upload is known yet" in r.stderr and b"Traceback" not in r.stderr
