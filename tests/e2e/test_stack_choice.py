"""The suite runs on the secured local stack whenever it is up, even where a Docker engine answers (issue 10).

Otherwise the security tests would skip silently on a developer machine with Docker running.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from enrolment import credentials
from enrolment.settings import Settings
from tests.support import stackmode

pytestmark = pytest.mark.integration


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_answering_local_stack_wins_over_docker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PARTICIPANTS_TEST_STACK", raising=False)
    asked: list[bool] = []

    def docker() -> bool:
        asked.append(True)
        return True

    assert stackmode.choose(True, docker) == "local"
    assert asked == [], "Docker must not even be asked when the local stack answers"
    assert stackmode.choose(False, docker) == "containers"
    assert stackmode.choose(False, lambda: False) == "local"


def test_the_running_stack_answers_and_the_session_uses_it(base_settings: Settings) -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092")
    if not credentials.load("admin").get("KAFKA_SASL_PASSWORD"):
        pytest.skip(stackmode.CONTAINERS_REASON)
    assert stackmode.local_stack_answers(credentials.secrets_dir(), bootstrap)
    assert base_settings.kafka_sasl_username == "admin", "the session must run on the secured stack"


def test_no_secrets_or_a_silent_port_is_no_local_stack(tmp_path: Path) -> None:
    assert not stackmode.local_stack_answers(tmp_path, "localhost:9092")
    (tmp_path / "admin.env").write_text("export KAFKA_SASL_PASSWORD='x'\n")
    closed = _closed_port()
    url = f"postgresql+psycopg2://o:p@127.0.0.1:{closed}/d"
    (tmp_path / "owner.env").write_text(f"export DATABASE_URL='{url}'\n")
    assert not stackmode.local_stack_answers(tmp_path, f"127.0.0.1:{closed}")
