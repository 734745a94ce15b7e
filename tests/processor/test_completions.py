"""The completion rule on the real broker and database: completions learned from course progress, exactly once.

A remove of someone who completed the batch's course is REJECTED with COURSE_COMPLETED unless the upload says
include_completed; undo of an add reports them; store rebuild restores the completions and replay agrees.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import Engine, create_engine, text

from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from producer.progress import ProgressRow, publish_progress
from tests.processor.test_reprocessing import as_role_of, private_db  # noqa: F401 - the fixture
from tests.support.helpers import World, cli, process, publish, rows, start_processor

pytestmark = pytest.mark.integration

DONE_AT = "2026-11-01T10:00:00+00:00"


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


def _progress_file(tmp_path: object, batch: str, lines: list[tuple[str, int, str]]) -> str:
    path = f"{tmp_path}/progress.csv"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("batch_id,user_id,progress,completed_at\n")
        fh.writelines(f"{batch},{user},{progress},{done}\n" for user, progress, done in lines)
    return path


def _ids_csv(world: World, numbers: range) -> bytes:
    return ("user_id\n" + "".join(f"{world.user_id(n)}\n" for n in numbers)).encode()


def test_removing_a_completer_is_refused_unless_the_upload_includes_completed(
    isolated_settings: Settings, engine: Engine, unique: str, running: None, tmp_path: object
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=6)
    batch = world.batch("done")
    added = cli(s, "add", "--batch", batch, "--as", world.admin, "-", "--wait", input_bytes=_ids_csv(world, range(6)))
    assert added.returncode == 0, added.stderr.decode()
    # Published (and acknowledged) before the remove: the remove must see it (processor.completions).
    progress = [(world.user_id(0), 100, DONE_AT), (world.user_id(1), 100, DONE_AT), (world.user_id(2), 40, "")]
    pub = cli(s, "progress", "publish", _progress_file(tmp_path, batch, progress))
    assert pub.returncode == 0, pub.stderr.decode()
    # The same file as the add: sent again to the same batch, it is a repeat unless said to be meant (issue 13).
    removed = cli(
        s, "remove", "--batch", batch, "--as", world.admin, "-", "--wait", "--json", "--allow-repeat",
        input_bytes=_ids_csv(world, range(6)),
    )  # fmt: skip
    assert removed.returncode == 3, removed.stderr.decode()
    assert _json(removed)["reasons"] == {"UNENROLLED": 4, "COURSE_COMPLETED": 2}
    assert world.members(batch) == {world.user_id(0), world.user_id(1)}
    with engine.connect() as conn:
        done = conn.execute(
            text("SELECT user_id, course_id, completed_at FROM course_completions WHERE batch_id = :b ORDER BY 1"),
            {"b": batch},
        ).all()
    assert [(r[0], r[1], r[2].isoformat()) for r in done] == [
        (world.user_id(0), f"course-{unique}", DONE_AT),
        (world.user_id(1), f"course-{unique}", DONE_AT),
    ]
    forced = cli(
        s, "remove", "--batch", batch, "--as", world.admin, "-", "--include-completed", "--wait", "--json",
        input_bytes=_ids_csv(world, range(2)),
    )  # fmt: skip
    assert forced.returncode == 0, forced.stderr.decode()
    assert _json(forced)["reasons"] == {"UNENROLLED": 2}
    assert world.members(batch) == set() and world.count(batch) == 0
    with engine.connect() as conn:
        flags = conn.execute(
            text("SELECT upload_id, include_completed FROM uploads WHERE batch_id = :b AND kind = 'remove'"),
            {"b": batch},
        ).all()
    assert dict(flags) == {_json(removed)["upload_id"]: False, _json(forced)["upload_id"]: True}


def test_undo_of_an_add_reports_completers_instead_of_removing_them(
    isolated_settings: Settings, engine: Engine, unique: str, running: None
) -> None:
    s = isolated_settings
    world = World(engine, unique, teachers=4)
    batch = world.batch("undo")
    added = cli(
        s, "add", "--batch", batch, "--as", world.admin, "-", "--wait", "--json", input_bytes=_ids_csv(world, range(4))
    )  # fmt: skip
    assert added.returncode == 0, added.stderr.decode()
    publish_progress(s, default_codec(), [ProgressRow(2, batch, world.user_id(3), 100, 1_790_000_000_000, None)])
    upload = str(_json(added)["upload_id"])
    undone = cli(s, "undo", upload, "--as", world.admin, "--wait", "--json")
    assert undone.returncode == 3, undone.stderr.decode()
    assert _json(undone)["reasons"] == {"UNENROLLED": 3, "COURSE_COMPLETED": 1}
    assert world.members(batch) == {world.user_id(3)}
    again = cli(s, "undo", upload, "--as", world.admin, "--include-completed", "--wait", "--json")
    summary = _json(again)
    assert summary["reasons"] == {"UNENROLLED": 1, "CHANGED_SINCE": 3}, again.stderr.decode()
    assert world.members(batch) == set()


def test_rebuild_restores_completions_and_replay_and_verify_agree(
    isolated_settings: Settings,
    private_db: str,  # noqa: F811 - the fixture
    unique: str,
) -> None:
    s = replace(isolated_settings, database_url=private_db)
    ps = as_role_of(s, "processor")
    engine = create_engine(private_db)
    try:
        world = World(engine, unique, teachers=10)
        batch = world.batch("rebuild")
        publish(s, batch, world.admin, rows([world.state_id(n) for n in range(10)]))
        stamp = 1_790_000_000_000
        done = [ProgressRow(n + 2, batch, world.user_id(n), 100, stamp + n, None) for n in range(3)]
        done.append(ProgressRow(9, batch, world.user_id(0), 100, stamp + 999, None))  # a later report: ignored
        publish_progress(s, default_codec(), done)
        publish(s, batch, world.admin, rows([world.state_id(n) for n in range(10)]), action="REMOVE")
        process(s, engine)
        query = "SELECT batch_id, user_id, course_id, completed_at FROM course_completions ORDER BY 1, 2"
        with engine.connect() as conn:
            completions = conn.execute(text(query)).all()
            reasons = dict(
                conn.execute(text("SELECT reason, count(*) FROM command_ledger WHERE action = 'REMOVE' GROUP BY 1"))
                .tuples()
                .all()
            )
        assert len(completions) == 3 and reasons == {"UNENROLLED": 7, "COURSE_COMPLETED": 3}
        assert world.members(batch) == {world.user_id(n) for n in range(3)}
        with engine.begin() as conn:
            conn.execute(text("TRUNCATE enrolments, command_ledger, uploads, consumer_positions, course_completions"))
            conn.execute(text("UPDATE course_batches SET participant_count = 0"))
        out = cli(ps, "store", "rebuild")
        assert out.returncode == 0, out.stderr.decode()
        assert "3 course completions" in out.stdout.decode()
        with engine.connect() as conn:
            assert conn.execute(text(query)).all() == completions
        replay = _json(cli(ps, "replay", "--from-beginning", "--json"))
        assert replay["applied_now"] == {} and replay["already_applied"] == {
            "ENROLLED": 10,
            "UNENROLLED": 7,
            "COURSE_COMPLETED": 3,
        }
        verify = cli(ps, "store", "verify", "--json")
        assert verify.returncode == 0 and _json(verify)["ok"] is True
        # The processor re-reads course progress from the start (no stored position): same rows, nothing twice;
        # a new remove of a completer is still refused.
        late = publish(s, batch, world.admin, rows([world.state_id(0)]), action="REMOVE")
        process(s, engine)
        with engine.connect() as conn:
            assert conn.execute(text(query)).all() == completions
            positions = conn.execute(
                text("SELECT sum(next_offset) FROM consumer_positions WHERE topic = :t"),
                {"t": s.topics.course_progress},
            ).scalar_one()
        assert positions == len(done)
        with engine.connect() as conn:
            refused = conn.execute(
                text("SELECT reason FROM command_ledger WHERE upload_id = :u"), {"u": late.upload_id}
            ).scalar_one()
        assert refused == "COURSE_COMPLETED"
    finally:
        engine.dispose()
