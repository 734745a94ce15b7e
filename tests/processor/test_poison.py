"""Poison never stalls (issue 11, item 4), on the real broker and database.

A command or a course-progress message whose text holds a NUL byte, produced raw (bypassing the producers'
checks), is dead-lettered by the decoder; with the decoder's check switched off, PostgreSQL refuses it and the
consumer splits its batch until the bad message is alone. Either way the rest of the batch is applied, the
position moves past the bad message in the same transaction scheme as any other, and the next upload completes:
no duplicate, no loss.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from confluent_kafka import TopicPartition
from sqlalchemy import Engine, text

from dashboard.consumer import ReadModelConsumer
from enrolment.kafka import clients
from enrolment.messages.codec import default_codec
from enrolment.messages.millis import now_ms
from enrolment.settings import Settings
from tests.support.helpers import World, cli, process, publish, read_topic, rows

pytestmark = pytest.mark.integration


def _command(batch_id: str, requester: str, identifier: str) -> bytes:
    upload_id = str(uuid.uuid4())
    record: dict[str, Any] = {
        "command_id": f"{upload_id}:2",
        "upload_id": upload_id,
        "batch_id": batch_id,
        "action": "ADD",
        "identifier": identifier,
        "id_type": "USER_ID",
        "line": 2,
        "requested_by": requester,
        "source": "BACKEND",
        "dry_run": False,
        "requested_at": now_ms(),
        "origin_upload_id": None,
        "origin_line": None,
    }
    return default_codec().encode("ParticipantCommand", record)  # the encoder checks nothing: raw bytes


def _progress(batch_id: str, user_id: str, progress: int) -> bytes:
    record = {"batch_id": batch_id, "user_id": user_id, "progress": progress, "completed_at": None}
    return default_codec().encode("CourseProgress", {**record, "updated_at": now_ms()})


def _produce_raw(settings: Settings, topic: str, key: bytes, values: list[bytes]) -> None:
    producer = clients.bulk_producer(settings)  # the test's own credentials (the broker refuses anonymous clients)
    for value in values:
        producer.produce(topic, value, key)
    assert producer.flush(30) == 0


def _dead_letters(engine: Engine, topic: str) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        found = conn.execute(
            text("SELECT kafka_offset, reason, detail FROM dead_letters WHERE source_topic = :t ORDER BY 1"),
            {"t": topic},
        ).all()
    return [(int(o), str(r), str(d)) for o, r, d in found]


def _dlq_messages(settings: Settings) -> list[dict[str, bytes]]:
    out = []
    for m in clients.read_all(settings, settings.topics.dead_letters, timeout=30):
        out.append({k: bytes(v or b"") for k, v in (m.headers() or [])})
    return out


def _positions_at_end(settings: Settings, engine: Engine) -> None:
    """Every commands partition's stored position is its high watermark (less the trailing transaction marker)."""
    consumer = clients.reader(settings)
    try:
        topic = settings.topics.commands
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(4)}
    finally:
        consumer.close()
    with engine.connect() as conn:
        stored = dict(
            conn.execute(
                text("SELECT kafka_partition, next_offset FROM consumer_positions WHERE group_id = :g AND topic = :t"),
                {"g": settings.consumer_group, "t": topic},
            ).all()
        )
    for p, end in ends.items():
        if end > 0:
            assert stored.get(p) == end, (p, stored, ends)


def _uploads_completed(engine: Engine, upload_ids: list[str]) -> int:
    with engine.connect() as conn:
        value = conn.execute(
            text("SELECT count(*) FROM uploads WHERE upload_id = ANY(:u) AND completed_at IS NOT NULL"),
            {"u": upload_ids},
        ).scalar_one()
    return int(value)


