"""scripts/stack on the worktree's own stack: private secrets, `env` export lines, and the superuser demotion.

Every value printed by `env` is parsed, never shown: an assertion names keys and principals, not passwords.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from enrolment import credentials
from enrolment.settings import Settings
from enrolment.store import grants
from tests.support.helpers import ROOT
from tests.support.stackmode import CONTAINERS_REASON

pytestmark = pytest.mark.integration
STACK = str(ROOT / "scripts" / "stack")


def _secured(settings: Settings) -> None:
    if settings.kafka_sasl_username != "admin":
        pytest.skip(CONTAINERS_REASON)


def test_the_secrets_folder_is_0700_and_its_files_0600(base_settings: Settings) -> None:
    _secured(base_settings)
    folder = credentials.secrets_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = sorted(p for p in folder.iterdir() if p.is_file())
    assert {f"{c}.env" for c in credentials.COMPONENTS} <= {p.name for p in files}
    loose = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files if stat.S_IMODE(p.stat().st_mode) != 0o600}
    assert not loose, f"secrets readable by others: {loose}"


@pytest.mark.parametrize("component", ["dashboard", "admin"])
def test_env_prints_export_lines_with_the_components_principal(base_settings: Settings, component: str) -> None:
    _secured(base_settings)
    done = subprocess.run([STACK, "env", component], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines and all(line.startswith("export ") for line in lines), "env prints only export lines"
    printed = credentials.parse(done.stdout)
    stored = credentials.load(component)
    assert printed["KAFKA_SASL_USERNAME"] == component
    assert printed["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert printed["KAFKA_BOOTSTRAP_SERVERS"] == base_settings.kafka_bootstrap_servers
    assert printed["KAFKA_SASL_PASSWORD"] == stored["KAFKA_SASL_PASSWORD"], "its own stored password (not shown)"
    others = {c: credentials.load(c).get("KAFKA_SASL_PASSWORD", "") for c in credentials.COMPONENTS if c != component}
    assert not [c for c, pw in others.items() if pw and pw in done.stdout], "no other component's password"


def _as_postgres(sql: str) -> str:
    port = os.environ.get("STACK_PG_PORT", "5432")
    argv = ["su", "postgres", "-c", f'psql -X -qtA -v ON_ERROR_STOP=1 -p {port} -d postgres -c "{sql}"']
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_roles_step_demotes_a_superuser_owner(base_settings: Settings, engine: Engine) -> None:
    """Earlier versions made the `participants` owner a SUPERUSER; `scripts/stack roles` (a step of `up`) demotes it."""
    _secured(base_settings)
    url = make_url(base_settings.database_url)
    if os.geteuid() != 0 or not shutil.which("psql") or str(url.port) != os.environ.get("STACK_PG_PORT", "5432"):
        pytest.skip("needs root and the worktree's own PostgreSQL cluster (STACK_PG_PORT) as the tests' database")
    owner = str(url.username)
    try:
        _as_postgres(f"ALTER ROLE {owner} SUPERUSER")
        assert _as_postgres(f"SELECT rolsuper FROM pg_roles WHERE rolname = '{owner}'") == "t"
        done = subprocess.run([STACK, "roles"], capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        assert _as_postgres(f"SELECT rolsuper FROM pg_roles WHERE rolname = '{owner}'") == "f"
        with engine.connect() as conn:  # the owner still logs in with its stored password
            assert conn.execute(text("SELECT current_user")).scalar() == owner
    finally:
        _as_postgres(f"ALTER ROLE {owner} NOSUPERUSER")


def test_compose_init_without_the_postgres_role_fails_with_a_sentence(base_settings: Settings, unique: str) -> None:
    """`grants create-roles` on an old volume (no `postgres` superuser): a sentence, exit 1, no traceback."""
    url = make_url(base_settings.database_url).set(username="postgres", password=f"not-{unique}")
    env = {**os.environ, "ADMIN_DATABASE_URL": url.render_as_string(hide_password=False)}
    env.update({variable: f"pw-{unique}" for variable in grants.PASSWORD_VARIABLE.values()})
    argv = [sys.executable, "-m", "enrolment.store.grants", "create-roles"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False, cwd=ROOT)
    said = done.stdout + done.stderr
    assert done.returncode == 1, said
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Could not log in as the database superuser"), said
    assert "Traceback" not in said and unique not in said and ":***@" in said
