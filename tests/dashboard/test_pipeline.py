"""The dashboard end to end on the real stack: producer → processor → topics → read model → pages and API.

Each test has private topics and groups (isolated_settings) and a state of its own; the UI limit is set
small here (the rule is the setting, not a number), the browser test uses the default.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from dashboard.consumer import ReadModelConsumer, rebuild
from dashboard.rules import EDIT_LIMIT_MESSAGE
from dashboard.web.app import create_app
from dashboard.web.edit import kafka_publisher
from enrolment.errors import EXIT_INPUT
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from participants import cli
from participants.demo_data import write_demo_data
from processor.imports import import_users
from producer.progress import ProgressRow, publish_progress
from producer.publish import UploadRequest
from tests.support.dashboard import World, catch_up, cleanup_world, make_world, process, read_model_content, upload
from tests.support.signin import csrf_token, signed_in_client

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.integration

LIMIT = 5
T1 = 1_788_000_000_000  # 2026-08-29
T2 = T1 + 3_600_000


@pytest.fixture()
def world(isolated_settings: Settings, engine: Engine, unique: str) -> Iterator[World]:
    settings = replace(isolated_settings, ui_participant_limit=LIMIT)
    w = make_world(engine, settings, unique, 12, [("a", "invite-only", "ongoing"), ("b", "invite-only", "ongoing")])
    yield w
    cleanup_world(engine, w)


def _client(world: World, engine: Engine) -> TestClient:
    """Signed in as the world's mentor (who mentors every batch of the world)."""
    return signed_in_client(create_app(world.settings, engine), engine, world.mentor)


def _member_rows(engine: Engine, world: World, batch_id: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT user_id, added_via FROM dash_members WHERE group_id = :g AND batch_id = :b"),
            {"g": world.settings.dashboard_group, "b": batch_id},
        ).all()
    return {r[0]: r[1] for r in rows}


def test_backend_upload_and_progress_reach_the_pages_api_and_csv(world: World, engine: Engine) -> None:
    s, batch = world.settings, world.batches[0]
    people = list(world.teachers[:8])
    upload_id = upload(s, batch, world.admin, [*people, "no-such-user"])
    process(s, engine)
    # The newest update first, then an older one for the same learner (out of order): the newer must stay.
    newest = [ProgressRow(0, batch, u, 10 * i, None, T2) for i, u in enumerate(people)]
    newest[0] = ProgressRow(0, batch, people[0], 100, T2 - 1000, T2)
    publish_progress(s, default_codec(), newest)
    publish_progress(s, default_codec(), [ProgressRow(0, batch, people[0], 5, None, T1)])
    catch_up(s, engine)

    assert _member_rows(engine, world, batch) == dict.fromkeys(people, "backend")
    client = _client(world, engine)
    api = client.get(f"/api/batches/{batch}").json()
    assert api["participant_count"] == 8
    page = client.get(f"/api/batches/{batch}/participants", params={"sort": "progress", "dir": "desc", "size": 25})
    first = page.json()["participants"][0]
    assert (first["user_id"], first["progress"], first["completed_at"] is not None) == (people[0], 100, True)
    assert page.json()["total"] == 8

    found = client.get(f"/api/batches/{batch}/participants", params={"q": world.name_of(people[3])}).json()
    assert [p["user_id"] for p in found["participants"]] == [people[3]] and found["total"] == 1

    html = client.get(f"/batches/{batch}").text
    assert 'id="participant-count" data-count>8<' in html
    assert world.name_of(people[1]) in html and "70%" in html
    completer = html[html.index(f"<code>{people[0]}</code>") :].split("</tr>", 1)[0]
    assert "Completed</td>" in completer and "100%" not in html, "a completer shows Completed, as in Sunbird"

    response = client.get(f"/batches/{batch}/participants.csv")
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert len(rows) == 8
    by_id = {r["user_id"]: r for r in rows}
    assert by_id[people[0]]["progress"] == "100" and by_id[people[0]]["completed_at"].endswith("Z")
    assert by_id[people[2]]["progress"] == "20" and by_id[people[2]]["added_via"] == "backend"
    assert by_id[people[2]]["state_id"] == f"{world.state}-T000003"

    summary = client.get(f"/api/uploads/{upload_id}").json()
    assert summary["complete"] is True and summary["published"] == 9 and summary["processed"] == 9
    assert summary["outcomes"] == {"APPLIED": 8, "REJECTED": 1}
    assert summary["reasons"]["USER_NOT_FOUND"] == 1
    assert upload_id in client.get("/uploads", params={"batch": batch}).text
    detail = client.get(f"/uploads/{upload_id}").text
    assert "USER_NOT_FOUND" in detail and 'data-complete="true"' in detail

    # A re-imported name reaches the table (sort and search keys are copies kept current by the consumer).
    row = f"{people[4]},{world.state}-T000005,{world.state},Zoe Renamed,PUBLIC,active"
    import_users(engine, io.BytesIO(f"user_id,state_id,state,name,roles,status\n{row}\n".encode()))
    consumer = ReadModelConsumer(s, engine, default_codec())
    assert consumer.refresh_names() == 1
    found = client.get(f"/api/batches/{batch}/participants", params={"q": "zoe", "sort": "name"}).json()
    assert [(p["user_id"], p["name"]) for p in found["participants"]] == [(people[4], "Zoe Renamed")]
    last = client.get(f"/api/batches/{batch}/participants", params={"sort": "name", "dir": "desc", "size": 25})
    assert last.json()["participants"][0]["name"] == "Zoe Renamed"