@pytest.mark.parametrize("where", ["decoder", "database"])
def test_a_nul_command_is_dead_lettered_and_the_rest_applied(
    isolated_settings: Settings, engine: Engine, unique: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = isolated_settings
    if where == "database":
        # The decoder's check off: the command reaches PostgreSQL, which refuses the batch; the processor splits it.
        monkeypatch.setattr("enrolment.messages.codec.CHECKED_TEXT", {})
    world = World(engine, unique, teachers=30)
    batch = world.batch("poison")
    first = publish(s, batch, world.admin, rows([world.state_id(n) for n in range(20)]))
    _produce_raw(s, s.topics.commands, batch.encode(), [_command(batch, world.admin, f"u-{unique}-\x00-x")])
    second = publish(s, batch, world.admin, rows([world.state_id(n) for n in range(20, 25)]))
    process(s, engine)  # one consumed batch holds the good commands and the bad one

    letters = _dead_letters(engine, s.topics.commands)
    assert len(letters) == 1, letters
    reason = "CONTROL_CHARACTER" if where == "decoder" else "DATABASE_REFUSED"
    assert letters[0][1] == reason and "NUL" in letters[0][2], letters
    assert world.members(batch) == {world.user_id(n) for n in range(25)}
    assert world.count(batch) == 25
    assert _uploads_completed(engine, [first.upload_id, second.upload_id]) == 2
    dlq = _dlq_messages(s)
    assert [d["dlq.reason"].decode() for d in dlq] == [reason]
    assert int(dlq[0]["dlq.source.offset"]) == letters[0][0]
    _positions_at_end(s, engine)

    # The next upload completes, and nothing before it is applied or published twice.
    third = publish(s, batch, world.admin, rows([world.state_id(n) for n in range(25, 30)]))
    process(s, engine)
    assert world.members(batch) == {world.user_id(n) for n in range(30)} and world.count(batch) == 30
    assert _uploads_completed(engine, [third.upload_id]) == 1
    results = read_topic(s, s.topics.results)
    assert len(results) == 30 and len({r["command_id"] for r in results}) == 30
    events = read_topic(s, s.topics.enrollment_events)
    assert len(events) == 30 and len({e["user_id"] for e in events}) == 30
    assert len(_dlq_messages(s)) == 1 and len(_dead_letters(engine, s.topics.commands)) == 1


@pytest.mark.parametrize("where", ["decoder", "database"])
def test_a_nul_progress_message_is_dead_lettered_by_the_read_model(
    isolated_settings: Settings, engine: Engine, unique: str, where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = isolated_settings
    if where == "database":
        monkeypatch.setattr("enrolment.messages.codec.CHECKED_TEXT", {})
    batch = f"b-{unique}"
    values = [_progress(batch, f"u-{unique}-{n}", 10 * n) for n in range(6)]
    values.insert(3, _progress(batch, f"u-{unique}-\x00", 50))
    _produce_raw(s, s.topics.course_progress, batch.encode(), values)
    consumer = ReadModelConsumer(s, engine, default_codec())
    try:
        consumer.catch_up(60)
        letters = _dead_letters(engine, s.topics.course_progress)
        assert [(o, r) for o, r, _d in letters] == [
            (3, "CONTROL_CHARACTER" if where == "decoder" else "DATABASE_REFUSED")
        ]
        assert "NUL" in letters[0][2]
        with engine.connect() as conn:
            progress = conn.execute(
                text("SELECT user_id, progress FROM dash_progress WHERE group_id = :g ORDER BY 1"),
                {"g": s.dashboard_group},
            ).all()
            stored = conn.execute(
                text("SELECT next_offset FROM dash_positions WHERE group_id = :g AND topic = :t"),
                {"g": s.dashboard_group, "t": s.topics.course_progress},
            ).scalar_one()
        assert [tuple(r) for r in progress] == [(f"u-{unique}-{n}", 10 * n) for n in range(6)]
        assert stored == 7
        assert [d["dlq.reason"].decode() for d in _dlq_messages(s)] == [letters[0][1]]
        # Only the progress component writes course progress: the processor's replay holds it back, saying so.
        with engine.connect() as conn:
            letter_id = conn.execute(
                text("SELECT id FROM dead_letters WHERE source_topic = :t"), {"t": s.topics.course_progress}
            ).scalar_one()
        out = cli(s, "dead-letters", "replay", "--id", str(letter_id))
        assert out.returncode == 3, out.stderr.decode()
        assert "participants progress publish" in out.stderr.decode() and "Traceback" not in out.stderr.decode()
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT replayed_at FROM dead_letters WHERE id = :i"), {"i": letter_id}).scalar_one()
                is None
            )
        # The next message is applied as usual.
        _produce_raw(s, s.topics.course_progress, batch.encode(), [_progress(batch, f"u-{unique}-9", 90)])
        consumer.catch_up(60)
        with engine.connect() as conn:
            n = conn.execute(
                text("SELECT count(*) FROM dash_progress WHERE group_id = :g"), {"g": s.dashboard_group}
            ).scalar_one()
        assert n == 7
    finally:
        consumer.close()
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM dash_progress WHERE group_id = :g"), {"g": s.dashboard_group})
            conn.execute(text("DELETE FROM dash_positions WHERE group_id = :g"), {"g": s.dashboard_group})
