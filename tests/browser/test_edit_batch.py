"""The Edit Batch rule, the 10k CSV and sign-in in real headless Chromium, against `participants dashboard` pieces.

The dashboard runs as the CLI runs it (uvicorn plus the read-model consumer thread, DashboardServer) on
private topics; uploads go through the real producer and processor.  Every page needs a session: the tests sign
in as the world's mentor through the login form (the password is set by the fixture).  Chromium is Debian's
package driven by Playwright; when it is missing the tests fail (they never skip).  Screenshots go to
artifacts/screenshots/.
"""

from __future__ import annotations

import csv
import io
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect, sync_playwright
from sqlalchemy import Engine, text

from dashboard.rules import EDIT_LIMIT_MESSAGE
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from processor.imports import import_batches
from producer.progress import ProgressRow, publish_progress
from tests.support.dashboard import World, cleanup_world, make_world, private_topics, process, serving, upload
from tests.support.signin import PASSWORD, set_password

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BIG = 10_000
COMPLETED_AT = 1_788_256_800_000  # 2026-09-01T10:00:00Z
UPDATED_AT = 1_788_300_000_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium).")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def world(base_settings: Settings, engine: Engine) -> Iterator[World]:
    token = uuid.uuid4().hex[:10]
    with private_topics(base_settings, token) as settings:
        kinds = [(name, "invite-only", "ongoing") for name in ("limit", "big", "edit")]
        w = make_world(engine, settings, token, BIG, kinds)
        # A last batch of the same state that the mentor does not mentor (the admin's): the mentor may not see it.
        other = f"batch-{token}-other"
        header = "batch_id,course_id,course_name,state,enrollment_type,status,start_date,end_date,mentors\n"
        row = f"{other},course-{token},Course {token},{w.state},invite-only,ongoing,2026-01-01,2027-12-31,\n"
        assert not import_batches(engine, io.BytesIO((header + row).encode())).errors
        w = replace(w, batches=(*w.batches, other))
        set_password(engine, w.mentor)
        try:
            yield w
        finally:
            cleanup_world(engine, w)


@pytest.fixture(scope="module")
def dashboard(world: World, engine: Engine) -> Iterator[str]:
    with serving(world.settings, engine) as url:
        yield url


def _wait_for(what: str, check: Callable[[], object], timeout_s: float = 240.0) -> None:
    """Polls ``check`` until it returns True; on timeout the message shows what it returned last."""
    deadline = time.monotonic() + timeout_s
    while (last := check()) is not True:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what} (last seen: {last!r})")
        time.sleep(0.3)


@pytest.fixture(scope="module")
def api(world: World, dashboard: str) -> Iterator[httpx.Client]:
    """An HTTP client signed in as the mentor (the JSON API needs a session too)."""
    with httpx.Client(base_url=dashboard, timeout=10) as client:
        r = client.post("/login", data={"username": world.mentor, "password": PASSWORD}, follow_redirects=False)
        assert r.status_code == 303, r.text
        yield client


def _sign_in(context: BrowserContext, url: str, world: World) -> Page:
    """The login form, as a person fills it in; the page is left on the workspace."""
    page = context.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{url}/workspace")
    page.wait_for_url("**/login?next=%2Fworkspace")
    page.locator("#username").fill(world.mentor)
    page.locator("#password").fill(PASSWORD)
    page.locator("#sign-in").click()
    page.wait_for_url("**/workspace")
    expect(page.locator("#signed-in-user")).to_have_text(world.mentor)
    return page


def _count(api: httpx.Client, batch_id: str) -> int:
    return int(api.get(f"/api/batches/{batch_id}").json()["participant_count"])


def _count_is(api: httpx.Client, batch_id: str, expected: int) -> Callable[[], object]:
    def check() -> object:
        n = _count(api, batch_id)
        return True if n == expected else f"{n} participants"

    return check


def _open_edit_via_courses(page: Page, url: str, world: World, batch_id: str) -> None:
    """Course card → its batches → Edit."""
    page.goto(f"{url}/courses")
    course = page.locator(f'.course-section[data-course-id="course-{world.token}"]')
    course.locator(f'.batch-card[data-batch-id="{batch_id}"] a[data-edit-link]').click()
    page.wait_for_url(f"**/batches/{batch_id}/edit?**")


