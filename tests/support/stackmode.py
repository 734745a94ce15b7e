"""Which broker and database the suite runs on: the worktree's secured stack whenever it is up.

testcontainers (an open broker, a database without the components' roles) is only the fallback for a machine
with a Docker engine and no local stack, and there the security tests skip with `CONTAINERS_REASON`.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path

from sqlalchemy.engine import make_url

from enrolment import credentials

CONTAINERS_REASON = (
    "testcontainers mode (no local stack answered): the broker is open and the database has no component roles; "
    "run 'scripts/stack up' (make test does) to run the security tests"
)


def answers(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """True when something accepts a TCP connection there (a probe, not a login)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    host, _, port = address.strip().rpartition(":")
    return (host, int(port)) if host else (address.strip(), default_port)


def local_stack_answers(secrets: Path, bootstrap: str) -> bool:
    """The stack's private folder holds the admin's and owner's credentials, and its broker and database answer."""
    environ = {"PARTICIPANTS_SECRETS_DIR": str(secrets)}
    admin, owner = credentials.load("admin", environ), credentials.load("owner", environ)
    if not admin.get("KAFKA_SASL_PASSWORD") or not owner.get("DATABASE_URL"):
        return False
    url = make_url(owner["DATABASE_URL"])
    brokers: Iterable[str] = [b for b in bootstrap.split(",") if b.strip()]
    return answers(url.host or "localhost", url.port or 5432) and any(answers(*_host_port(b, 9092)) for b in brokers)


def choose(local_answers: bool, docker_answers: Callable[[], bool]) -> str:
    """'local' or 'containers': the local stack wins; Docker is only asked when no local stack answers."""
    if local_answers or os.environ.get("PARTICIPANTS_TEST_STACK") == "local":
        return "local"
    return "containers" if docker_answers() else "local"
