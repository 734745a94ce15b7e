"""One settings object, read from the environment, defaulting to the local stack (scripts/stack)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True)
class Topics:
    """Topic names; every one can be overridden (e.g. a per-test prefix)."""

    commands: str
    results: str
    enrollment_events: str
    uploads: str
    telemetry: str
    course_progress: str
    dead_letters: str
    enrollments: str = "participants.enrollments"

    @classmethod
    def from_env(cls) -> Topics:
        prefix = _env("TOPIC_PREFIX", "participants.")
        return cls(
            commands=_env("TOPIC_COMMANDS", prefix + "commands"),
            results=_env("TOPIC_RESULTS", prefix + "results"),
            enrollment_events=_env("TOPIC_ENROLLMENT_EVENTS", prefix + "enrollment-events"),
            uploads=_env("TOPIC_UPLOADS", prefix + "uploads"),
            telemetry=_env("TOPIC_TELEMETRY", prefix + "telemetry"),
            course_progress=_env("TOPIC_COURSE_PROGRESS", prefix + "course-progress"),
            dead_letters=_env("TOPIC_DEAD_LETTERS", prefix + "dead-letters"),
            enrollments=_env("TOPIC_ENROLLMENTS", prefix + "enrollments"),
        )

    def all(self) -> list[str]:
        return [
            self.commands,
            self.results,
            self.enrollment_events,
            self.uploads,
            self.telemetry,
            self.course_progress,
            self.dead_letters,
            self.enrollments,
        ]


@dataclass(frozen=True)
class Settings:
    """Everything configurable; see the configuration table in README.md."""

    kafka_bootstrap_servers: str
    database_url: str
    topics: Topics
    consumer_group: str
    dashboard_group: str
    instance_id: str
    commands_partitions: int
    max_batch: int
    batch_timeout_s: float
    ui_participant_limit: int
    metrics_port: int
    transaction_timeout_ms: int
    sunbird_api_wait_s: float = 30.0
    sunbird_api_max_body_bytes: int = 2 * 1024 * 1024
    session_idle_minutes: float = 30.0  # a dashboard session ends after this long without a request
    session_max_hours: float = 12.0  # and after this long in any case
    max_request_bytes: int = 1024 * 1024  # request bodies (forms, JSON) over this get 413; routes may allow more
    upload_max_bytes: int = 20 * 1024 * 1024  # a file sent to POST /api/uploads (streamed to a temporary file)
    client_server: str = ""  # the CLI's server mode: the dashboard's URL (PARTICIPANTS_SERVER)
    client_token: str = field(default="", repr=False)  # an API token for it (PARTICIPANTS_TOKEN); never printed
    client_credentials: str = ""  # where `participants login` keeps tokens (PARTICIPANTS_CREDENTIALS)
    failpoint: str = ""  # tests only: NAME:N crashes the processor at the N-th pass of NAME

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            kafka_bootstrap_servers=_env("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
            database_url=_env(
                "DATABASE_URL", "postgresql+psycopg2://participants:participants@localhost:5432/participants"
            ),
            topics=Topics.from_env(),
            consumer_group=_env("CONSUMER_GROUP", "participants-processor"),
            dashboard_group=_env("DASHBOARD_GROUP", "participants-dashboard"),
            instance_id=_env("PROCESSOR_INSTANCE_ID", f"{socket.gethostname()}-0"),
            commands_partitions=int(_env("COMMANDS_PARTITIONS", "12")),
            max_batch=int(_env("PROCESSOR_MAX_BATCH", "5000")),
            batch_timeout_s=float(_env("PROCESSOR_BATCH_TIMEOUT_S", "0.2")),
            ui_participant_limit=int(_env("UI_PARTICIPANT_LIMIT", "100")),
            metrics_port=int(_env("METRICS_PORT", "0")),
            transaction_timeout_ms=int(_env("TRANSACTION_TIMEOUT_MS", "30000")),
            sunbird_api_wait_s=float(_env("SUNBIRD_API_WAIT_S", "30")),
            sunbird_api_max_body_bytes=int(_env("SUNBIRD_API_MAX_BODY_BYTES", str(2 * 1024 * 1024))),
            session_idle_minutes=float(_env("SESSION_IDLE_MINUTES", "30")),
            session_max_hours=float(_env("SESSION_MAX_HOURS", "12")),
            max_request_bytes=int(_env("MAX_REQUEST_BYTES", str(1024 * 1024))),
            upload_max_bytes=int(_env("UPLOAD_MAX_BYTES", str(20 * 1024 * 1024))),
            client_server=_env("PARTICIPANTS_SERVER", ""),
            client_token=_env("PARTICIPANTS_TOKEN", "").strip(),
            client_credentials=_env("PARTICIPANTS_CREDENTIALS", ""),
            failpoint=_env("PARTICIPANTS_FAILPOINT", ""),
        )
