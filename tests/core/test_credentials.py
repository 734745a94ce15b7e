"""Each component's stored credentials, and the environment over them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from enrolment import credentials
from enrolment.kafka.clients import base_config
from enrolment.settings import Settings
from enrolment.store import grants
from participants.cli import build_parser, component_of


def _folder(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "processor.env").write_text(
        "# written by scripts/stack\n"
        "export KAFKA_SECURITY_PROTOCOL='SASL_PLAINTEXT'\n"
        "export KAFKA_SASL_USERNAME='processor'\n"
        "export KAFKA_SASL_PASSWORD='p w'\"'\"'d=1'\n"
        "DATABASE_URL=postgresql+psycopg2://participants_processor:s3cret@localhost:5432/participants\n"
    )
    return {"PARTICIPANTS_SECRETS_DIR": str(tmp_path)}


def test_a_component_file_is_read_with_shell_quoting(tmp_path: Path) -> None:
    stored = credentials.load("processor", _folder(tmp_path))
    assert stored["KAFKA_SASL_PASSWORD"] == "p w'd=1"
    assert stored["DATABASE_URL"].endswith("participants_processor:s3cret@localhost:5432/participants")


def test_set_variables_win_and_empty_ones_do_not(tmp_path: Path) -> None:
    env = {**_folder(tmp_path), "KAFKA_SASL_USERNAME": "operator", "KAFKA_SASL_PASSWORD": ""}
    merged = credentials.environment("processor", env)
    assert merged["KAFKA_SASL_USERNAME"] == "operator"
    assert merged["KAFKA_SASL_PASSWORD"] == "p w'd=1"


def test_no_folder_means_no_credentials(tmp_path: Path) -> None:
    assert credentials.load("dashboard", {"PARTICIPANTS_SECRETS_DIR": str(tmp_path / "absent")}) == {}
    with pytest.raises(ValueError, match="unknown component"):
        credentials.load("nobody", {})


def test_settings_carry_the_component_and_clients_authenticate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _folder(tmp_path).items():
        monkeypatch.setenv(key, value)
    for key in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "DATABASE_URL"):
        monkeypatch.delenv(key, raising=False)
    settings = Settings.from_env("processor")
    assert settings.component == "processor"
    assert "p w'd=1" not in repr(settings)
    assert settings.database_url.endswith("participants_processor:s3cret@localhost:5432/participants")
    assert "s3cret" not in repr(settings)
    config = base_config(settings)
    assert config["security.protocol"] == "SASL_PLAINTEXT"
    assert (config["sasl.mechanism"], config["sasl.username"]) == ("SCRAM-SHA-512", "processor")
    assert "sasl.username" not in base_config(Settings.from_env("dashboard"))


@pytest.mark.parametrize(
    ("argv", "component"),
    [
        (["process"], "processor"),
        (["store", "verify"], "processor"),
        (["dashboard"], "dashboard"),
        (["add", "--batch", "B", "f.csv"], "producer"),
        (["batches", "show", "B"], "producer"),
        (["batches", "import", "b.csv"], "owner"),
        (["users", "import", "u.csv"], "owner"),
        (["progress", "publish", "p.csv"], "progress"),
        (["db", "upgrade"], "owner"),
    ],
)
def test_each_command_runs_as_its_component(argv: list[str], component: str) -> None:
    assert component_of(build_parser().parse_args(argv)) == component


def _commands(cell: str) -> list[str]:
    """``store rebuild\\|verify`` -> ["store rebuild", "store verify"] (backticked commands of a README cell)."""
    out = []
    for quoted in re.findall(r"`([^`]+)`", cell):
        head, *alternatives = quoted.split("\\|")
        words = head.split()
        out.append(" ".join(words))
        out += [" ".join([*words[:-1], alt]) for alt in alternatives]
    return out


def test_the_readme_command_table_is_component_of_command() -> None:
    """README "Which role a command runs as" against COMPONENT_OF_COMMAND and the database roles."""
    from participants.cli import COMPONENT_OF_COMMAND

    lines = (Path(__file__).resolve().parents[2] / "README.md").read_text().splitlines()
    start = lines.index("| sub-command | component = Kafka principal | database role |")
    roles = {**grants.ROLE_OF_COMPONENT, "owner": "participants"}
    listed: set[str] = set()
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cell, component, role = (c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|")))
        assert role.strip("`") == roles[component], line
        for command in _commands(cell):
            words = command.split()
            found = COMPONENT_OF_COMMAND.get(command) or COMPONENT_OF_COMMAND.get(words[0]) or "owner"
            assert found == component, f"README says {command} -> {component}, the code {found}"
            listed.update({command, words[0]})
    assert set(COMPONENT_OF_COMMAND) <= listed, set(COMPONENT_OF_COMMAND) - listed