def test_state_report_columns_reach_the_table_json_and_both_csv_formats(world: World, engine: Engine) -> None:
    s, batch = world.settings, world.batches[0]
    people = list(world.teachers[:3])
    upload(s, batch, world.admin, people)
    process(s, engine)
    publish_progress(s, default_codec(), [ProgressRow(0, batch, people[0], 100, T1 + 3_600_000 * 20, T2)])
    catch_up(s, engine)
    # 2026-08-29 20:00 UTC is 30/08 in India: Sunbird's report dates are the learners' (IST) dates.
    profile = "org_name,district,block,school_name,school_udise"
    lines = [
        f"{people[0]},{world.state}-T000001,{world.state},{world.name_of(people[0])},PUBLIC,active,"
        "GHS Org,Mysuru,Hunsur,=GHS Hunsur,29220100101"
    ]
    lines.append(f"{people[1]},{world.state}-T000002,{world.state},{world.name_of(people[1])},PUBLIC,active,,,,,")
    report = import_users(
        engine, io.BytesIO((f"user_id,state_id,state,name,roles,status,{profile}\n" + "\n".join(lines)).encode())
    )
    assert not report.errors and report.updated == 1, report  # people[1]: empty values, nothing stored before
    client = _client(world, engine)
    page = client.get(f"/api/batches/{batch}/participants", params={"sort": "user_id"}).json()["participants"]
    first = page[0]
    assert (first["org_name"], first["district"], first["block"], first["school_name"], first["school_udise"]) == (
        "GHS Org", "Mysuru", "Hunsur", "=GHS Hunsur", "29220100101"
    )  # fmt: skip
    assert (first["batch_id"], first["course_id"]) == (batch, f"course-{world.token}")
    assert page[1]["org_name"] is None and page[1]["school_udise"] is None
    html = client.get(f"/batches/{batch}").text
    assert "Mysuru" in html and "29220100101" in html and "participants.csv?format=sunbird" in html

    standard = client.get(f"/batches/{batch}/participants.csv")
    rows = {r["user_id"]: r for r in csv.DictReader(io.StringIO(standard.content.decode("utf-8-sig")))}
    assert rows[people[0]]["school_name"] == "'=GHS Hunsur" and rows[people[0]]["batch_id"] == batch
    assert rows[people[0]]["course_id"] == f"course-{world.token}" and rows[people[2]]["district"] == ""

    sunbird = client.get(f"/batches/{batch}/participants.csv", params={"format": "sunbird"})
    assert sunbird.status_code == 200 and sunbird.content.startswith(b"\xef\xbb\xbf")
    assert "course-progress-" in sunbird.headers["content-disposition"]
    table = list(csv.reader(io.StringIO(sunbird.content.decode("utf-8-sig"))))
    assert table[0] == [
        "External ID", "User ID", "User Name", "Email ID", "Mobile Number", "Organisation Name", "State Name",
        "District Name", "School UDISE Code", "School Name", "Block Name", "Enrolment Date", "Course Progress",
        "Completion Date", "Certificate Status",
    ]  # fmt: skip
    got = {r[1]: r for r in table[1:]}
    assert len(got) == 3
    assert got[people[0]][:11] == [
        f"{world.state}-T000001", people[0], world.name_of(people[0]), "", "", "GHS Org", world.state, "Mysuru",
        "29220100101", "'=GHS Hunsur", "Hunsur",
    ]  # fmt: skip
    assert re.fullmatch(r"\d{2}/\d{2}/\d{4}", got[people[0]][11])
    assert got[people[0]][12:] == ["100%", "30/08/2026", ""]
    assert got[people[1]][5] == "" and got[people[1]][12:] == ["0%", "", ""]
    assert client.get(f"/batches/{batch}/participants.csv", params={"format": "xlsx"}).status_code == 400