def _open_edit_via_workspace(page: Page, url: str, world: World, batch_id: str) -> None:
    """Workspace tab → My batches → Edit."""
    page.goto(f"{url}/courses")
    page.get_by_role("link", name="My batches").click()
    page.wait_for_url("**/workspace")
    page.locator(f'.batch-card[data-batch-id="{batch_id}"] a[data-edit-link]').click()
    page.wait_for_url(f"**/batches/{batch_id}/edit?**")


PATHS = {"courses": _open_edit_via_courses, "workspace": _open_edit_via_workspace}


def _filled(bar: Locator) -> float:
    """How much of its track a progress bar fills (0..1), as laid out."""
    return float(bar.evaluate("e => e.getBoundingClientRect().width / e.parentElement.getBoundingClientRect().width"))


def _policy_refusals(page: Page) -> list[str]:
    """Console messages of the Content-Security-Policy refusing something the page uses (should stay empty)."""
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
    return refused


def _expect_controls_disabled(page: Page, how: str) -> None:
    """Over the limit every Edit Batch control is still on the page, rendered disabled."""
    for selector in ("#participants-list", "#candidates-list", "#candidate-search", "#search-candidates"):
        expect(page.locator(selector), f"{selector} {how}").to_be_disabled()
    expect(page.locator("#participants-list input[name=remove]"), how).to_be_disabled()
    expect(page.locator("#save-participants"), how).to_be_disabled()


def test_edit_controls_enabled_at_the_limit_and_disabled_with_the_message_above_it(
    browser: Browser, world: World, dashboard: str, api: httpx.Client, engine: Engine
) -> None:
    s = world.settings
    limit = s.ui_participant_limit
    batch_id = world.batches[0]
    SHOTS.mkdir(parents=True, exist_ok=True)

    upload(s, batch_id, world.admin, world.teachers[:limit])
    process(s, engine)
    _wait_for(f"{limit} participants", _count_is(api, batch_id, limit))

    signed_in = browser.new_context()
    page = _sign_in(signed_in, dashboard, world)
    for name, open_edit in PATHS.items():
        open_edit(page, dashboard, world, batch_id)
        expect(page.locator("#edit-participant-count"), f"count via {name}").to_have_text(str(limit))
        expect(page.locator("#participants-list"), f"list via {name}").to_be_enabled()
        removes = page.locator("#participants-list input[name=remove]")
        expect(removes).to_have_count(limit)
        assert removes.evaluate_all("boxes => boxes.filter(b => b.disabled || b.checked).length") == 0
        expect(page.locator("#candidate-search")).to_be_enabled()
        expect(page.locator("#save-participants")).to_be_enabled()
        expect(page.locator("#edit-message")).to_have_count(0)
        expect(page.get_by_text(EDIT_LIMIT_MESSAGE)).to_have_count(0)
        if name == "courses":
            page.screenshot(path=str(SHOTS / "edit-batch-enabled.png"), full_page=True)

    upload(s, batch_id, world.admin, [world.teachers[limit]])  # the backend has no limit
    process(s, engine)
    _wait_for(f"{limit + 1} participants", _count_is(api, batch_id, limit + 1))

    for name, open_edit in PATHS.items():
        open_edit(page, dashboard, world, batch_id)
        expect(page.locator("#edit-participant-count"), f"count via {name}").to_have_text(str(limit + 1))
        _expect_controls_disabled(page, f"via {name}")
        expect(page.locator("#edit-message"), f"message via {name}").to_have_text(EDIT_LIMIT_MESSAGE)
        expect(page.locator("#edit-message")).to_be_visible()
        if name == "workspace":
            page.screenshot(path=str(SHOTS / "edit-batch-disabled.png"), full_page=True)
    page.goto(f"{dashboard}/batches/{batch_id}")
    expect(page.locator("#participant-count")).to_have_text(str(limit + 1))
    page.screenshot(path=str(SHOTS / "batch-page-over-limit.png"), full_page=True)
    signed_in.close()

    # The state is in the server-rendered HTML: it holds without JavaScript (signing in included).
    context = browser.new_context(java_script_enabled=False)
    no_js = _sign_in(context, dashboard, world)
    no_js.goto(f"{dashboard}/batches/{batch_id}/edit?from=workspace")
    _expect_controls_disabled(no_js, "without JavaScript")
    expect(no_js.locator("#edit-message")).to_have_text(EDIT_LIMIT_MESSAGE)
    context.close()


