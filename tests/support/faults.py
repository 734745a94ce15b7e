"""Fault staging for integration tests: stop and restart this worktree's broker and PostgreSQL, watch /healthz.

Only what the local stack started from this worktree is touched: the broker whose pid is in .stack/kafka.pid,
and the PostgreSQL cluster named by STACK_PG_CLUSTER (default main, as scripts/stack) — and that one only when
its port is the port of the database the tests use (`stack_cluster` says which, or None: the test skips).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from confluent_kafka import KafkaException

from enrolment.kafka.clients import admin_client
from enrolment.settings import Settings
from tests.support.helpers import ROOT, wait_until

KAFKA_PID = ROOT / ".stack" / "kafka.pid"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def broker_pid() -> int:
    return int(Path(KAFKA_PID).read_text().strip())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_broker(kill: bool = False) -> None:
    """Stops (SIGTERM, or SIGKILL) this worktree's broker and waits until it is gone."""
    pid = broker_pid()
    os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
    wait_until(f"broker pid {pid} to exit", lambda: not _alive(pid), 60, 0.2)


def start_broker(settings: Settings | None = None) -> None:
    """`scripts/stack kafka-start`: the broker comes back with its data; PostgreSQL is left as it is (even down).

    With ``settings`` (the admin's), waits until the broker answers a metadata request again.
    """
    subprocess.run(
        [str(ROOT / "scripts" / "stack"), "kafka-start"], check=True, cwd=ROOT, capture_output=True, timeout=300
    )
    if settings is not None:
        admin = admin_client(settings)

        def answers() -> bool:
            try:
                return bool(admin.list_topics(timeout=2).brokers)
            except KafkaException:
                return False

        wait_until("the broker to answer again", answers, 120, 0.5)


def stack_cluster(database_url: str) -> tuple[str, str] | None:
    """(version, name) of the stack's PostgreSQL cluster serving ``database_url`` on this machine, else None.

    None when pg_lsclusters is missing, the cluster is not listed, or its port is not the URL's: the database is
    then not this worktree's to stop (a container, another engineer's cluster).
    """
    name = os.environ.get("STACK_PG_CLUSTER", "main")
    port = str(urlsplit(database_url.replace("postgresql+psycopg2", "postgresql")).port or 5432)
    try:
        listed = subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in listed.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == name and fields[2] == port:
            return fields[0], name
    return None


def stop_database(cluster: tuple[str, str]) -> None:
    """Stops the stack's PostgreSQL cluster at once (fast mode: sessions are cut, as in a crash or failover)."""
    version, name = cluster
    subprocess.run(["pg_ctlcluster", version, name, "stop", "-m", "fast"], check=True, capture_output=True, timeout=120)


def start_database(cluster: tuple[str, str]) -> None:
    """Starts the cluster again (a no-op when it is running) and waits until it accepts connections."""
    version, name = cluster
    running = subprocess.run(["pg_ctlcluster", version, name, "status"], capture_output=True, timeout=30)
    if running.returncode != 0:
        subprocess.run(["pg_ctlcluster", version, name, "start"], check=True, capture_output=True, timeout=120)
    port = next(
        line.split()[2]
        for line in subprocess.run(["pg_lsclusters", "--no-header"], capture_output=True, text=True).stdout.splitlines()
        if line.split()[:2] == [version, name]
    )

    def ready() -> bool:
        return subprocess.run(["pg_isready", "-q", "-h", "localhost", "-p", port], timeout=30).returncode == 0

    wait_until(f"PostgreSQL cluster {name} to accept connections", ready, 120, 0.5)


def healthz(port: int) -> tuple[int, dict[str, object]] | None:
    """(status, body) of GET /healthz, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
            return int(answer.status), json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())
    except (OSError, ValueError):
        return None


class HealthWatcher:
    """Polls /healthz of a port in a thread and keeps the distinct statuses in order (None: not answering)."""

    def __init__(self, port: int, interval_s: float = 0.1) -> None:
        self.port = port
        self.seen: list[tuple[float, int | None, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)
        self._thread.start()

    def _run(self, interval_s: float) -> None:
        while not self._stop.is_set():
            got = healthz(self.port)
            status = None if got is None else got[0]
            reason = "" if got is None else str(got[1].get("reason", ""))
            if not self.seen or self.seen[-1][1] != status:
                self.seen.append((time.monotonic(), status, reason))
            self._stop.wait(interval_s)

    def statuses(self) -> list[int | None]:
        return [s for _t, s, _r in self.seen]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