def test_edit_batch_changes_go_through_the_processor_as_ui_uploads(world: World, engine: Engine) -> None:
    s, batch = world.settings, world.batches[0]
    t = world.teachers
    upload(s, batch, world.admin, t[:3])
    process(s, engine)
    catch_up(s, engine)
    client = _client(world, engine)

    page = client.get(f"/batches/{batch}/edit")
    assert page.status_code == 200 and 'data-enabled="true"' in page.text
    assert re.search(r'<fieldset id="participants-list"[^>]*>', page.text).group(0).count("disabled") == 0  # type: ignore[union-attr]
    assert f'name="remove" value="{t[0]}"' in page.text and " checked" not in page.text  # nobody marked by default
    token = csrf_token(client)
    # Saving without marking anyone publishes nothing (today's multi-select removed everyone unselected).
    unmarked = client.post(f"/batches/{batch}/edit", data={"csrf_token": token, "from": "workspace"})
    assert unmarked.status_code == 200 and "Nothing changed" in unmarked.text
    # A search keeps the marks: t[3] ticked before stays listed and ticked beside the new matches.
    marks = {"remove": [t[2]], "add": [t[3]], "q": world.name_of(t[4]), "step": "search", "csrf_token": token}
    searched = client.post(f"/batches/{batch}/edit", data=marks).text
    for name, person, ticked in (("remove", t[2], True), ("add", t[3], True), ("add", t[4], False)):
        box = re.search(rf'<input type="checkbox" name="{name}" value="{person}"[^>]*>', searched)
        assert box and (" checked" in box.group(0)) is ticked, (name, person, box)
    # Mark t[2] for removal and t[3], t[4] to add: the post only shows the confirmation, naming them.
    form = {"from": "workspace", "remove": [t[2]], "add": [t[3], t[4]], "csrf_token": token}
    review = client.post(f"/batches/{batch}/edit", data=form, follow_redirects=False)
    assert review.status_code == 200 and 'id="change-summary">add 2, remove 1<' in review.text
    assert all(world.name_of(u) in review.text for u in (t[2], t[3], t[4]))
    digest = re.search(r'name="change" value="([0-9a-f]+)"', review.text).group(1)  # type: ignore[union-attr]
    catch_up(s, engine)
    assert _ui_upload_count(client, batch) == 0  # nothing published by the review
    # A confirmation whose change differs from what it showed (one more removal slipped in) publishes nothing.
    forged = {**form, "remove": [t[2], t[0]], "step": "confirm", "change": digest}
    again = client.post(f"/batches/{batch}/edit", data=forged, follow_redirects=False)
    assert again.status_code == 409 and 'id="change-summary">add 2, remove 2<' in again.text
    confirm = {**form, "step": "confirm", "change": digest}
    posted = client.post(f"/batches/{batch}/edit", data=confirm, follow_redirects=False)
    assert posted.status_code == 303 and posted.headers["location"].startswith("/uploads?batch=")
    process(s, engine)
    catch_up(s, engine)
    assert _member_rows(engine, world, batch) == {t[0]: "backend", t[1]: "backend", t[3]: "ui", t[4]: "ui"}
    ui_uploads = [u for u in client.get("/api/uploads", params={"batch": batch}).json() if u["kind"] == "ui"]
    assert sorted((u["requested_by"], u["outcomes"].get("APPLIED")) for u in ui_uploads) == [
        (world.mentor, 1),
        (world.mentor, 2),
    ]

    # 4 participants, limit 5: marking two more is refused with a sentence, before any confirmation.
    refused = client.post(f"/batches/{batch}/edit", data={"add": [t[5], t[6]], "csrf_token": token})
    assert refused.status_code == 409 and "can take 1 more participant" in refused.text
    assert 'id="change-summary"' not in refused.text
    assert len(client.get("/api/uploads", params={"batch": batch}).json()) == len(ui_uploads) + 1

    # The JSON API adds the fifth; a backend upload then takes the batch over the limit.
    csrf = {"X-CSRF-Token": token}
    added = client.post(f"/api/batches/{batch}/participants", json={"add": [t[5]]}, headers=csrf)
    assert added.status_code == 202 and added.json()["adds"] == [t[5]]
    upload(s, batch, world.admin, [t[6]])
    process(s, engine)
    catch_up(s, engine)
    state = client.get(f"/api/batches/{batch}/edit").json()
    assert (state["participant_count"], state["enabled"], state["message"]) == (LIMIT + 1, False, EDIT_LIMIT_MESSAGE)
    html = client.get(f"/batches/{batch}/edit").text
    assert re.search(r'<fieldset id="participants-list"[^>]*\sdisabled', html)
    assert re.search(r'<input id="candidate-search"[^>]*\sdisabled', html)
    assert re.search(r'<button [^>]*id="save-participants"\s+disabled', html)
    assert f'<p class="notice" id="edit-message" role="status">{EDIT_LIMIT_MESSAGE}</p>' in html
    over = client.post(f"/api/batches/{batch}/participants", json={"remove": [t[0]]}, headers=csrf)
    assert over.status_code == 409 and over.json() == {"detail": EDIT_LIMIT_MESSAGE}


