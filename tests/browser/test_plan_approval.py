"""A state admin opens a waiting plan in real headless Chromium, sees its counts, approves it and watches the
upload that applies it complete — the dashboard (web app and read model) as `participants dashboard` runs it,
the real processor in a child process.  Chromium is Debian's package; when it is missing the test fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from sqlalchemy import Engine, text

from enrolment.files import InputRow
from enrolment.settings import Settings
from producer.plans import PlanOptions, make_plan
from tests.browser.test_edit_batch import CHROMIUM, CHROMIUM_ARGS, SHOTS
from tests.support.dashboard import World, cleanup_world, make_world, private_topics, serving
from tests.support.helpers import add_team, start_processor
from tests.support.signin import PASSWORD, set_password

pytestmark = pytest.mark.browser
PEOPLE = 300


@pytest.fixture()
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install -y chromium).")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def world(base_settings: Settings, engine: Engine) -> Iterator[tuple[World, str]]:
    token = uuid.uuid4().hex[:10]
    with private_topics(base_settings, token) as settings:
        w = make_world(engine, settings, token, PEOPLE, [("plan", "invite-only", "ongoing")])
        team = add_team(engine, f"team-{token}", w.state, [w.state])
        set_password(engine, w.admin)
        try:
            yield w, team
        finally:
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM plans WHERE batch_id = ANY(:b)"), {"b": list(w.batches)})
                conn.execute(text("DELETE FROM served_states WHERE user_id = :u"), {"u": team})
            cleanup_world(engine, w)


@pytest.fixture()
def dashboard(world: tuple[World, str], engine: Engine) -> Iterator[str]:
    with serving(world[0].settings, engine) as url:
        yield url


def test_a_state_admin_approves_a_waiting_plan_and_watches_it_complete(
    browser: Browser, world: tuple[World, str], dashboard: str, engine: Engine
) -> None:
    w, team = world
    batch = w.batches[0]
    rows = [InputRow(i + 2, u, "USER_ID") for i, u in enumerate(w.teachers)]
    rows.append(InputRow(len(rows) + 2, f"u-nobody-{w.token}", "USER_ID"))
    plan = make_plan(w.settings, engine, "add", batch, rows, team, PlanOptions(submitted_by=team))
    assert plan.status == "waiting" and plan.record.needs_approval_reason == "IMPLEMENTATION_TEAM"
    start_processor(w.settings)

    page = browser.new_context().new_page()
    page.goto(f"{dashboard}/plans")
    page.wait_for_url("**/login?next=%2Fplans")
    page.locator("#username").fill(w.admin)
    page.locator("#password").fill(PASSWORD)
    page.locator("#sign-in").click()
    page.wait_for_url("**/plans")
    page.locator(f'tr[data-plan-id="{plan.plan_id}"] a').click()
    page.wait_for_url(f"**/plans/{plan.plan_id}")
    expect(page.locator("#plan-status")).to_have_text("waiting")
    expect(page.locator('[data-count="to-add"]')).to_have_text(str(PEOPLE))
    expect(page.locator('[data-count="rejected"]')).to_have_text("1")
    expect(page.locator('.plan-group[data-outcome="REJECTED"]')).to_contain_text("USER_NOT_FOUND")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "plan-waiting.png"), full_page=True)

    page.locator("#approve-plan").click()
    page.wait_for_url(f"**/plans/{plan.plan_id}")
    expect(page.locator("#plan-status")).to_have_text("applied")
    expect(page.locator("#approve-plan")).to_have_count(0)
    progress = page.locator("#plan-upload .upload-progress [data-field=state]")
    expect(progress).to_have_text("Complete", timeout=180_000)  # the page follows the upload (uploads.js)
    expect(page.locator("#plan-upload [data-field=applied]")).to_have_text(str(PEOPLE))
    page.screenshot(path=str(SHOTS / "plan-applied.png"), full_page=True)