def _members(api: httpx.Client, batch_id: str) -> set[str]:
    return {p["user_id"] for p in api.get(f"/api/batches/{batch_id}/participants").json()["participants"]}


def _ui_uploads(api: httpx.Client, batch_id: str) -> list[dict[str, object]]:
    return [u for u in api.get("/api/uploads", params={"batch": batch_id}).json() if u["kind"] == "ui"]


def _mark_one_removal_and_two_adds(page: Page, leaving: str, joining: tuple[str, str], world: World) -> None:
    """Ticks "Remove" for one member, then finds and ticks "Add" for two people, one search each."""
    page.locator(f'#participants-list input[name=remove][value="{leaving}"]').check()
    for person in joining:
        page.locator("#candidate-search").fill(world.name_of(person))
        page.locator("#search-candidates").click()
        page.wait_for_load_state()
        expect(page.locator(f'#participants-list input[name=remove][value="{leaving}"]')).to_be_checked()
        page.locator(f'#candidates-list input[name=add][value="{person}"]').check()
    for person in joining:  # the search kept the first one listed and ticked
        expect(page.locator(f'#candidates-list input[name=add][value="{person}"]')).to_be_checked()


def test_a_single_click_in_the_edit_batch_list_removes_nobody(
    browser: Browser, world: World, dashboard: str, api: httpx.Client, engine: Engine
) -> None:
    s, batch_id = world.settings, world.batches[2]
    members = list(world.teachers[200:205])
    upload(s, batch_id, world.admin, members)
    process(s, engine)
    _wait_for("5 participants", _count_is(api, batch_id, 5))

    context = browser.new_context()
    page = _sign_in(context, dashboard, world)
    _open_edit_via_workspace(page, dashboard, world, batch_id)
    rows = page.locator("#participants-list tbody tr[data-user-id]")
    expect(rows).to_have_count(5)
    marked = page.locator("#edit-form input[type=checkbox]:checked")
    expect(marked).to_have_count(0)
    rows.first.locator("td.name").click()  # a plain click on a name, then on another cell of a row
    rows.nth(2).locator("td").nth(1).click()
    expect(marked).to_have_count(0)
    page.locator("#save-participants").click()  # saving without marking anyone
    page.wait_for_load_state()
    expect(page.locator("#edit-error")).to_contain_text("Nothing changed")
    expect(page.locator("#change-summary")).to_have_count(0)
    expect(rows).to_have_count(5)
    page.screenshot(path=str(SHOTS / "edit-batch-nothing-marked.png"), full_page=True)
    context.close()
    assert _count(api, batch_id) == 5 and _members(api, batch_id) == set(members)
    assert _ui_uploads(api, batch_id) == []  # and the next test proves no upload was published late


