"""Least privilege on the real database: each component's role does what its component does, and nothing more.

The roles and their passwords are the stack's (``scripts/stack up`` writes them into .stack/secrets); against a
database without them (a throw-away container) these tests are skipped.  Every write here is rolled back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import ProgrammingError

from enrolment import credentials
from enrolment.settings import Settings
from enrolment.store import grants
from enrolment.store.tables import metadata
from tests.support.helpers import env_for
from tests.support.stackmode import CONTAINERS_REASON

pytestmark = pytest.mark.integration
PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")


def role_url(component: str) -> str:
    url = credentials.load(component).get("DATABASE_URL", "")
    if not url:
        pytest.skip(f"no stored credentials for {component}: {CONTAINERS_REASON}")
    return url


@pytest.fixture()
def as_role(request: pytest.FixtureRequest) -> Iterator[Connection]:
    """A connection as the parametrised component's role, in a transaction that is rolled back."""
    eng = create_engine(role_url(request.param))
    conn = eng.connect()
    trans = conn.begin()
    try:
        yield conn
    finally:
        trans.rollback()
        conn.close()
        eng.dispose()


def refused(conn: Connection, sql: str, **params: object) -> str:
    """Runs ``sql`` in a savepoint and returns PostgreSQL's refusal (the test fails if it was allowed)."""
    savepoint = conn.begin_nested()
    try:
        conn.execute(text(sql), params)
    except ProgrammingError as exc:
        savepoint.rollback()
        return str(exc.orig)
    savepoint.rollback()
    raise AssertionError(f"allowed, but must not be: {sql}")


