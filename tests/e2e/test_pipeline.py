"""End-to-end upload pipeline on the real broker and database: rules, idempotence, replay, crash recovery."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from enrolment.files import InputRow, RefusedRow
from enrolment.settings import Settings
from tests.support.helpers import (
    World,
    group_assignment,
    process,
    publish,
    read_topic,
    rows,
    start_processor,
    wait_until,
)

pytestmark = pytest.mark.integration


def results_of(settings: Settings, upload_id: str) -> list[dict[str, object]]:
    return [r for r in read_topic(settings, settings.topics.results) if r["upload_id"] == upload_id]


def test_10k_add_by_state_id_again_then_remove_half(isolated_settings: Settings, engine: Engine, unique: str) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=10_000)
    batch = world.batch("big")
    ids = [world.state_id(n) for n in range(10_000)]

    first = publish(s, batch, world.admin, rows(ids))
    process(s, engine)
    res = results_of(s, first.upload_id)
    assert len(res) == 10_000
    assert Counter(r["reason"] for r in res) == {"ENROLLED": 10_000}
    assert world.count(batch) == 10_000
    assert len(world.members(batch)) == 10_000
    events = read_topic(s, s.topics.enrollment_events)
    assert len(events) == 10_000
    assert max(e["participant_count"] for e in events) == 10_000

    again = publish(s, batch, world.admin, rows(ids))
    process(s, engine)
    res = results_of(s, again.upload_id)
    assert Counter((r["outcome"], r["reason"]) for r in res) == {("SKIPPED", "ALREADY_ENROLLED"): 10_000}
    assert len(read_topic(s, s.topics.enrollment_events)) == 10_000, "no event for a skipped add"
    assert world.count(batch) == 10_000

    half = publish(s, batch, world.admin, rows(ids[:5000]), action="REMOVE")
    process(s, engine)
    res = results_of(s, half.upload_id)
    assert Counter(r["reason"] for r in res) == {"UNENROLLED": 5000}
    assert world.members(batch) == {world.user_id(n) for n in range(5000, 10_000)}
    assert world.count(batch) == 5000

    summaries = [u for u in read_topic(s, s.topics.uploads) if u["phase"] == "COMPLETED"]
    assert {u["upload_id"] for u in summaries} == {first.upload_id, again.upload_id, half.upload_id}
    telemetry = read_topic(s, s.topics.telemetry)
    assert Counter(t["eid"] for t in telemetry) == {"AUDIT": 15_000, "LOG": 3}


def test_every_rejection_reason(isolated_settings: Settings, engine: Engine, unique: str) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=10)
    ok = world.batch("ok")
    open_batch = world.batch("open", enrollment_type="open")
    ended = world.batch("ended", status="ended")
    cases = [
        (f"missing-{unique}", world.admin, world.state_id(0), "BATCH_NOT_FOUND"),
        (open_batch, world.admin, world.state_id(0), "BATCH_NOT_INVITE_ONLY"),
        (ended, world.admin, world.state_id(0), "BATCH_CLOSED"),
        (ok, world.other_admin, world.state_id(0), "NOT_AUTHORIZED"),
        (ok, world.admin, "nobody", "USER_NOT_FOUND"),
        (ok, world.admin, "OS-1", "USER_NOT_FOUND"),  # a state id of another state does not resolve here
        (ok, world.admin, "IN-1", "USER_INACTIVE"),
        (ok, world.mentor, world.state_id(1), "ENROLLED"),  # the batch's mentor may add
    ]
    uploads = []
    for batch_id, requester, ident, expected in cases:
        uploads.append((publish(s, batch_id, requester, rows([ident])).upload_id, expected))
    other = publish(s, ok, world.admin, rows([f"o-{unique}-1"], id_type="USER_ID"))
    uploads.append((other.upload_id, "USER_OTHER_STATE"))
    process(s, engine)
    by_upload = {r["upload_id"]: r for r in read_topic(s, s.topics.results)}
    for upload_id, expected in uploads:
        result = by_upload[upload_id]
        assert result["reason"] == expected, result
        assert result["message"], "every outcome carries a sentence"
    assert world.members(ok) == {world.user_id(1)}


def test_order_within_a_batch_and_dry_run(isolated_settings: Settings, engine: Engine, unique: str) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=5)
    batch = world.batch("order")
    publish(s, batch, world.admin, rows([world.state_id(0), world.state_id(1)]))
    publish(s, batch, world.admin, rows([world.state_id(0)]), action="REMOVE")
    dry = publish(s, batch, world.admin, rows([world.state_id(2), world.state_id(1)]), dry_run=True)
    process(s, engine)
    assert world.members(batch) == {world.user_id(1)}, "add then remove of the same person ends with them out"
    res = {r["line"]: r for r in results_of(s, dry.upload_id)}
    assert res[2]["reason"] == "ENROLLED" and res[2]["dry_run"] is True
    assert res[3]["reason"] == "ALREADY_ENROLLED"
    assert world.members(batch) == {world.user_id(1)}, "a dry run changes nothing"
    events = read_topic(s, s.topics.enrollment_events)
    assert len(events) == 3  # two adds and one remove; none for the dry run


def test_same_command_twice_and_full_replay_change_nothing(
    isolated_settings: Settings, engine: Engine, unique: str
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=300)
    batch = world.batch("replay")
    items: list[InputRow | RefusedRow] = rows([world.state_id(n) for n in range(300)])
    up = publish(s, batch, world.admin, items)
    # The same upload id and lines again: the same command ids delivered a second time.
    from enrolment.messages.codec import default_codec
    from producer.publish import UploadRequest, publish_upload

    publish_upload(s, default_codec(), UploadRequest(batch, "ADD", world.admin, upload_id=up.upload_id), items[:100])
    process(s, engine)
    assert len(results_of(s, up.upload_id)) == 300
    events_before = read_topic(s, s.topics.enrollment_events)
    results_before = read_topic(s, s.topics.results)
    assert len(events_before) == 300
    with engine.connect() as conn:
        ledger_before = conn.execute(
            text("SELECT count(*) FROM command_ledger WHERE upload_id = :u"), {"u": up.upload_id}
        ).scalar_one()
    assert ledger_before == 300

    # Replay the whole commands topic from the beginning in a new group against the same store.
    process(s, engine, group=f"replay-{unique}", instance_id=f"replay-{unique}")
    assert len(read_topic(s, s.topics.enrollment_events)) == 300
    assert len(read_topic(s, s.topics.results)) == len(results_before)
    assert world.count(batch) == 300


def _recorded(engine: Engine, upload_id: str) -> int:
    with engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM command_ledger WHERE upload_id = :u"), {"u": upload_id})
        return int(n.scalar_one())


def _wait_results(engine: Engine, upload_id: str, at_least: int, timeout: float = 120) -> int:
    """Polls the count of recorded results (cheap), so kill points follow progress, not elapsed time."""
    return wait_until(
        lambda: f"{at_least} recorded results of upload {upload_id} (saw {_recorded(engine, upload_id)})",
        lambda: n if (n := _recorded(engine, upload_id)) >= at_least else 0,
        timeout,
        0.02,
    )


def _assert_exactly_once_10k(s: Settings, world: World, batch: str, upload_id: str) -> None:
    results = results_of(s, upload_id)
    assert len(results) == 10_000, f"results lost or duplicated: {len(results)}"
    assert len({r["command_id"] for r in results}) == 10_000
    events = [e for e in read_topic(s, s.topics.enrollment_events) if e["batch_id"] == batch]
    assert len(events) == 10_000
    assert {e["user_id"] for e in events} == {world.user_id(n) for n in range(10_000)}
    assert sorted(e["participant_count"] for e in events) == list(range(1, 10_001))
    audits = [t for t in read_topic(s, s.topics.telemetry) if t["eid"] == "AUDIT"]
    dup = [m for m, n in Counter(t["mid"] for t in audits).items() if n > 1]
    assert not dup, f"{len(dup)} duplicated AUDIT events, e.g. {dup[:3]}"
    expected_mids = {f"AUDIT:{upload_id}:{line}" for line in range(2, 10_002)}
    extra = [t for t in audits if t["mid"] not in expected_mids]
    assert not extra, f"{len(extra)} unexpected AUDIT events, e.g. {extra[:2]}"
    assert len(audits) == 10_000
    assert len(world.members(batch)) == 10_000 and world.count(batch) == 10_000
    summaries = [u for u in read_topic(s, s.topics.uploads) if u["phase"] == "COMPLETED"]
    assert len(summaries) == 1 and summaries[0]["outcomes"] == {"APPLIED": 10_000}


def test_sigkill_three_times_during_10k_upload(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    """Kafka's own transactions system test, in small: kill -9 at ~20/50/80 % (by observed results)."""
    s = isolated_settings
    world = World(engine, unique, teachers=10_000)
    batch = world.batch("crash")
    up = publish(s, batch, world.admin, rows([world.state_id(n) for n in range(10_000)]))
    log = tmp_path / "processor.log"
    small = {"PROCESSOR_MAX_BATCH": "100"}
    kills = []
    for fraction in (0.2, 0.5, 0.8):
        proc = start_processor(s, "--instance-id", f"crash-{unique}", log=log, env=small)
        seen = _wait_results(engine, up.upload_id, int(10_000 * fraction))
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        kills.append(seen)
    proc = start_processor(s, "--instance-id", f"crash-{unique}", "--until-idle", log=log, env=small)
    assert proc.wait(180) == 0, log.read_text()[-3000:]
    _assert_exactly_once_10k(s, world, batch, up.upload_id)
    assert kills[-1] < 10_000, f"the kills happened mid-upload: {kills}"


