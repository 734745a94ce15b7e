"""One process for the dashboard: uvicorn serving the app, and the read-model consumer in a background thread.

Used by ``participants dashboard`` (blocking, signals handled by uvicorn) and by the browser tests
(``start``/``stop`` with the server in a thread too), so both run exactly the same pieces.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import uvicorn
from sqlalchemy import Engine

from dashboard.consumer import ReadModelConsumer
from dashboard.web.app import create_app
from enrolment.kafka.audit import install as install_audit
from enrolment.kafka.checkpoint import Fatal
from enrolment.kafka.clients import AccessDenied
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings

log = logging.getLogger("dashboard.server")


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's proxy options: believe X-Forwarded-Proto/-For only from DASHBOARD_FORWARDED_ALLOW_IPS, so that
    behind a TLS proxy the scheme is https (Secure cookie, CSRF Origin) and the client is the real one (throttle)."""
    allowed = settings.dashboard_forwarded_allow_ips
    return {"proxy_headers": bool(allowed), "forwarded_allow_ips": allowed or None}


class DashboardServer:
    """The web app and its read-model consumer, started and stopped together."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        log_level: str = "warning",
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.stop_event = threading.Event()
        self.consumer = ReadModelConsumer(settings, engine, default_codec())
        self.audit = install_audit(settings, default_codec())  # sign-ins, downloads, ... also to telemetry
        self.failure: str | None = None  # why the read-model consumer gave up (the process then exits non-zero)
        self.consumer_thread = threading.Thread(target=self._consume, name="dashboard-read-model", daemon=True)
        self.app = create_app(settings, engine)
        self.app.state.health = self.consumer.health  # /healthz reports the read-model consumer's readiness
        config = uvicorn.Config(
            self.app,
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            lifespan="off",
            **proxy_options(settings),
        )
        self.server = uvicorn.Server(config)
        self.server_thread: threading.Thread | None = None

    def _consume(self) -> None:
        """The consumer thread: should the consumer give up (a fatal state that keeps coming back), so does the
        process, with a sentence, for its supervisor to restart it."""
        try:
            self.consumer.run(self.stop_event)
        except (Fatal, AccessDenied) as exc:  # AccessDenied: refused credentials or ACLs, already a sentence
            self.failure = str(exc)
            log.error("the read-model consumer gave up; stopping the dashboard", extra={"error": str(exc)})
            self.server.should_exit = True

    @property
    def url(self) -> str:
        cfg = self.server.config
        return f"http://{cfg.host}:{cfg.port}"

    def serve_forever(self) -> None:
        """Blocks until SIGINT/SIGTERM (uvicorn handles them), then stops the consumer."""
        self.consumer_thread.start()
        try:
            self.server.run()
        finally:
            self._stop_consumer()

    def start(self, timeout_s: float = 30.0) -> None:
        """Starts both in threads and waits until the server accepts requests (tests)."""
        self.consumer_thread.start()
        self.server_thread = threading.Thread(target=self.server.run, name="dashboard-http", daemon=True)
        self.server_thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if time.monotonic() > deadline or not self.server_thread.is_alive():
                self.stop()
                raise RuntimeError(f"the dashboard did not start on {self.url}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.server_thread is not None:
            self.server_thread.join(15)
        self._stop_consumer()

    def _stop_consumer(self) -> None:
        self.app.state.sunbird_hub.close()  # the Sunbird APIs' shared producer, results follower and pool
        self.stop_event.set()
        if self.consumer_thread.is_alive():
            self.consumer_thread.join(15)
        self.audit.flush()