def test_the_confirmation_names_the_change_cancel_keeps_the_batch_and_confirm_applies_it(
    browser: Browser, world: World, dashboard: str, api: httpx.Client, engine: Engine
) -> None:
    s, batch_id = world.settings, world.batches[2]
    members = set(world.teachers[200:205])
    leaving, joining = world.teachers[202], (world.teachers[300], world.teachers[301])
    SHOTS.mkdir(parents=True, exist_ok=True)

    # Without JavaScript: the page is safe on its own (the confirmation is a server-side step).
    context = browser.new_context(java_script_enabled=False)
    page = _sign_in(context, dashboard, world)
    page.goto(f"{dashboard}/batches/{batch_id}/edit?from=workspace")
    _mark_one_removal_and_two_adds(page, leaving, joining, world)
    page.locator("#save-participants").click()
    page.wait_for_load_state()
    expect(page.locator("#change-summary")).to_have_text("add 2, remove 1")
    expect(page.locator("#change-adds li")).to_contain_text([f"{world.name_of(u)} · {u}" for u in joining])
    expect(page.locator("#change-removes li")).to_contain_text([f"{world.name_of(leaving)} · {leaving}"])
    page.screenshot(path=str(SHOTS / "edit-batch-confirm.png"), full_page=True)

    page.locator("#cancel-change").click()  # cancelling: back on the page, nothing marked, nothing sent
    page.wait_for_url(f"**/batches/{batch_id}/edit?from=workspace")
    expect(page.locator("#edit-form input[type=checkbox]:checked")).to_have_count(0)
    expect(page.locator("#participants-list tbody tr[data-user-id]")).to_have_count(5)
    assert _members(api, batch_id) == members and _ui_uploads(api, batch_id) == []

    _mark_one_removal_and_two_adds(page, leaving, joining, world)
    page.locator("#save-participants").click()
    page.wait_for_load_state()
    expect(page.locator("#confirm-change")).to_have_text("Confirm: add 2, remove 1")
    page.locator("#confirm-change").click()
    page.wait_for_url(f"**/uploads?batch={batch_id}")
    context.close()

    process(s, engine)
    expected = (members - {leaving}) | set(joining)
    _wait_for("the confirmed change", lambda: _members(api, batch_id) == expected or _members(api, batch_id))

    def exactly_two_ui_uploads() -> object:
        ui = _ui_uploads(api, batch_id)
        seen = sorted(((u["requested_by"], u["published"], u["outcomes"]) for u in ui), key=repr)
        want = [(world.mentor, 1, {"APPLIED": 1}), (world.mentor, 2, {"APPLIED": 2})]
        return True if seen == want else seen

    _wait_for("exactly the two UI uploads of the confirmed change", exactly_two_ui_uploads)
    assert _count(api, batch_id) == 6


def test_csv_download_of_a_10k_batch_has_every_participant_with_progress(
    browser: Browser, world: World, dashboard: str, api: httpx.Client, engine: Engine
) -> None:
    s = world.settings
    batch_id = world.batches[1]
    SHOTS.mkdir(parents=True, exist_ok=True)
    upload(s, batch_id, world.admin, world.teachers)
    process(s, engine)
    expected = {u: (i % 101) for i, u in enumerate(world.teachers)}
    rows = [ProgressRow(0, batch_id, u, p, COMPLETED_AT if p == 100 else None, UPDATED_AT) for u, p in expected.items()]
    publish_progress(s, default_codec(), rows)
    _wait_for(f"{BIG} participants", _count_is(api, batch_id, BIG))

    def progress_in() -> object:
        with engine.connect() as conn:
            n = conn.execute(
                text("SELECT count(*) FROM dash_progress WHERE group_id = :g AND batch_id = :b"),
                {"g": s.dashboard_group, "b": batch_id},
            ).scalar_one()
        return True if int(n) == BIG else f"{n} progress rows"

    _wait_for("progress of every participant", progress_in)

    context = browser.new_context()
    page = _sign_in(context, dashboard, world)
    refused = _policy_refusals(page)
    page.goto(f"{dashboard}/batches/{batch_id}?sort=progress&dir=desc")
    expect(page.locator("#participant-count")).to_have_text(str(BIG))
    expect(page.locator("#participants tbody tr")).to_have_count(50)
    page.goto(f"{dashboard}/batches/{batch_id}")  # mixed progress on the first page
    shown = page.locator("#participants tbody tr .progress-cell").evaluate_all(
        "cells => cells.map(c => [c.textContent.trim(), c.querySelector('.bar > span').getBoundingClientRect().width"
        " / c.querySelector('.bar').getBoundingClientRect().width])"
    )
    assert len({label for label, _ in shown}) > 10, shown
    for label, filled in shown:  # bar widths come from CSS classes (the policy refuses inline styles)
        share = 1.0 if label == "Completed" else int(label.rstrip("%")) / 100  # completers: 100, Completed
        assert filled == pytest.approx(share, abs=0.02), (label, filled)
    assert refused == []
    page.screenshot(path=str(SHOTS / "batch-page-10k.png"), full_page=True)
    with page.expect_download() as info:
        page.locator("#download-csv").click()
    download = info.value
    data = Path(download.path()).read_bytes()
    context.close()

    assert data.startswith(b"\xef\xbb\xbf")
    table = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert len(table) == BIG
    assert {r["user_id"]: int(r["progress"]) for r in table} == expected
    done = [r for r in table if r["progress"] == "100"]
    assert done and all(r["completed_at"] == "2026-09-01T10:00:00Z" for r in done)
    assert all(r["added_via"] == "backend" and r["state_id"].startswith(world.state) for r in table)