def test_crash_between_database_and_kafka_commit(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    """The one window that needs recovery, hit deterministically: outputs of the applied batch come back once."""
    s = isolated_settings
    world = World(engine, unique, teachers=10_000)
    batch = world.batch("window")
    up = publish(s, batch, world.admin, rows([world.state_id(n) for n in range(10_000)]))
    log = tmp_path / "processor.log"
    for nth in ("2", "3"):
        env = {"PROCESSOR_MAX_BATCH": "1000", "PARTICIPANTS_FAILPOINT": f"after-db-commit:{nth}"}
        proc = start_processor(s, "--instance-id", f"win-{unique}", log=log, env=env)
        assert proc.wait(120) == 137, log.read_text()[-3000:]
    proc = start_processor(s, "--instance-id", f"win-{unique}", "--until-idle", log=log)
    assert proc.wait(180) == 0, log.read_text()[-3000:]
    assert log.read_text().count("re-published the outputs of an in-doubt batch") == 2
    _assert_exactly_once_10k(s, world, batch, up.upload_id)


def _applied(engine: Engine, batches: list[str]) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM command_ledger WHERE batch_id = ANY(:b)"), {"b": batches}
            ).scalar_one()
        )


def test_two_processors_one_stopped_half_way(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=8000)
    batches = [world.batch(f"b{i}") for i in range(8)]  # spread over the 4 partitions
    log = tmp_path / "two.log"
    slow = {"PROCESSOR_MAX_BATCH": "50"}
    a = start_processor(s, "--instance-id", f"a-{unique}", log=log, env=slow)
    b = start_processor(s, "--instance-id", f"b-{unique}", log=log, env=slow)
    owners = wait_until(  # a alone first, then a and b after the rebalance: the broker's view of the group
        lambda: f"both processors to own commands partitions (group: {group_assignment(s, s.consumer_group)})",
        lambda: m if len(m := group_assignment(s, s.consumer_group)) == 2 and all(m) else None,
        60,
        0.2,
    )
    assert set.union(*owners) == set(range(s.commands_partitions))
    for i, bt in enumerate(batches):
        publish(s, bt, world.admin, rows([world.state_id(n) for n in range(i * 1000, (i + 1) * 1000)]))
    wait_until(  # kill point from the observed count of results, not from elapsed time
        lambda: f"3000 applied commands (saw {_applied(engine, batches)})",
        lambda: _applied(engine, batches) >= 3000,
        120,
        0.02,
    )
    a.send_signal(signal.SIGTERM)
    assert a.wait(60) == 0, "SIGTERM stops cleanly with exit 0"
    assert _applied(engine, batches) < 8000, "a was stopped half-way"
    assert b.poll() is None
    b.send_signal(signal.SIGTERM)
    assert b.wait(60) == 0
    last = start_processor(s, "--instance-id", f"c-{unique}", "--until-idle", log=log)
    assert last.wait(180) == 0, log.read_text()[-3000:]
    results = read_topic(s, s.topics.results)
    assert len(results) == 8000 and len({r["command_id"] for r in results}) == 8000
    events = read_topic(s, s.topics.enrollment_events)
    assert len(events) == 8000
    for i, bt in enumerate(batches):
        assert world.members(bt) == {world.user_id(n) for n in range(i * 1000, (i + 1) * 1000)}
