"""One settings object, read from the environment, defaulting to the local stack (scripts/stack)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from enrolment import credentials


def _env(name: str, default: str, env: Mapping[str, str] | None = None) -> str:
    value = (os.environ if env is None else env).get(name)
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
    def from_env(cls, env: Mapping[str, str] | None = None) -> Topics:
        def get(name: str, default: str) -> str:
            return _env(name, default, env)

        prefix = get("TOPIC_PREFIX", "participants.")
        return cls(
            commands=get("TOPIC_COMMANDS", prefix + "commands"),
            results=get("TOPIC_RESULTS", prefix + "results"),
            enrollment_events=get("TOPIC_ENROLLMENT_EVENTS", prefix + "enrollment-events"),
            uploads=get("TOPIC_UPLOADS", prefix + "uploads"),
            telemetry=get("TOPIC_TELEMETRY", prefix + "telemetry"),
            course_progress=get("TOPIC_COURSE_PROGRESS", prefix + "course-progress"),
            dead_letters=get("TOPIC_DEAD_LETTERS", prefix + "dead-letters"),
            enrollments=get("TOPIC_ENROLLMENTS", prefix + "enrollments"),
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
    database_url: str = field(repr=False)  # holds the role's password: print enrolment.store.db.redact(url)
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
    metrics_host: str = "127.0.0.1"  # where the processor's metrics listen (METRICS_HOST; 0.0.0.0 in a container)
    sunbird_api_wait_s: float = 30.0
    sunbird_api_max_body_bytes: int = 2 * 1024 * 1024
    session_idle_minutes: float = 30.0  # a dashboard session ends after this long without a request
    session_max_hours: float = 12.0  # and after this long in any case
    max_request_bytes: int = 1024 * 1024  # request bodies (forms, JSON) over this get 413; routes may allow more
    upload_max_bytes: int = 20 * 1024 * 1024  # a file sent to POST /api/uploads (streamed to a temporary file)
    # the TLS proxies whose X-Forwarded-Proto/-For the dashboard believes (uvicorn's forwarded_allow_ips): the
    # scheme decides the cookie's Secure flag and the CSRF Origin check; "" believes no one
    dashboard_forwarded_allow_ips: str = "127.0.0.1,::1"
    client_server: str = ""  # the CLI's server mode: the dashboard's URL (PARTICIPANTS_SERVER)
    client_token: str = field(default="", repr=False)  # an API token for it (PARTICIPANTS_TOKEN); never printed
    client_credentials: str = ""  # where `participants login` keeps tokens (PARTICIPANTS_CREDENTIALS)
    failpoint: str = ""  # tests only: NAME:N crashes the processor at the N-th pass of NAME (:sleep=S stalls)
    component: str = credentials.DEFAULT_COMPONENT  # whose credentials these are (enrolment.credentials)
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SASL_PLAINTEXT, SASL_SSL or SSL
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)  # never printed
    kafka_ssl_ca_location: str = ""  # the CA file that signed the brokers' certificates (SSL listeners)
    stop_timeout_s: float = 30.0  # SIGTERM: the batch in hand is finished or abandoned within this (exit after)
    max_rebuilds: int = 5  # fatal client states rebuilt in a row (within 10 minutes) before exiting non-zero
    plan_expiry_days: float = 7.0  # a waiting plan expires after this long (PLAN_EXPIRY_DAYS)
    max_poll_interval_ms: int = 300000  # a group member that does not poll for this long is dropped from the group

    @classmethod
    def from_env(cls, component: str = credentials.DEFAULT_COMPONENT) -> Settings:
        """The settings of ``component``: its stored credentials, overridden by any variable that is set."""
        env = credentials.environment(component)

        def get(name: str, default: str) -> str:
            return _env(name, default, env)

        return cls(
            kafka_bootstrap_servers=get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
            # the local stack's database; the password comes from the component's file (enrolment.credentials)
            database_url=get("DATABASE_URL", "postgresql+psycopg2://participants@localhost:5432/participants"),
            topics=Topics.from_env(env),
            consumer_group=get("CONSUMER_GROUP", "participants-processor"),
            dashboard_group=get("DASHBOARD_GROUP", "participants-dashboard"),
            instance_id=get("PROCESSOR_INSTANCE_ID", f"{socket.gethostname()}-0"),
            commands_partitions=int(get("COMMANDS_PARTITIONS", "12")),
            max_batch=int(get("PROCESSOR_MAX_BATCH", "5000")),
            batch_timeout_s=float(get("PROCESSOR_BATCH_TIMEOUT_S", "0.2")),
            ui_participant_limit=int(get("UI_PARTICIPANT_LIMIT", "100")),
            metrics_port=int(get("METRICS_PORT", "0")),
            metrics_host=get("METRICS_HOST", "127.0.0.1"),
            transaction_timeout_ms=int(get("TRANSACTION_TIMEOUT_MS", "30000")),
            sunbird_api_wait_s=float(get("SUNBIRD_API_WAIT_S", "30")),
            sunbird_api_max_body_bytes=int(get("SUNBIRD_API_MAX_BODY_BYTES", str(2 * 1024 * 1024))),
            session_idle_minutes=float(get("SESSION_IDLE_MINUTES", "30")),
            session_max_hours=float(get("SESSION_MAX_HOURS", "12")),
            max_request_bytes=int(get("MAX_REQUEST_BYTES", str(1024 * 1024))),
            upload_max_bytes=int(get("UPLOAD_MAX_BYTES", str(20 * 1024 * 1024))),
            dashboard_forwarded_allow_ips=get("DASHBOARD_FORWARDED_ALLOW_IPS", "127.0.0.1,::1").strip(),
            client_server=get("PARTICIPANTS_SERVER", ""),
            client_token=get("PARTICIPANTS_TOKEN", "").strip(),
            client_credentials=get("PARTICIPANTS_CREDENTIALS", ""),
            failpoint=get("PARTICIPANTS_FAILPOINT", ""),
            component=component,
            kafka_security_protocol=get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper(),
            kafka_sasl_mechanism=get("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            kafka_sasl_username=get("KAFKA_SASL_USERNAME", ""),
            kafka_sasl_password=get("KAFKA_SASL_PASSWORD", ""),
            kafka_ssl_ca_location=get("KAFKA_SSL_CA_LOCATION", ""),
            stop_timeout_s=float(get("PROCESSOR_STOP_TIMEOUT_S", "30")),
            max_rebuilds=int(get("PROCESSOR_MAX_REBUILDS", "5")),
            plan_expiry_days=float(get("PLAN_EXPIRY_DAYS", "7")),
            max_poll_interval_ms=int(get("KAFKA_MAX_POLL_INTERVAL_MS", "300000")),
        )


def with_stored_credentials(settings: Settings, component: str) -> Settings:
    """``settings`` authenticating to Kafka as ``component``, with the credentials stored for it.

    For the stack's own tools and the tests, which act as the admin principal: its password is passed in the
    settings, never exported, so no subprocess inherits it (variables in the environment win over the files).
    Without stored credentials (an open broker) the settings are returned as they are.
    """
    stored = credentials.load(component)
    if not stored.get("KAFKA_SASL_PASSWORD"):
        return settings
    protocol = settings.kafka_security_protocol
    if not protocol.startswith("SASL_"):
        protocol = stored.get("KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT").upper()
    return replace(
        settings,
        component=component,
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=stored.get("KAFKA_SASL_MECHANISM", settings.kafka_sasl_mechanism),
        kafka_sasl_username=stored.get("KAFKA_SASL_USERNAME", component),
        kafka_sasl_password=stored["KAFKA_SASL_PASSWORD"],
    )
