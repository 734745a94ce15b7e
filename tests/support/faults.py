"""Fault staging for integration tests: stop and restart this worktree's broker, watch /healthz over time.

Only the broker the local stack started from this worktree (its pid in .stack/kafka.pid) is stopped;
PostgreSQL is shared and never touched here.
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


def start_broker() -> None:
    """`scripts/stack up` (PostgreSQL is left as it is when running): the broker comes back with its data."""
    subprocess.run([str(ROOT / "scripts" / "stack"), "up"], check=True, cwd=ROOT, capture_output=True, timeout=300)


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
