"""docker-compose.yml cannot run here (no Docker engine); keep it valid and in step with the local stack."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from enrolment.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def load() -> dict[str, object]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_services_present() -> None:
    services = load()["services"]
    assert isinstance(services, dict)
    assert {"kafka", "postgres", "processor", "dashboard", "init"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:4.")


def test_same_kafka_version_as_local_stack() -> None:
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert version is not None
    assert load()["services"]["kafka"]["image"] == f"apache/kafka:{version.group(1)}"  # type: ignore[index]


def test_app_environment_matches_settings() -> None:
    services = load()["services"]
    env = services["processor"]["environment"]  # type: ignore[index]
    assert env == services["dashboard"]["environment"]  # type: ignore[index]
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "CONSUMER_GROUP", "DASHBOARD_GROUP"):
        assert name in env
    defaults = Settings.from_env()
    assert env["CONSUMER_GROUP"] == defaults.consumer_group
    assert env["DASHBOARD_GROUP"] == defaults.dashboard_group
    assert int(env["UI_PARTICIPANT_LIMIT"]) == defaults.ui_participant_limit
    assert env["DATABASE_URL"].endswith("/participants")


def test_single_node_transaction_settings() -> None:
    kafka_env = load()["services"]["kafka"]["environment"]  # type: ignore[index]
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 1
    assert kafka_env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert kafka_env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == 0
    stack = (ROOT / "scripts" / "stack").read_text()
    assert "transaction.state.log.min.isr=1" in stack
    assert "group.initial.rebalance.delay.ms=0" in stack