def test_no_application_role_is_a_superuser_and_only_the_owner_owns(engine: Engine, base_settings: Settings) -> None:
    for component in grants.roles_of("participants"):
        role_url(component)  # skips unless the stack made the roles
    roles = list(grants.roles_of("participants").values())
    with engine.connect() as conn:
        rows = dict(
            conn.execute(
                text(
                    "SELECT rolname, rolsuper OR rolcreaterole OR rolreplication FROM pg_roles WHERE rolname = ANY(:r)"
                ),
                {"r": roles},
            ).all()
        )
        owners = set(
            conn.execute(text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")).scalars()
        )
        public_create = conn.execute(text("SELECT has_schema_privilege('public', 'public', 'CREATE')")).scalar_one()
    assert set(rows) == set(roles), f"missing roles: {set(roles) - set(rows)}"
    assert not [r for r, powerful in rows.items() if powerful], rows
    assert owners == {"participants"}
    assert public_create is False


def test_each_role_has_exactly_the_grant_tables_privileges(engine: Engine) -> None:
    role_url("processor")
    wrong = []
    with engine.connect() as conn:
        for role, tables in grants.TABLES.items():
            for table in metadata.tables:
                for privilege in PRIVILEGES:
                    has = conn.execute(
                        text("SELECT has_table_privilege(:r, :t, :p)"),
                        {"r": role, "t": f"public.{table}", "p": privilege},
                    ).scalar_one()
                    if has != (privilege in tables.get(table, ())):
                        wrong.append(f"{role} {privilege} {table}: {has}")
    assert not wrong, wrong


@pytest.mark.parametrize("as_role", ["processor"], indirect=True)
def test_the_processor_writes_its_state_but_cannot_drop_alter_or_touch_the_dashboards(as_role: Connection) -> None:
    conn = as_role
    assert conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar_one() is False
    conn.execute(
        text(
            "INSERT INTO consumer_positions (group_id, topic, kafka_partition, next_offset, batch_start) "
            "VALUES ('roles-test', 't', 0, 1, 0)"
        )
    )
    conn.execute(text("UPDATE consumer_positions SET next_offset = 2 WHERE group_id = 'roles-test'"))
    conn.execute(
        text(
            "INSERT INTO dead_letters (source_topic, kafka_partition, kafka_offset, reason, detail, dead_lettered_at) "
            "VALUES ('roles-test', 0, 0, 'R', 'd', now())"
        )
    )
    conn.execute(text("SELECT count(*) FROM command_ledger WHERE upload_id = 'none'"))
    conn.execute(text("CREATE TEMP TABLE ledger_in (LIKE command_ledger INCLUDING DEFAULTS) ON COMMIT DROP"))
    assert "must be owner" in refused(conn, "DROP TABLE enrolments")
    assert "must be owner" in refused(conn, "ALTER TABLE command_ledger ADD COLUMN x int")
    assert "must be owner" in refused(conn, "ALTER TABLE enrolments DROP COLUMN progress")
    assert "permission denied" in refused(conn, "TRUNCATE enrolments")
    assert "permission denied" in refused(conn, "CREATE TABLE public.mine (x int)")
    assert "permission denied" in refused(conn, "SELECT * FROM dash_members LIMIT 1")
    assert "permission denied" in refused(conn, "DELETE FROM dash_uploads")
    assert "permission denied" in refused(conn, "UPDATE command_ledger SET reason = 'x' WHERE false")
    assert "permission denied" in refused(conn, "SELECT * FROM accounts LIMIT 1")
    assert "permission denied" in refused(conn, "UPDATE users SET name = 'x' WHERE false")


@pytest.mark.parametrize("as_role", ["dashboard"], indirect=True)
def test_the_dashboard_writes_its_read_model_and_sessions_but_not_the_processors_tables(as_role: Connection) -> None:
    conn = as_role
    conn.execute(text("INSERT INTO dash_applied_events (group_id, event_id) VALUES ('roles-test', 'e')"))
    conn.execute(text("DELETE FROM dash_applied_events WHERE group_id = 'roles-test'"))
    conn.execute(text("DELETE FROM web_sessions WHERE created_at < now() - interval '100 years'"))
    conn.execute(text("SELECT count(*) FROM uploads WHERE upload_id = 'none'"))
    conn.execute(text("SELECT line, reason FROM command_ledger WHERE upload_id = 'none'"))
    # the read model records its own dead letters as enrolment.store.dead_letters does, and nothing more there
    for _ in range(2):
        conn.execute(
            text(
                "INSERT INTO dead_letters (source_topic, kafka_partition, kafka_offset, reason, detail, "
                "dead_lettered_at) VALUES ('roles-test-dash', 0, 0, 'R', 'd', now()) ON CONFLICT DO NOTHING"
            )
        )
    for sql in (
        "SELECT * FROM dead_letters LIMIT 1",
        "UPDATE dead_letters SET replayed_at = now() WHERE false",
        "DELETE FROM dead_letters WHERE false",
        "INSERT INTO command_ledger SELECT * FROM command_ledger WHERE false",
        "UPDATE command_ledger SET reason = 'x' WHERE false",
        "DELETE FROM command_ledger WHERE false",
        "DELETE FROM enrolments WHERE false",
        "UPDATE enrolments SET progress = 0 WHERE false",
        "DELETE FROM plans WHERE false",
        "UPDATE plan_rows SET reason = 'x' WHERE false",
        "UPDATE plan_settings SET breaker_percent = 100 WHERE false",
        "UPDATE uploads SET completed_at = now() WHERE false",
        "UPDATE consumer_positions SET next_offset = 0 WHERE false",
        "DELETE FROM api_tokens WHERE false",  # tokens are revoked (kept), never deleted
        "UPDATE users SET name = 'x' WHERE false",
    ):
        assert "permission denied" in refused(conn, sql), sql
    assert "must be owner" in refused(conn, "DROP TABLE dash_members")


@pytest.mark.parametrize("as_role", ["producer"], indirect=True)
def test_the_producer_reads_what_status_batches_show_and_plans_need_and_writes_only_plans(as_role: Connection) -> None:
    conn = as_role
    conn.execute(text("SELECT outcome, count(*) FROM command_ledger WHERE upload_id = 'none' GROUP BY outcome"))
    # planning: the rules' lookups, the processor's positions (the basis), the state's settings, the plan itself
    conn.execute(text("SELECT u.user_id FROM users u JOIN enrolments e ON e.user_id = u.user_id WHERE false"))
    conn.execute(text("SELECT * FROM course_completions, served_states, consumer_positions, plan_settings LIMIT 1"))
    conn.execute(text("UPDATE plans SET status = 'expired' WHERE false"))
    conn.execute(text("SELECT * FROM plan_rows WHERE false"))
    conn.execute(text("SELECT * FROM uploads WHERE upload_id = 'none'"))
    conn.execute(
        text("SELECT * FROM course_batches b LEFT JOIN batch_mentors m ON m.batch_id = b.batch_id WHERE false")
    )
    for sql in (
        "INSERT INTO uploads (upload_id, batch_id) VALUES ('x', 'y')",
        "DELETE FROM command_ledger WHERE false",
        "DELETE FROM plans WHERE false",
        "UPDATE plan_rows SET reason = 'x' WHERE false",
        "INSERT INTO plan_settings (state) VALUES ('KA')",
        "DELETE FROM enrolments WHERE false",
        "UPDATE consumer_positions SET next_offset = 0 WHERE false",
        "UPDATE users SET name = 'x' WHERE false",
        "SELECT * FROM api_tokens LIMIT 1",
        "SELECT * FROM dash_members LIMIT 1",
    ):
        assert "permission denied" in refused(conn, sql), sql


@pytest.mark.parametrize("as_role", ["progress"], indirect=True)
def test_the_progress_publisher_reads_no_table(as_role: Connection) -> None:
    for table in sorted(metadata.tables):
        assert "permission denied" in refused(as_role, f"SELECT 1 FROM {table} LIMIT 1"), table


def test_a_test_child_runs_as_its_components_role(isolated_settings: Settings) -> None:
    """With no DATABASE_URL set, the harness lets each child load its own role (the test process is the owner)."""
    role_url("producer")
    if os.environ.get("DATABASE_URL"):
        pytest.skip("DATABASE_URL is set: every child uses it")
    env = env_for(isolated_settings)
    assert "DATABASE_URL" not in env
    who = (
        "import sys; from sqlalchemy import text; from enrolment.settings import Settings; "
        "from enrolment.store.db import engine; "
        "print(engine(Settings.from_env(sys.argv[1])).connect().execute(text('SELECT current_user')).scalar())"
    )
    for component, role in grants.ROLE_OF_COMPONENT.items():
        done = subprocess.run([sys.executable, "-c", who, component], env=env, capture_output=True, timeout=60)
        assert done.stdout.decode().strip() == role, done.stderr.decode()[-2000:]
