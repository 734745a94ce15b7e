"""Plan, approve, apply; sync and its breaker; the implementation team's approval — through the CLI, on the real stack.

The plan commands run as `participants` subprocesses (the producer's role and principal); the processor runs
in-process until idle after each publish (``process``), so every count is exact when it is checked.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from enrolment.settings import Settings
from tests.support.helpers import World, add_team, cli, process, publish, read_topic, rows

pytestmark = pytest.mark.integration


def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The CLI; no traceback may reach the user whatever happens."""
    done: subprocess.CompletedProcess[bytes] = cli(settings, *args, timeout=180)
    both = done.stdout.decode() + done.stderr.decode()
    assert "Traceback" not in both, both
    return done


def one_json(done: subprocess.CompletedProcess[bytes]) -> dict[str, Any]:
    lines = [line for line in done.stdout.decode().splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout.decode() + done.stderr.decode()
    value: dict[str, Any] = json.loads(lines[0])
    return value


def ids_file(path: Path, world: World, numbers: range | list[int], extra: list[str] | None = None) -> Path:
    """A CSV of state ids of the world's teachers ``numbers`` (and ``extra`` ids, e.g. unknown ones)."""
    lines = ["State ID", *(world.state_id(n) for n in numbers), *(extra or [])]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def commands_published(settings: Settings) -> int:
    return sum(1 for r in read_topic(settings, settings.topics.commands) if "command_id" in r)


def plan_status(settings: Settings, plan_id: str) -> dict[str, Any]:
    done = run(settings, "plan", "show", plan_id, "--json")
    assert done.returncode == 0, done.stderr.decode()
    return one_json(done)


def enrol(settings: Settings, engine: Engine, world: World, batch: str, numbers: range | list[int]) -> None:
    """Another upload (not the plan) enrolling these teachers, processed."""
    publish(settings, batch, world.admin, rows([world.state_id(n) for n in numbers]))
    process(settings, engine)


def test_a_plan_of_10k_rows_shows_what_its_apply_then_does_and_applies_once(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=10_000)
    batch = world.batch("plan10k")
    enrol(s, engine, world, batch, range(0, 300))  # 300 already in: ALREADY_ENROLLED
    before = commands_published(s)
    listed = ids_file(tmp_path / "teachers.csv", world, range(10_000), ["IN-1", "NOBODY-1"])

    made = run(s, "plan", "add", str(listed), "--batch", batch, "--as", world.admin, "--json")
    assert made.returncode == 0, made.stderr.decode()
    plan = one_json(made)
    assert (plan["kind"], plan["status"]) == ("add", "waiting")
    assert plan["counts"]["adds"] == 9_700 and plan["counts"]["unchanged"] == 300
    assert plan["counts"]["reasons"] == {
        "ENROLLED": 9_700,
        "ALREADY_ENROLLED": 300,
        "USER_INACTIVE": 1,
        "USER_NOT_FOUND": 1,
    }
    assert commands_published(s) == before and len(world.members(batch)) == 300, "a plan changes nothing"

    approved = run(s, "plan", "approve", plan["plan_id"], "--as", world.admin, "--json")
    assert approved.returncode == 0, approved.stderr.decode()
    applied = one_json(approved)
    process(s, engine)
    status = run(s, "status", applied["upload_id"], "--json")
    done = one_json(status)
    assert done["complete"] and done["reasons"] == plan["counts"]["reasons"]
    assert done["outcomes"] == plan["counts"]["outcomes"]
    assert len(world.members(batch)) == 10_000
    shown = plan_status(s, plan["plan_id"])
    assert (shown["status"], shown["upload_id"]) == ("applied", applied["upload_id"])
    with engine.connect() as conn:
        recorded = conn.execute(
            text("SELECT plan_id, content_hash FROM uploads WHERE upload_id = :u"), {"u": applied["upload_id"]}
        ).one()
    assert recorded[0] == plan["plan_id"] and recorded[1] == plan["content_hash"]

    again = run(s, "plan", "approve", plan["plan_id"], "--as", world.admin)
    assert again.returncode == 1 and "is applied, not waiting" in again.stderr.decode()


def test_rows_changed_since_the_plan_are_left_alone_and_reported(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=1_000)
    batch = world.batch("drift")
    listed = ids_file(tmp_path / "teachers.csv", world, range(1_000))
    plan = one_json(run(s, "plan", "add", str(listed), "--batch", batch, "--as", world.admin, "--json"))
    assert plan["counts"]["adds"] == 1_000
    meanwhile = list(range(200, 300))
    enrol(s, engine, world, batch, meanwhile)  # someone else enrols 100 of them

    approved = run(
        s, "plan", "approve", plan["plan_id"], "--as", world.admin, "--json", "--report", str(tmp_path / "r")
    )
    assert approved.returncode == 0, approved.stderr.decode()
    upload_id = one_json(approved)["upload_id"]
    assert one_json(approved)["changed_since_plan"] == 100
    process(s, engine)
    done = one_json(run(s, "status", upload_id, "--json"))
    assert done["reasons"] == {"ENROLLED": 900, "CHANGED_SINCE_PLAN": 100}
    assert done["outcomes"] == {"APPLIED": 900, "SKIPPED": 100}
    left = {r["identifier"] for r in done["refused_rows"] if r["reason"] == "CHANGED_SINCE_PLAN"}
    assert left == {world.state_id(n) for n in meanwhile}
    assert len(world.members(batch)) == 1_000


def test_a_plan_is_decided_by_a_state_admin_of_its_state_while_waiting(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=20)
    batch = world.batch("decide")
    listed = ids_file(tmp_path / "t.csv", world, range(10))

    def make() -> str:
        made = run(s, "plan", "add", str(listed), "--batch", batch, "--as", world.admin, "--json", "--allow-repeat")
        assert made.returncode == 0, made.stderr.decode()
        return str(one_json(made)["plan_id"])

    outsider = make()
    for who in (world.other_admin, world.mentor):
        refused = run(s, "plan", "approve", outsider, "--as", who)
        assert (
            refused.returncode == 1
            and f"is not a state admin (ORG_ADMIN) of {world.state.upper()}" in refused.stderr.decode()
        ), refused.stderr.decode()
    assert plan_status(s, outsider)["status"] == "waiting"

    rejected = run(s, "plan", "reject", outsider, "--as", world.admin, "--json")
    assert rejected.returncode == 0 and one_json(rejected)["status"] == "rejected"
    late = run(s, "plan", "approve", outsider, "--as", world.admin)
    assert late.returncode == 1 and "is rejected, not waiting" in late.stderr.decode()

    stale = make()
    with engine.begin() as conn:
        conn.execute(text("UPDATE plans SET expires_at = now() - interval '1 minute' WHERE plan_id = :p"), {"p": stale})
    expired = run(s, "plan", "approve", stale, "--as", world.admin)
    assert expired.returncode == 1 and "expired" in expired.stderr.decode()
    assert plan_status(s, stale)["status"] == "expired"
    unknown = run(s, "plan", "show", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 2 and "No plan" in unknown.stderr.decode()
    assert commands_published(s) == 0 and world.members(batch) == set(), "nothing was applied"


def test_the_implementation_teams_upload_waits_for_another_admins_approval(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=30)
    batch = world.batch("team")
    team = add_team(engine, f"team-{unique}", world.state, [world.state.upper()])
    listed = ids_file(tmp_path / "t.csv", world, range(20))

    waiting = run(s, "add", str(listed), "--batch", batch, "--as", team, "--json")
    assert waiting.returncode == 0, waiting.stderr.decode()
    plan = one_json(waiting)
    assert (plan["status"], plan["needs_approval_reason"], plan["counts"]["adds"]) == (
        "waiting",
        "IMPLEMENTATION_TEAM",
        20,
    )
    process(s, engine)
    assert commands_published(s) == 0 and world.members(batch) == set(), "nothing changes before approval"
    own = run(s, "plan", "approve", plan["plan_id"], "--as", team)
    assert own.returncode == 1, own.stderr.decode()

    approved = run(s, "plan", "approve", plan["plan_id"], "--as", world.admin, "--wait", "--json", "--timeout", "5")
    process(s, engine)
    upload_id = one_json(approved)["upload_id"]
    done = one_json(run(s, "status", upload_id, "--json"))
    assert done["complete"] and done["reasons"] == {"ENROLLED": 20} and done["requested_by"] == team
    assert world.members(batch) == {world.user_id(n) for n in range(20)}

    # where the state does not require it, the team's upload applies at once
    settings_done = run(s, "plan", "settings", world.state.upper(), "--team-approval", "not-required")
    assert settings_done.returncode == 0 and one_json(settings_done)["team_approval_required"] is False
    more = ids_file(tmp_path / "more.csv", world, [25])
    direct = run(s, "add", str(more), "--batch", batch, "--as", team, "--json")
    assert direct.returncode == 0 and "upload_id" in one_json(direct), direct.stderr.decode()


def test_a_sync_adds_and_removes_at_once_below_the_breaker(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=60)
    batch = world.batch("sync")
    enrol(s, engine, world, batch, range(0, 50))
    listed = ids_file(tmp_path / "master.csv", world, [*range(2, 50), 55, 56])  # 0 and 1 leave, 55 and 56 join

    synced = run(s, "sync", str(listed), "--batch", batch, "--as", world.admin, "--json", "--wait", "--timeout", "3")
    assert synced.returncode in (0, 4), synced.stderr.decode()
    result = one_json(synced)
    counts = result["plan"]["counts"]
    assert (counts["adds"], counts["removes"], counts["unchanged"]) == (2, 2, 48)
    process(s, engine)
    done = one_json(run(s, "status", result["upload_id"], "--json"))
    assert done["reasons"] == {"ENROLLED": 2, "UNENROLLED": 2} and done["kind"] == "sync"
    assert world.members(batch) == {world.user_id(n) for n in [*range(2, 50), 55, 56]}


def test_a_sync_missing_2000_of_10k_waits_on_the_breaker_then_removes_exactly_those(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=10_000)
    batch = world.batch("breaker")
    enrol(s, engine, world, batch, range(10_000))
    before = commands_published(s)
    kept = range(2_000, 10_000)
    listed = ids_file(tmp_path / "truncated.csv", world, kept)

    paused = run(s, "sync", str(listed), "--batch", batch, "--as", world.admin, "--json")
    assert paused.returncode == 0, paused.stderr.decode()
    plan = one_json(paused)
    assert (plan["status"], plan["needs_approval_reason"]) == ("waiting", "BREAKER")
    assert plan["breaker"]["tripped"] and plan["breaker"]["removals"] == 2_000
    assert (plan["counts"]["removes"], plan["counts"]["unchanged"], plan["counts"]["adds"]) == (2_000, 8_000, 0)
    process(s, engine)
    assert commands_published(s) == before and len(world.members(batch)) == 10_000, "nothing removed yet"

    approved = run(s, "plan", "approve", plan["plan_id"], "--as", world.admin, "--json")
    assert approved.returncode == 0, approved.stderr.decode()
    process(s, engine)
    done = one_json(run(s, "status", one_json(approved)["upload_id"], "--json"))
    assert done["reasons"] == {"UNENROLLED": 2_000} and done["published"] == 2_000
    assert world.members(batch) == {world.user_id(n) for n in kept}

    # per call, the breaker can be set higher: a second truncated export applies at once
    shorter = ids_file(tmp_path / "shorter.csv", world, range(2_000, 9_000))
    wide = run(s, "sync", str(shorter), "--batch", batch, "--as", world.admin, "--json", "--max-removal-percent", "50",
               "--max-removals", "5000")  # fmt: skip
    assert wide.returncode == 0 and one_json(wide)["plan"]["status"] == "applied", wide.stderr.decode()


def test_the_same_file_sent_again_while_the_first_is_in_progress_or_waiting_is_refused(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=10)
    batch = world.batch("resend")
    listed = ids_file(tmp_path / "r.csv", world, range(5))
    first = run(s, "add", str(listed), "--batch", batch, "--as", world.admin, "--json")  # no processor running
    assert first.returncode == 0, first.stderr.decode()
    upload_id = one_json(first)["upload_id"]
    published = commands_published(s)

    again = run(s, "add", str(listed), "--batch", batch, "--as", world.admin, "--json")
    assert again.returncode == 2, again.stderr.decode()
    assert f"in progress as upload {upload_id}" in again.stderr.decode() and "--allow-repeat" in again.stderr.decode()
    assert commands_published(s) == published, "nothing published for the repeat"
    meant = run(s, "add", str(listed), "--batch", batch, "--as", world.admin, "--json", "--allow-repeat")
    assert meant.returncode == 0 and "upload_id" in one_json(meant), meant.stderr.decode()

    # the implementation team's file waiting as a plan: the same file again is refused too
    team = add_team(engine, f"team-{unique}", world.state, [world.state.upper()])
    other = ids_file(tmp_path / "t.csv", world, range(5, 10))
    plan = one_json(run(s, "add", str(other), "--batch", batch, "--as", team, "--json"))
    assert plan["status"] == "waiting"
    twice = run(s, "add", str(other), "--batch", batch, "--as", team, "--json")
    assert twice.returncode == 2, twice.stderr.decode()
    assert f"waiting as plan {plan['plan_id']}" in twice.stderr.decode()
