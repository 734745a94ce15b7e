"""No password in an output: URLs redacted wherever printed or logged; metrics on this machine only by default."""

from __future__ import annotations

import io
import logging

import pytest

from enrolment import logs
from enrolment.settings import Settings
from enrolment.store.db import redact, redact_urls


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg2://role:s3cret@localhost:5433/db", "postgresql+psycopg2://role:***@localhost:5433/db"),
        ("postgresql://role@localhost/db", "postgresql://role@localhost/db"),
        ("postgresql://role:p@ss@host/db", "postgresql://role:***@host/db"),
        (
            "postgresql://host/db?user=r&password=s3cret&sslmode=require",
            "postgresql://host/db?user=r&password=***&sslmode=require",
        ),
    ],
)
def test_redact_hides_the_password(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert redact_urls(f"cannot parse '{url}' today") == f"cannot parse '{shown}' today"


def test_log_lines_carry_no_url_password(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.setup("INFO")
    try:
        raise RuntimeError("connect to postgresql+psycopg2://participants_processor:s3cret@db/participants failed")
    except RuntimeError:
        logging.getLogger("processor").exception("stopped at %s", "postgresql://o:0wn3r@h/d")
    logging.getLogger().handlers.clear()
    assert "s3cret" not in stream.getvalue() and "0wn3r" not in stream.getvalue()
    assert "participants_processor:***@db" in stream.getvalue()


def test_settings_never_show_the_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://r:s3cret@h/d")
    assert "s3cret" not in repr(Settings.from_env())


def test_metrics_listen_on_localhost_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from processor import metrics

    calls: list[tuple[int, str]] = []
    monkeypatch.setattr(metrics, "serve_http", lambda port, health, host: calls.append((port, host)))
    monkeypatch.delenv("METRICS_HOST", raising=False)
    settings = Settings.from_env()
    assert settings.metrics_host == "127.0.0.1"
    metrics.serve(9999, settings.metrics_host)
    monkeypatch.setenv("METRICS_HOST", "0.0.0.0")
    metrics.serve(9998, Settings.from_env().metrics_host)
    metrics.serve(0, "0.0.0.0")
    assert calls == [(9999, "127.0.0.1"), (9998, "0.0.0.0")]