def _ui_upload_count(client: TestClient, batch: str) -> int:
    return len([u for u in client.get("/api/uploads", params={"batch": batch}).json() if u["kind"] == "ui"])


def test_the_processor_still_refuses_ui_adds_over_the_limit(world: World, engine: Engine) -> None:
    """Even a UI command that bypasses the page's check is rejected by the processor (UI_LIMIT_REACHED)."""
    s, batch = world.settings, world.batches[1]
    upload(s, batch, world.admin, world.teachers[:LIMIT])
    process(s, engine)
    request = UploadRequest(batch_id=batch, action="ADD", requested_by=world.mentor, kind="ui", source="UI")
    upload_id = kafka_publisher(s, request, [world.teachers[LIMIT]])
    process(s, engine)
    catch_up(s, engine)
    summary = _client(world, engine).get(f"/api/uploads/{upload_id}").json()
    assert summary["reasons"] == {"UI_LIMIT_REACHED": 1} and summary["complete"]
    assert len(_member_rows(engine, world, batch)) == LIMIT


def test_replay_and_rebuild_end_with_the_same_read_model(
    world: World, engine: Engine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s, (a, b) = world.settings, world.batches
    t = world.teachers
    upload(s, a, world.admin, t[:6])
    upload(s, b, world.admin, t[:3])
    process(s, engine)
    upload(s, a, world.admin, t[:2], action="REMOVE")
    upload(s, a, world.admin, t[:1])
    process(s, engine)
    publish_progress(s, default_codec(), [ProgressRow(0, a, u, 50, None, T1) for u in t[:6]])
    publish_progress(s, default_codec(), [ProgressRow(0, a, t[3], 100, T2, T2)])
    first = catch_up(s, engine)
    before = read_model_content(engine, s.dashboard_group)
    assert [r[1] for r in before["members"] if r[0] == a] == [t[0], *t[2:6]]
    assert ({r[0]: r[2] for r in before["counts"]}) == {a: 5, b: 3}
    assert first.messages > 0

    # Positions lost: every topic is read again over the existing rows; idempotence keeps them as they are.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM dash_positions WHERE group_id = :g"), {"g": s.dashboard_group})
    replay = catch_up(s, engine)
    assert replay.ignored["replayed"] > 0 and replay.ignored["stale"] > 0
    assert read_model_content(engine, s.dashboard_group) == before

    # Rebuild from an empty read model (library call, then the CLI command) ends with the same content.
    deleted, _stats = rebuild(s, engine, default_codec(), timeout_s=120)
    assert deleted["dash_members"] == 8
    assert read_model_content(engine, s.dashboard_group) == before
    for name, value in _env(s).items():
        monkeypatch.setenv(name, value)
    assert cli.main(["dashboard", "rebuild", "--timeout", "120"]) == 0
    assert "8 participants in 2 batches" in capsys.readouterr().out
    assert read_model_content(engine, s.dashboard_group) == before


def _env(s: Settings) -> dict[str, str]:
    t = s.topics
    return {
        "KAFKA_BOOTSTRAP_SERVERS": s.kafka_bootstrap_servers,
        "DATABASE_URL": s.database_url,
        "TOPIC_COMMANDS": t.commands,
        "TOPIC_RESULTS": t.results,
        "TOPIC_ENROLLMENT_EVENTS": t.enrollment_events,
        "TOPIC_UPLOADS": t.uploads,
        "TOPIC_TELEMETRY": t.telemetry,
        "TOPIC_COURSE_PROGRESS": t.course_progress,
        "TOPIC_DEAD_LETTERS": t.dead_letters,
        "CONSUMER_GROUP": s.consumer_group,
        "DASHBOARD_GROUP": s.dashboard_group,
        "UI_PARTICIPANT_LIMIT": str(s.ui_participant_limit),
    }


def test_progress_publish_command_reads_the_demo_file(
    world: World, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    files = write_demo_data(tmp_path, teachers_per_state=40)
    for name, value in _env(world.settings).items():
        monkeypatch.setenv(name, value)
    assert cli.main(["progress", "publish", str(files.progress)]) == 0
    assert f"Published 40 progress updates to {world.settings.topics.course_progress}." in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("batch_id,user_id\nb,u\n", encoding="utf-8")
    assert cli.main(["progress", "publish", str(bad)]) == EXIT_INPUT
    assert "Nothing was published" in capsys.readouterr().err
    catch_up(world.settings, engine)
    with engine.connect() as conn:
        n, done = conn.execute(
            text(
                "SELECT count(*), count(*) FILTER (WHERE progress = 100 AND completed_at IS NOT NULL) "
                "FROM dash_progress WHERE group_id = :g AND batch_id = 'batch-ka-invite'"
            ),
            {"g": world.settings.dashboard_group},
        ).one()
    assert n == 40 and done > 0


def test_problems_are_sentences_not_tracebacks(world: World, engine: Engine) -> None:
    client = _client(world, engine)
    for path in ("/batches/nope", "/batches/nope/edit", "/batches/nope/participants.csv", "/uploads/nope"):
        r = client.get(path)
        assert r.status_code == 404 and "Traceback" not in r.text
        assert re.search(r'<p id="error-message">[A-Z][^<]+\.</p>', r.text), r.text
    assert client.get("/api/batches/nope").json() == {"detail": "Batch nope does not exist."}
    bad = client.get(f"/batches/{world.batches[0]}", params={"page": "x"})
    assert bad.status_code == 400 and "page" in bad.text
    assert client.get("/api/workspace").status_code == 200
    anonymous = TestClient(create_app(world.settings, engine))
    assert anonymous.get("/api/workspace").status_code == 401


def test_openapi_documents_the_json_api(world: World, engine: Engine) -> None:
    spec = _client(world, engine).get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/api/courses",
        "/api/workspace",
        "/api/batches/{batch_id}",
        "/api/batches/{batch_id}/participants",
        "/api/batches/{batch_id}/edit",
        "/api/uploads",
        "/api/uploads/{upload_id}",
        "/batches/{batch_id}/participants.csv",
    } <= paths
    assert "/courses" not in paths
    assert "ParticipantPageOut" in spec["components"]["schemas"]
