"""Reprocessing and recovery on the real broker and database: replay, retry, undo, rebuild, dead letters."""

from __future__ import annotations

import io
import json
import signal
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import pytest
from confluent_kafka import Producer
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from enrolment import credentials
from enrolment.kafka.clients import base_config
from enrolment.messages.codec import Codec, default_codec
from enrolment.settings import Settings
from enrolment.store import migrate
from processor.engine import Processor
from processor.imports import import_users
from tests.support.helpers import ROOT, World, cli, process, publish, read_topic, rows, start_processor

pytestmark = pytest.mark.integration


def _json(proc: object) -> dict[str, object]:
    out = proc.stdout.decode()  # type: ignore[attr-defined]
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture()
def running(isolated_settings: Settings, unique: str) -> Iterator[None]:
    proc = start_processor(isolated_settings, "--instance-id", f"run-{unique}")
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def test_replay_from_beginning_changes_nothing(isolated_settings: Settings, engine: Engine, unique: str) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=10_000)
    batch = world.batch("replay")
    publish(s, batch, world.admin, rows([world.state_id(n) for n in range(10_000)]))
    process(s, engine)
    before = (
        len(read_topic(s, s.topics.results)),
        len(read_topic(s, s.topics.enrollment_events)),
        world.members(batch),
    )
    out = cli(s, "replay", "--from-beginning", "--json")
    assert out.returncode == 0, out.stderr.decode()
    summary = _json(out)
    assert summary["already_applied"] == {"ENROLLED": 10_000}
    assert summary["applied_now"] == {}
    after = (
        len(read_topic(s, s.topics.results)),
        len(read_topic(s, s.topics.enrollment_events)),
        world.members(batch),
    )
    assert after == before
    dry = _json(cli(s, "replay", "--from-beginning", "--dry-run", "--json"))
    assert dry["already_applied"] == {"ENROLLED": 10_000} and dry["would_apply"] == {}


def test_retry_after_importing_missing_users(
    isolated_settings: Settings, engine: Engine, unique: str, running: None
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=20)
    batch = world.batch("retry")
    missing = [f"LATE{unique}-{n}" for n in range(5)]
    ids = [world.state_id(n) for n in range(20)] + missing
    csv = "state_id\n" + "\n".join(ids) + "\n"
    first = cli(s, "add", "--batch", batch, "--as", world.admin, "-", "--wait", "--json", input_bytes=csv.encode())
    assert first.returncode == 3, first.stderr.decode()
    first_summary = _json(first)
    assert first_summary["reasons"] == {"ENROLLED": 20, "USER_NOT_FOUND": 5}
    runner = f"admin2-{unique}"  # a second admin of the state runs the retry: the audit trail must name them
    users = "user_id,state_id,state,name,roles,status\n" + "".join(
        f"late-{unique}-{n},{m},{world.state},Late {n},PUBLIC,active\n" for n, m in enumerate(missing)
    )
    users += f"{runner},,{world.state},Second Admin,ORG_ADMIN,active\n"
    assert not import_users(engine, io.BytesIO(users.encode())).errors
    report = f"/tmp/retry-{unique}.csv"
    again = cli(
        s, "retry", str(first_summary["upload_id"]), "--reasons", "USER_NOT_FOUND", "--as", runner, "--wait",
        "--json", "--report", report,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr.decode()
    summary = _json(again)
    assert summary["reasons"] == {"ENROLLED": 5}
    assert summary["upload_id"] != first_summary["upload_id"]
    with open(report, encoding="utf-8-sig") as fh:
        lines = fh.read().splitlines()
    assert [ln.split(",")[0] for ln in lines[1:]] == [str(22 + n) for n in range(5)], "original line numbers"
    assert len(world.members(batch)) == 25
    results = [r for r in read_topic(s, s.topics.results) if r["upload_id"] == summary["upload_id"]]
    assert {r["origin_upload_id"] for r in results} == {first_summary["upload_id"]}
    assert {r["requested_by"] for r in results} == {runner}, "the retry records who ran it, not the original"


def test_undo_undo_of_undo_and_drift(isolated_settings: Settings, engine: Engine, unique: str, running: None) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=10_100)
    batch = world.batch("undo")
    before = {world.state_id(n) for n in range(10_000, 10_100)}  # members before the upload
    csv0 = "state_id\n" + "\n".join(sorted(before)) + "\n"
    assert (
        cli(s, "add", "--batch", batch, "--as", world.admin, "-", "--wait", input_bytes=csv0.encode()).returncode == 0
    )
    prior = world.members(batch)
    ids = [world.state_id(n) for n in range(10_000)]
    up = cli(
        s, "add", "--batch", batch, "--as", world.admin, "-", "--wait", "--json",
        input_bytes=("state_id\n" + "\n".join(ids) + "\n").encode(),
    )  # fmt: skip
    upload = str(_json(up)["upload_id"])
    assert len(world.members(batch)) == 10_100
    # A later upload removes 10 of those participants: they are drift for the undo.
    later = "state_id\n" + "\n".join(ids[:10]) + "\n"
    assert (
        cli(s, "remove", "--batch", batch, "--as", world.admin, "-", "--wait", input_bytes=later.encode()).returncode
        == 0
    )

    assert cli(s, "undo", upload, "--wait").returncode == 2, "undo without --as names no one: refused"
    undo = cli(s, "undo", upload, "--as", world.admin, "--wait", "--json")
    assert undo.returncode == 3, undo.stderr.decode()  # drift rows are reported as rejected
    undo_summary = _json(undo)
    assert undo_summary["reasons"] == {"UNENROLLED": 9990, "CHANGED_SINCE": 10}
    assert world.members(batch) == prior
    status = _json(cli(s, "status", str(undo_summary["upload_id"]), "--json"))
    assert status["kind"] == "undo" and status["refused"] == 10

    redo = cli(s, "undo", str(undo_summary["upload_id"]), "--as", world.admin, "--wait", "--json")
    assert redo.returncode == 0, redo.stderr.decode()
    assert _json(redo)["reasons"] == {"ENROLLED": 9990}
    assert world.members(batch) == prior | {world.user_id(n) for n in range(10, 10_000)}
    assert world.count(batch) == len(world.members(batch))


