"""No secret in any output: a short run's every printed and logged line, searched for the stack's passwords.

The passwords are the generated ones in .stack/secrets (each component's DATABASE_URL, and any *PASSWORD*
value); the run is the stack's health check, a migration, an upload through the real processor (its log at
DEBUG), `status`, and the error sentences of an unreachable database for each component.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from enrolment import credentials
from enrolment.settings import Settings
from tests.support.helpers import PARTICIPANTS, ROOT, World, cli, env_for, start_processor
from tests.support.stackmode import CONTAINERS_REASON

pytestmark = pytest.mark.integration


def stored_passwords() -> dict[str, str]:
    """What must never be printed: (where it comes from) -> the password."""
    found: dict[str, str] = {}
    for component in credentials.COMPONENTS:
        for key, value in credentials.load(component).items():
            if key == "DATABASE_URL" and make_url(value).password:
                found[f"{component} DATABASE_URL"] = str(make_url(value).password)
            elif "PASSWORD" in key and value:
                found[f"{component} {key}"] = value
    if not found:
        pytest.skip(f"the stack generated no passwords: {CONTAINERS_REASON}")
    return found


def leaks(text: str, passwords: dict[str, str]) -> list[str]:
    return [where for where, secret in passwords.items() if secret in text]


def test_a_short_run_prints_and_logs_no_password(
    isolated_settings: Settings, engine: Engine, unique: str, tmp_path: Path
) -> None:
    passwords = stored_passwords()
    s = isolated_settings
    env = env_for(s)
    outputs: dict[str, str] = {}

    def keep(name: str, done: subprocess.CompletedProcess[bytes]) -> subprocess.CompletedProcess[bytes]:
        outputs[name] = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        return done

    check = [sys.executable, "-m", "participants.stackcheck", "--timeout", "30", "--migrate"]
    keep("stackcheck", subprocess.run(check, env=env, capture_output=True, timeout=120, check=False, cwd=ROOT))
    keep("stack status", subprocess.run([str(ROOT / "scripts" / "stack"), "status"], capture_output=True, check=False))
    keep("db upgrade", cli(s, "db", "upgrade"))

    world = World(engine, unique, teachers=5)
    batch = world.batch("secrets")
    ids = tmp_path / "ids.csv"
    ids.write_text("user_id\n" + "\n".join(world.user_id(n) for n in range(5)) + "\n")
    log = tmp_path / "processor.log"
    proc = start_processor(s, "--log-level", "DEBUG", "--until-idle", log=log)
    added = keep("add", cli(s, "add", str(ids), "--batch", batch, "--as", world.admin, "--wait", "--json"))
    assert added.returncode == 0, outputs["add"]
    upload_id = added.stdout.decode().split('"upload_id": "', 1)[1].split('"', 1)[0]
    keep("status", cli(s, "status", upload_id))
    proc.wait(120)
    outputs["processor log"] = log.read_text(errors="replace")
    assert "Traceback" not in outputs["processor log"]

    for component in ("producer", "owner"):
        url = make_url(credentials.load(component)["DATABASE_URL"]).set(port=1)
        away = dict(env, DATABASE_URL=url.render_as_string(hide_password=False))
        args = ("status", upload_id) if component == "producer" else ("db", "upgrade")
        keep(
            f"unreachable {component}",
            subprocess.run([PARTICIPANTS, *args], env=away, capture_output=True, timeout=120),
        )
        said = outputs[f"unreachable {component}"]
        assert "Cannot reach PostgreSQL" in said and ":***@localhost:1/" in said, said

    assert world.members(batch) == {world.user_id(n) for n in range(5)}
    found = {name: leaks(text, passwords) for name, text in outputs.items() if leaks(text, passwords)}
    assert not found, f"passwords printed or logged: {found}"


def test_the_demo_prints_only_the_demo_accounts_password(isolated_settings: Settings, tmp_path: Path) -> None:
    """scripts/demo on private topics with 40 rows: its output and logs hold no stored password but the demo's."""
    passwords = stored_passwords()
    env = dict(env_for(isolated_settings), DEMO_ROWS="40", DEMO_OUT=str(tmp_path / "data"))
    env["DEMO_LOGS"] = str(tmp_path / "logs")
    pidfile = tmp_path / "dashboard.pid"
    env.update(DEMO_DASHBOARD_PORT=str(free_port()), DEMO_DASHBOARD_PIDFILE=str(pidfile))
    env["DEMO_DASHBOARD_WAIT"] = "0"  # its read model reads private topics, so it cannot match the shared store
    try:
        done = subprocess.run([str(ROOT / "scripts" / "demo")], env=env, capture_output=True, timeout=300, check=False)
    finally:
        if pidfile.exists():  # the dashboard the demo leaves running
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pidfile.read_text()), signal.SIGTERM)
    out = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
    assert done.returncode == 0, out[-3000:]
    assert "Traceback" not in out
    logs = {p.name: p.read_text(errors="replace") for p in (tmp_path / "logs").iterdir()}
    assert logs, "the demo wrote no log"

    account = (credentials.secrets_dir() / "demo-account").read_text().strip()
    printed = [line.split("password:", 1)[1].strip() for line in out.splitlines() if "password:" in line]
    assert printed == [account], "the demo prints exactly the demo account's password, once"
    assert "signed in and sees" in out, "the demo ends with a dashboard its account signed in to"
    assert out.count(account) == 1 and not any(account in text for text in logs.values())
    found = {name: leaks(text, passwords) for name, text in {"demo output": out, **logs}.items()}
    assert not any(found.values()), f"passwords printed or logged by the demo: {found}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
