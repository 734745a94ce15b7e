"""Plans through the CLI's server mode against a real dashboard (web app and read model in threads) and a real
processor: `plan add|show|approve|reject`, `sync` (with its breaker), and the implementation team's `add`,
`retry` and `undo` print with `--server` what the direct path prints and end with the same codes; a state
that does not require approval lets the team's upload apply at once; due plans expire without a reader.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text

from enrolment.domain.plans import StateSettings
from enrolment.settings import Settings
from enrolment.store import plans as plan_store
from enrolment.store.tokens import issue_token
from tests.support.dashboard import World, forget, make_world, serving
from tests.support.helpers import add_team, cli, members, read_topic, start_processor, wait_until

pytestmark = pytest.mark.integration

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
EXPIRES = re.compile(r"expires \d{4}-\d\d-\d\d \d\d:\d\d \S+")
# what must differ between the two paths: ids, times, the batch, and the submitter (cli:LOGIN vs the token's user)
DIFFERS = {"plan_id", "upload_id", "batch_id", "made_at", "expires_at", "decided_at", "applied_at", "submitted_by"}


@pytest.fixture()
def world(isolated_settings: Settings, engine: Engine, unique: str) -> Iterator[World]:
    w = make_world(
        engine, isolated_settings, unique, 8, [("a", "invite-only", "ongoing"), ("b", "invite-only", "ongoing")]
    )
    team = add_team(engine, f"team-{unique}", w.state, [w.state])
    try:
        yield w
    finally:
        forget(engine, [w.admin, w.mentor, team], [w])


@pytest.fixture()
def server(world: World, engine: Engine) -> Iterator[str]:
    with serving(world.settings, engine) as url:
        yield url


def team_of(world: World) -> str:
    return f"team-{world.token}"


def alike_text(out: bytes, world: World) -> str:
    shown = EXPIRES.sub("expires WHEN", UUID.sub("ID", out.decode()))
    return shown.replace(world.batches[0], "BATCH").replace(world.batches[1], "BATCH")


def alike(value: Any) -> Any:
    """A JSON value without what must differ between the paths (recursively)."""
    if isinstance(value, dict):
        return {k: alike(v) for k, v in value.items() if k not in DIFFERS}
    if isinstance(value, list):
        return [alike(v) for v in value]
    return value


def one(done: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    lines = done.stdout.decode().strip().splitlines()
    assert len(lines) == 1, done.stdout.decode() + done.stderr.decode()
    value: dict[str, Any] = json.loads(lines[0])
    return value


def both(
    world: World, token: str, who: str | None, *args: str, ids: tuple[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]]:
    """A command on the direct path (batch b or ids[0], ``--as who``) and through the server (batch a or ids[1],
    the token's user; the server from PARTICIPANTS_SERVER): both end with the same code, neither with a traceback."""
    s = world.settings
    claim = ("--as", who) if who else ()
    remote = {"PARTICIPANTS_TOKEN": token, "PARTICIPANTS_SERVER": SERVER[0]}
    if ids is None:
        direct = cli(s, *args, "--batch", world.batches[1], *claim)
        through = cli(s, *args, "--batch", world.batches[0], **remote)
    else:
        direct = cli(s, *args, ids[0], *claim)
        through = cli(s, *args, ids[1], **remote)
    assert direct.returncode == through.returncode, (args, direct.stderr, through.stderr)
    assert b"Traceback" not in direct.stderr + through.stderr
    return direct, through


SERVER: list[str] = [""]


def complete(engine: Engine, upload_id: str) -> bool:
    with engine.connect() as conn:
        done = text("SELECT completed_at IS NOT NULL FROM uploads WHERE upload_id = :u")
        found = conn.execute(done, {"u": upload_id}).scalar()
    return bool(found)


def test_plan_commands_through_the_server_print_what_the_direct_path_prints(
    world: World, engine: Engine, server: str, tmp_path: Path
) -> None:
    SERVER[0] = server
    s = world.settings
    start_processor(s)
    t = world.teachers
    admin = issue_token(engine, world.admin, "cli", by="test").secret
    file = tmp_path / "people.csv"
    file.write_text(f"user_id\n{t[0]}\n{t[1]}\nu-nobody-{world.token}\n", encoding="utf-8")

    # plan add: a waiting plan, the same object on both paths; then as text.
    direct, through = both(world, admin, world.admin, "plan", "add", str(file), "--json")
    assert direct.returncode == 0 and alike(one(direct)) == alike(one(through))
    plans = one(direct)["plan_id"], one(through)["plan_id"]
    assert one(through)["status"] == "waiting" and one(through)["counts"]["adds"] == 2
    assert set(one(through)) == set(one(direct))
    # the same file again while those plans wait: a repeat unless said to be meant (issue 13's resubmission rule)
    direct, through = both(world, admin, world.admin, "plan", "add", str(file), "--allow-repeat")
    assert alike_text(direct.stdout, world) == alike_text(through.stdout, world)
    assert "waiting" in direct.stdout.decode() and "USER_NOT_FOUND 1" in direct.stdout.decode()
    text_plans = UUID.findall(direct.stdout.decode())[0], UUID.findall(through.stdout.decode())[0]

    # plan show --json: the same shape, the applying upload's progress included (none yet).
    direct, through = both(world, admin, None, "plan", "show", "--json", ids=plans)
    assert one(direct)["upload"] is None and alike(one(direct)) == alike(one(through))
    assert set(one(direct)) == set(one(through))

    # plan reject, then again: exit 1 on both paths; --as is refused with --server.
    direct, through = both(world, admin, world.admin, "plan", "reject", ids=text_plans)
    assert direct.returncode == 0 and alike_text(direct.stdout, world) == alike_text(through.stdout, world)
    direct, through = both(world, admin, world.admin, "plan", "reject", ids=text_plans)
    assert direct.returncode == 1 and b"not waiting" in direct.stderr and b"not waiting" in through.stderr
    claimed = cli(s, "plan", "approve", plans[1], "--server", server, "--as", world.admin, PARTICIPANTS_TOKEN=admin)
    assert claimed.returncode == 2 and b"--as cannot be used with --server" in claimed.stderr

    # plan approve --wait --json: applied as one upload, followed to its summary; the same on both paths.
    direct, through = both(world, admin, world.admin, "plan", "approve", "--wait", "--json", ids=plans)
    assert direct.returncode == 3, direct.stderr  # the unknown user is rejected
    assert alike(one(direct)) == alike(one(through))
    assert one(through)["plan"]["status"] == "applied" and one(through)["reasons"]["ENROLLED"] == 2
    assert one(through)["requested_by"] == world.admin and one(through)["submitted_by"] == world.admin
    assert members(engine, world.batches[0]) == members(engine, world.batches[1]) == {t[0], t[1]}
    for plan_id in plans:
        upload_id = one(cli(s, "plan", "show", plan_id, "--json"))["upload_id"]
        wait_until("the applied upload recorded complete", lambda u=upload_id: complete(engine, u), 60, 0.2)
    direct, through = both(world, admin, None, "plan", "show", "--json", ids=plans)
    assert one(through)["upload"]["complete"] is True and one(through)["upload"]["published"] == 3
    assert alike(one(direct)) == alike(one(through))

    # sync: removing both members trips the breaker: the waiting plan is printed, nothing is removed.
    master = tmp_path / "master.csv"
    master.write_text(f"user_id\n{t[3]}\n", encoding="utf-8")
    direct, through = both(world, admin, world.admin, "sync", str(master))
    assert direct.returncode == 0 and alike_text(direct.stdout, world) == alike_text(through.stdout, world)
    assert "BREAKER" in through.stdout.decode() and "Nothing was changed: the sync waits" in through.stdout.decode()
    assert members(engine, world.batches[0]) == {t[0], t[1]}
    # with thresholds that allow it, the sync applies at once and is followed like any upload.
    args = ("sync", str(master), "--max-removal-percent", "100", "--max-removals", "10", "--wait", "--json")
    args = (*args, "--allow-repeat")  # the master file's breaker plan is still waiting: a repeat, meant here
    direct, through = both(world, admin, world.admin, *args)
    assert direct.returncode == 0 and alike(one(direct)) == alike(one(through))
    assert one(through)["reasons"] == {"ENROLLED": 1, "UNENROLLED": 2} and one(through)["kind"] == "sync"
    assert members(engine, world.batches[0]) == members(engine, world.batches[1]) == {t[3]}


def test_the_teams_add_retry_and_undo_wait_for_a_state_admin_on_both_paths(
    world: World, engine: Engine, server: str, tmp_path: Path
) -> None:
    SERVER[0] = server
    s = world.settings
    start_processor(s)
    t = world.teachers
    team = team_of(world)
    token = issue_token(engine, team, "cli", by="test").secret
    admin = issue_token(engine, world.admin, "cli", by="test").secret
    file = tmp_path / "people.csv"
    file.write_text(f"user_id\n{t[0]}\n{t[1]}\nu-nobody-{world.token}\n", encoding="utf-8")

    direct, through = both(world, token, team, "add", str(file), "--wait")
    assert direct.returncode == 0 and alike_text(direct.stdout, world) == alike_text(through.stdout, world)
    assert (
        "IMPLEMENTATION_TEAM" in through.stdout.decode() and "need a state admin's approval" in through.stdout.decode()
    )
    assert members(engine, world.batches[0]) == members(engine, world.batches[1]) == set()
    # the same file again while the first plans wait: a repeat, meant here
    direct, through = both(world, token, team, "add", str(file), "--json", "--allow-repeat")
    assert alike(one(direct)) == alike(one(through)) and one(through)["needs_approval_reason"] == "IMPLEMENTATION_TEAM"
    plans = one(direct)["plan_id"], one(through)["plan_id"]
    own = cli(s, "plan", "approve", plans[1], "--server", server, PARTICIPANTS_TOKEN=token)
    assert own.returncode == 1 and b"is not a state admin" in own.stderr, own.stderr
    direct, through = both(world, admin, world.admin, "plan", "approve", "--wait", "--json", ids=plans)
    assert direct.returncode == 3 and alike(one(direct)) == alike(one(through))
    assert one(through)["requested_by"] == team and one(through)["reasons"] == {"ENROLLED": 2, "USER_NOT_FOUND": 1}
    uploads = one(direct)["upload_id"], one(through)["upload_id"]
    for upload_id in uploads:
        wait_until("the team's upload recorded complete", lambda u=upload_id: complete(engine, u), 60, 0.2)

    # undo by the team: a waiting plan of removals (kind remove), nothing removed until an admin approves.
    direct, through = both(world, token, team, "undo", "--json", ids=uploads)
    assert direct.returncode == 0 and alike(one(direct)) == alike(one(through))
    undo = one(through)
    assert (undo["kind"], undo["status"], undo["counts"]["removes"]) == ("remove", "waiting", 2)
    assert members(engine, world.batches[0]) == {t[0], t[1]}
    approved = cli(s, "plan", "approve", undo["plan_id"], "--server", server, "--wait", PARTICIPANTS_TOKEN=admin)
    assert approved.returncode == 0, approved.stderr
    assert members(engine, world.batches[0]) == set()

    # retry by the team (the unknown user again) is a waiting plan too, printed as text; nothing is published.
    direct, through = both(world, token, team, "retry", ids=uploads)
    assert direct.returncode == 0 and alike_text(direct.stdout, world) == alike_text(through.stdout, world)
    assert "need a state admin's approval" in through.stdout.decode() and "USER_NOT_FOUND 1" in through.stdout.decode()
    published = {(r["upload_id"], r["kind"]) for r in read_topic(s, s.topics.uploads)}
    assert {kind for _, kind in published} == {"add", "remove"} and len(published) == 3, published  # no retry


def test_a_state_that_does_not_require_approval_lets_the_teams_upload_apply_at_once(
    world: World, engine: Engine, server: str, tmp_path: Path
) -> None:
    SERVER[0] = server
    s = world.settings
    start_processor(s)
    t = world.teachers
    team = team_of(world)
    token = issue_token(engine, team, "cli", by="test").secret
    with engine.begin() as conn, closing(conn.connection.cursor()) as cur:
        plan_store.set_state_settings(cur, world.state, StateSettings(team_approval_required=False))
    file = tmp_path / "people.csv"
    file.write_text(f"user_id\n{t[0]}\n", encoding="utf-8")

    direct, through = both(world, token, team, "add", str(file), "--wait", "--json")
    assert direct.returncode == 0 and "plan_id" not in one(through) and one(through)["complete"]
    assert json.loads(direct.stdout)["reasons"] == json.loads(through.stdout)["reasons"] == {"ENROLLED": 1}
    assert members(engine, world.batches[0]) == members(engine, world.batches[1]) == {t[0]}
    # a plan the team makes there needs no one else's approval either: its reason is not IMPLEMENTATION_TEAM
    made = cli(s, "plan", "add", str(file), "--batch", world.batches[0], "--json", "--allow-repeat",
               PARTICIPANTS_TOKEN=token, PARTICIPANTS_SERVER=server)  # fmt: skip
    assert made.returncode == 0 and one(made)["needs_approval_reason"] is None, made.stderr


def test_due_plans_expire_when_the_list_is_read_or_the_sweep_runs(
    world: World, engine: Engine, server: str, tmp_path: Path
) -> None:
    s = world.settings
    admin = issue_token(engine, world.admin, "cli", by="test").secret
    file = tmp_path / "people.csv"
    file.write_text(f"user_id\n{world.teachers[0]}\n", encoding="utf-8")
    made = [one(cli(s, "plan", "add", str(file), "--batch", b, "--as", world.admin, "--json")) for b in world.batches]
    ids = [m["plan_id"] for m in made]

    def stored(plan_id: str) -> str:
        with engine.connect() as conn:
            return str(conn.execute(text("SELECT status FROM plans WHERE plan_id = :p"), {"p": plan_id}).scalar())

    with engine.begin() as conn:
        conn.execute(
            text("UPDATE plans SET expires_at = now() - interval '1 minute' WHERE plan_id = :p"), {"p": ids[0]}
        )
    listed = httpx.get(
        f"{server}/api/plans", params={"status": "expired"}, headers={"Authorization": f"Bearer {admin}"}
    )
    assert listed.status_code == 200 and ids[0] in [p["plan_id"] for p in listed.json()]
    assert stored(ids[0]) == "expired" and stored(ids[1]) == "waiting"

    with engine.begin() as conn:
        conn.execute(
            text("UPDATE plans SET expires_at = now() - interval '1 minute' WHERE plan_id = :p"), {"p": ids[1]}
        )
    swept = cli(s, "plan", "expire", "--json")
    assert swept.returncode == 0 and ids[1] in one(swept)["expired"] and ids[0] not in one(swept)["expired"]
    assert stored(ids[1]) == "expired"
    again = cli(s, "plan", "expire")
    assert again.returncode == 0 and ids[1] not in again.stdout.decode()
    audits = [
        r
        for r in read_topic(s, s.topics.telemetry)
        if r["eid"] == "AUDIT" and r["edata"]["type"] == "PLAN_EXPIRED" and r["object"]["id"] in ids
    ]
    assert [a["object"]["id"] for a in audits].count(ids[1]) == 1, audits