@pytest.fixture()
def private_db(base_settings: Settings, unique: str) -> Iterator[str]:
    """A database of its own, so the test may empty the store without touching anyone else's rows."""
    admin = create_engine(base_settings.database_url, isolation_level="AUTOCOMMIT")
    name = f"t_{unique}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base_settings.database_url.rsplit("/", 1)[0] + "/" + name
    migrate.upgrade(url)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def as_role_of(settings: Settings, component: str) -> Settings:
    """The same database, as ``component``'s own role when the stack made one (what the command runs as)."""
    stored = credentials.load(component).get("DATABASE_URL")
    if not stored:
        return settings
    database = make_url(settings.database_url).database
    return replace(settings, database_url=make_url(stored).set(database=database).render_as_string(hide_password=False))


def test_store_rebuild_equals_original_and_verify_catches_corruption(
    isolated_settings: Settings, private_db: str, unique: str
) -> None:
    s = replace(isolated_settings, database_url=private_db)
    ps = as_role_of(s, "processor")  # rebuild, replay and verify run as the processor's role
    engine = create_engine(private_db)
    try:
        world = World(engine, unique, teachers=100_000)
        batch = world.batch("rebuild")
        small = world.batch("small")
        publish(s, batch, world.admin, rows([world.state_id(n) for n in range(100_000)]))
        publish(s, small, world.admin, rows([world.state_id(n) for n in range(50)]))
        publish(s, small, world.admin, rows([world.state_id(n) for n in range(20)]), action="REMOVE")
        process(s, engine)
        columns = "batch_id, user_id, added_via, enrolled_at, enrolled_by, command_id"
        ledger_cols = "command_id, upload_id, batch_id, line, identifier, outcome, reason, user_id, requested_by"
        with engine.connect() as conn:
            enrol = conn.execute(text(f"SELECT {columns} FROM enrolments ORDER BY 1, 2")).all()
            ledger = conn.execute(text(f"SELECT {ledger_cols} FROM command_ledger ORDER BY 1")).all()
            counts = conn.execute(text("SELECT batch_id, participant_count FROM course_batches ORDER BY 1")).all()
        assert len(enrol) == 100_030
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE enrolments, command_ledger, uploads, consumer_positions"))
            conn.execute(text("UPDATE course_batches SET participant_count = 0"))
        out = cli(ps, "store", "rebuild")
        assert out.returncode == 0, out.stderr.decode()
        with engine.connect() as conn:
            assert conn.execute(text(f"SELECT {columns} FROM enrolments ORDER BY 1, 2")).all() == enrol
            assert conn.execute(text(f"SELECT {ledger_cols} FROM command_ledger ORDER BY 1")).all() == ledger
            assert (
                conn.execute(text("SELECT batch_id, participant_count FROM course_batches ORDER BY 1")).all() == counts
            )
        assert cli(ps, "store", "rebuild").returncode == 2, "a second rebuild refuses a non-empty store"
        # After the rebuild a replay still changes nothing.
        replay = _json(cli(ps, "replay", "--from-beginning", "--json"))
        assert replay["applied_now"] == {}
        ok = cli(ps, "store", "verify", "--json")
        assert ok.returncode == 0 and _json(ok)["ok"] is True
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE enrolments SET enrolled_by = 'intruder' WHERE batch_id = :b AND user_id = :u"),
                {"b": batch, "u": world.user_id(7)},
            )
            conn.execute(
                text("DELETE FROM enrolments WHERE batch_id = :b AND user_id = :u"),
                {"b": small, "u": world.user_id(30)},
            )
        bad = cli(ps, "store", "verify", "--json")
        assert bad.returncode == 3
        report = _json(bad)
        assert report["different"] and report["different"][0][1] == world.user_id(7)
        assert report["missing_in_store"] == [[small, world.user_id(30)]]
        assert report["wrong_counts"] == [[small, 30, 29]]
    finally:
        engine.dispose()