def test_upload_page_shows_progress_live_while_the_upload_runs(
    browser: Browser, world: World, dashboard: str, api: httpx.Client, engine: Engine
) -> None:
    s = world.settings
    batch_id = world.batches[1]
    # Teachers who have not completed the course (the CSV test reports i % 101 percent; 100 completes, and a
    # completer's removal is refused with COURSE_COMPLETED).
    leaving = [t for i, t in enumerate(world.teachers) if i % 101 != 100][-3:]
    upload_id = upload(s, batch_id, world.admin, leaving, action="REMOVE")
    _wait_for("the upload record", lambda: api.get(f"/api/uploads/{upload_id}").is_success)

    context = browser.new_context()
    page = _sign_in(context, dashboard, world)
    refused = _policy_refusals(page)
    page.goto(f"{dashboard}/uploads/{upload_id}")
    box = page.locator(f'.upload-progress[data-upload-id="{upload_id}"]')
    expect(box.locator('[data-field="state"]')).to_have_text("In progress")
    bar = box.locator('[data-field="bar"]')
    expect(bar).to_have_class("pct-0")
    assert _filled(bar) == pytest.approx(0.0, abs=0.01)
    expect(box.locator('[data-field="published"]')).to_have_text("3")
    process(s, engine)  # the page is not reloaded: its script follows /api/uploads/{id}
    expect(box.locator('[data-field="state"]')).to_have_text("Complete", timeout=60_000)
    expect(box.locator('[data-field="applied"]')).to_have_text("3")
    expect(bar).to_have_class("pct-100")  # the script moved the bar under the strict policy
    assert _filled(bar) == pytest.approx(1.0, abs=0.01)
    assert refused == []
    page.screenshot(path=str(SHOTS / "upload-complete.png"), full_page=True)
    context.close()


def test_an_anonymous_visitor_is_sent_to_the_login_page_and_sees_no_personal_data(
    browser: Browser, world: World, dashboard: str
) -> None:
    context = browser.new_context()
    page = context.new_page()
    batch_id = world.batches[1]
    response = page.goto(f"{dashboard}/batches/{batch_id}?sort=name")
    assert response is not None and response.ok
    page.wait_for_url(re.compile(r"/login\?next="))
    expect(page.locator("#login-form")).to_be_visible()
    html = page.content()
    assert world.name_of(world.teachers[0]) not in html and world.teachers[0] not in html
    assert f"{world.state}-T" not in html and world.mentor not in html
    for path in (f"/batches/{batch_id}/participants.csv", f"/api/batches/{batch_id}/participants", "/api/courses"):
        r = page.request.get(f"{dashboard}{path}")
        assert r.status == 401 and world.teachers[0] not in r.text(), path
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "login.png"), full_page=True)

    # Signing in from here returns to the page that was asked for.
    page.locator("#username").fill(world.mentor)
    page.locator("#password").fill(PASSWORD)
    page.locator("#sign-in").click()
    page.wait_for_url(f"**/batches/{batch_id}?sort=name")
    expect(page.locator("#participant-count")).to_be_visible()
    # Signing out ends the session: the next page asks to sign in again.
    page.locator("#sign-out").click()
    page.wait_for_url("**/login")
    page.goto(f"{dashboard}/batches/{batch_id}")
    page.wait_for_url(re.compile(r"/login\?next="))
    context.close()


def test_a_mentor_gets_404_on_another_batchs_page_and_csv(browser: Browser, world: World, dashboard: str) -> None:
    other = world.batches[-1]  # same state, not the mentor's
    context = browser.new_context()
    page = _sign_in(context, dashboard, world)
    expect(page.locator(f'.batch-card[data-batch-id="{other}"]')).to_have_count(0)
    response = page.goto(f"{dashboard}/batches/{other}")
    assert response is not None and response.status == 404
    expect(page.locator("#error-message")).to_have_text(f"Batch {other} does not exist.")
    csv_response = page.request.get(f"{dashboard}/batches/{other}/participants.csv")
    assert csv_response.status == 404
    assert page.request.get(f"{dashboard}/batches/{world.batches[0]}/participants.csv").status == 200
    context.close()
