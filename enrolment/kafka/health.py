"""Readiness of a long-running consumer, and the small HTTP server that shows it (`/healthz`) with `/metrics`.

A component is ready while it owns partitions and its last attempt succeeded; it is not ready while it starts,
has no assignment, is retrying after a failure, rebuilds its Kafka clients or stops. `/healthz` answers 200
with `{"status": "ready", ...}` or 503 with `{"status": "not ready", "reason": ...}`; the same state is the
`participants_ready` gauge, so an alert can fire on it.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, generate_latest

READY = Gauge("participants_ready", "1 while the component owns partitions and is not retrying", ["component"])
REBUILDS = Counter(
    "participants_client_rebuilds_total", "Kafka clients rebuilt after a fatal state, by cause", ["component", "cause"]
)
DEAD_LETTERS = Counter(
    "participants_dead_letters_total", "Messages sent to the dead-letter topic, by reason", ["component", "reason"]
)


class Health:
    """The readiness of one component (thread-safe: the run loop writes, the HTTP server reads)."""

    def __init__(self, component: str) -> None:
        self.component = component
        self._lock = threading.Lock()
        self._ready = False
        self._reason = "starting"
        self._since = time.time()
        self._detail: dict[str, Any] = {}
        READY.labels(component).set(0)

    def set(self, ready: bool, reason: str = "", **detail: Any) -> None:
        with self._lock:
            if ready != self._ready or reason != self._reason:
                self._since = time.time()
            self._ready, self._reason, self._detail = ready, ("" if ready else reason), detail
        READY.labels(self.component).set(1 if ready else 0)

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._ready

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            body: dict[str, Any] = {
                "status": "ready" if self._ready else "not ready",
                "component": self.component,
                "since": round(self._since, 3),
                **self._detail,
            }
            if not self._ready:
                body["reason"] = self._reason
            return body


def serve(port: int, health: Health | None, host: str = "127.0.0.1") -> ThreadingHTTPServer | None:
    """Serves `/healthz` (when ``health`` is given) and `/metrics` on ``port`` in a daemon thread; 0 = off."""
    if port <= 0:
        return None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz" and health is not None:
                body = health.snapshot()
                self._send(200 if body["status"] == "ready" else 503, "application/json", json.dumps(body).encode())
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest())
            else:
                self._send(404, "application/json", b'{"error": "not found"}')

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"health-{port}", daemon=True).start()
    return server