def test_dead_letter_replayed_after_fix_is_applied_once(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: object
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=3)
    batch = world.batch("dlq")
    # A command written with a newer schema version (an extra field) that this processor does not know yet.
    v3 = json.loads((ROOT / "schemas" / "ParticipantCommand.avsc").read_text())
    v3["fields"].append({"name": "channel", "type": "string", "default": "web"})
    newer = Codec()
    newer.add_writer_schema(v3)
    entry = Codec.entry_for(v3)
    command = {
        "command_id": f"dlq-{unique}:2", "upload_id": f"dlq-{unique}", "batch_id": batch, "action": "ADD",
        "identifier": world.state_id(0), "id_type": "STATE_ID", "line": 2, "requested_by": world.admin,
        "source": "BACKEND", "dry_run": False, "requested_at": 0, "origin_upload_id": None, "origin_line": None,
        "channel": "portal",
    }  # fmt: skip
    producer = Producer({**base_config(s), "partitioner": "murmur2_random"})
    producer.produce(s.topics.commands, Codec.encode_with(entry, command), batch.encode())
    producer.produce(s.topics.commands, b"not avro at all", batch.encode())
    producer.flush(30)
    process(s, engine)
    letters = read_topic_raw_headers(s)
    assert sorted(h["dlq.reason"] for h in letters) == ["NOT_SINGLE_OBJECT", "UNKNOWN_SCHEMA"]
    assert all(h["dlq.source.topic"] == s.topics.commands for h in letters)
    listed = _json(cli(s, "dead-letters", "list", "--json"))
    mine = [d for d in listed["dead_letters"] if d["source_topic"] == s.topics.commands]  # type: ignore[index]
    assert len(mine) == 2
    unknown = next(d for d in mine if d["reason"] == "UNKNOWN_SCHEMA")
    # The fix: the processor learns the newer schema; the message is sent back and applied once.
    out = cli(s, "dead-letters", "replay", "--id", str(unknown["id"]))
    assert out.returncode == 0, out.stderr.decode()
    Processor(s, engine, newer, until_idle=True, idle_grace_s=0.5).run()
    assert world.members(batch) == {world.user_id(0)}
    assert cli(s, "dead-letters", "replay", "--id", str(unknown["id"])).returncode == 0  # already replayed: no-op
    Processor(s, engine, newer, until_idle=True, idle_grace_s=0.5).run()
    results = [r for r in read_topic(s, s.topics.results) if r["upload_id"] == f"dlq-{unique}"]
    assert Counter(r["reason"] for r in results) == {"ENROLLED": 1}
    _ = default_codec


def read_topic_raw_headers(s: Settings) -> list[dict[str, str]]:
    from enrolment.kafka.clients import read_all

    return [{k: v.decode() for k, v in (m.headers() or [])} for m in read_all(s, s.topics.dead_letters)]
