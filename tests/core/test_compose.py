"""docker-compose.yml cannot run here (no Docker engine); keep it valid and in step with the local stack."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from enrolment.settings import Settings
from enrolment.store import grants

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
    env = dict(services["processor"]["environment"])  # type: ignore[index]
    dash = dict(services["dashboard"]["environment"])  # type: ignore[index]
    own = ("DATABASE_URL", "METRICS_HOST", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")
    shared = {k: v for k, v in env.items() if k not in own}
    assert shared == {k: v for k, v in dash.items() if k not in own}
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "CONSUMER_GROUP", "DASHBOARD_GROUP"):
        assert name in env
    defaults = Settings.from_env()
    assert env["CONSUMER_GROUP"] == defaults.consumer_group
    assert env["DASHBOARD_GROUP"] == defaults.dashboard_group
    assert int(env["UI_PARTICIPANT_LIMIT"]) == defaults.ui_participant_limit
    assert env["DATABASE_URL"].endswith("/participants")


def test_each_service_logs_in_as_its_own_role_with_a_password_from_the_env_file() -> None:
    services = load()["services"]
    urls = {name: services[name]["environment"]["DATABASE_URL"] for name in ("init", "processor", "dashboard")}  # type: ignore[index]
    assert urls["init"].startswith("postgresql+psycopg2://participants:${OWNER_DB_PASSWORD")
    for name in ("processor", "dashboard"):
        role = grants.ROLE_OF_COMPONENT[name]
        assert urls[name].startswith(f"postgresql+psycopg2://{role}:${{{name.upper()}_DB_PASSWORD")
    init = services["init"]  # type: ignore[index]
    assert "grants create-roles" in " ".join(init["entrypoint"]) and "--migrate" in " ".join(init["entrypoint"])
    assert set(grants.PASSWORD_VARIABLE.values()) <= set(init["environment"])
    assert services["postgres"]["environment"]["POSTGRES_USER"] != "participants"  # type: ignore[index]


def test_no_secret_is_committed_and_the_example_env_file_names_every_one() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    assert used, "the secrets come from the env file"
    example = (ROOT / ".env.example").read_text()
    assert used <= set(re.findall(r"^([A-Z_]+)=", example, re.M))
    assert not re.search(r"PASSWORD: +[^$\s]", text), "a literal password in docker-compose.yml"
    assert not re.search(r"://[^:/\s]+:(?!\$\{)[^@\s]*@", text), "a URL with a literal password"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_kafka_is_locked_down_as_on_the_local_stack() -> None:
    services = load()["services"]
    kafka = services["kafka"]["environment"]  # type: ignore[index]
    assert "PLAINTEXT" not in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].replace("SASL_PLAINTEXT", "")
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert kafka["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert kafka["KAFKA_SUPER_USERS"] == "User:admin"
    assert kafka["KAFKA_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    for name in ("processor", "dashboard"):
        env = services[name]["environment"]  # type: ignore[index]
        assert (env["KAFKA_SECURITY_PROTOCOL"], env["KAFKA_SASL_USERNAME"]) == ("SASL_PLAINTEXT", name)
        assert env["KAFKA_SASL_PASSWORD"].startswith(f"${{{name.upper()}_KAFKA_PASSWORD")
    init = services["init"]  # type: ignore[index]
    assert "--secure" in " ".join(init["entrypoint"])
    assert {f"{c.upper()}_KAFKA_PASSWORD" for c in ("processor", "dashboard", "producer", "progress")} <= set(
        init["environment"]
    )


def test_ports_are_published_on_localhost_only() -> None:
    services = load()["services"]
    published = [p for s in services.values() for p in s.get("ports", [])]  # type: ignore[union-attr]
    assert published, "some ports are published"
    assert all(str(p).startswith("127.0.0.1:") for p in published), published


def test_the_image_runs_as_a_non_root_user() -> None:
    users = re.findall(r"^USER +(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert users, "the Dockerfile sets a USER"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_single_node_transaction_settings() -> None:
    kafka_env = load()["services"]["kafka"]["environment"]  # type: ignore[index]
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == 1
    assert kafka_env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == 1
    assert kafka_env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == 1
    assert kafka_env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == 0
    stack = (ROOT / "scripts" / "stack").read_text()
    # scripts/stack: 1 and 1 for one node, 3 and 2 for three (the three-broker test checks the real cluster)
    assert "transaction.state.log.min.isr=$isr" in stack and "transaction.state.log.replication.factor=$rf" in stack
    assert "rf=1 isr=1" in stack and "rf=3; isr=2" in stack
    assert "group.initial.rebalance.delay.ms=0" in stack


# An exact release, optionally with a variant ("-slim-bookworm"): MAJOR.MINOR.PATCH ("4.1.1", "3.11.14"), or
# MAJOR.MINOR for PostgreSQL, which numbers its releases so ("15.18"); never "latest" or a bare major ("15").
TAG = re.compile(r"^(?P<version>\d+(?:\.\d+)*)(?:-[a-z0-9][a-z0-9.-]*)?$")


def exact(image: str) -> bool:
    name, _, tag = image.rpartition(":")
    found = TAG.match(tag) if name and "/" not in tag else None
    if found is None:
        return False
    parts = len(found.group("version").split("."))
    return parts >= 3 or (parts == 2 and name.rpartition("/")[2] == "postgres")


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


def test_exact_tag_rule() -> None:
    for image in ("apache/kafka:4.1.1", "postgres:15.18-bookworm", "python:3.11.14-slim-bookworm", "postgres:15.18"):
        assert exact(image), image
    for image in (
        "postgres",
        "postgres:15",
        "postgres:latest",
        "postgres:15-bookworm",
        "python:3.11-slim",
        "python:3.11-slim-bookworm",
        "python:3-slim",
        "apache/kafka:4.1",
        "apache/kafka:latest",
        "localhost:5000/kafka",
    ):
        assert not exact(image), image


def test_every_image_is_pinned_to_an_exact_release() -> None:
    services = load()["services"]
    assert isinstance(services, dict)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "image" in service:
            assert exact(service["image"]), f"{name}: {service['image']} is not an exact release"
    bases = re.findall(r"^FROM\s+(?:--\S+\s+)*(\S+)", dockerfile(), flags=re.MULTILINE)
    assert bases, "the Dockerfile has no FROM"
    for base in bases:
        assert exact(base), f"Dockerfile: FROM {base} is not an exact release"


def test_images_match_the_local_stack_and_the_tests() -> None:
    from tests import conftest

    services = load()["services"]
    assert services["postgres"]["image"] == conftest.POSTGRES_IMAGE  # type: ignore[index]
    assert services["kafka"]["image"] == conftest.KAFKA_IMAGE  # type: ignore[index]
    major = conftest.POSTGRES_IMAGE.split(":")[1].split(".")[0]
    installed = Path("/usr/lib/postgresql")  # the local stack's PostgreSQL (Debian's package)
    if installed.is_dir():
        assert major in {p.name for p in installed.iterdir()}, f"local PostgreSQL is not {major}"
    # The image's Python is the one the lock is made for and the code is checked against.
    base = re.search(r"^FROM\s+python:(\d+\.\d+)\.\d+-", dockerfile(), flags=re.MULTILINE)
    assert base is not None
    assert f"with Python {base.group(1)}\n" in (ROOT / "requirements.lock").read_text()
    assert f'python_version = "{base.group(1)}"' in (ROOT / "pyproject.toml").read_text()


def test_the_image_installs_from_the_lock_and_runs_as_a_non_root_user() -> None:
    text = dockerfile()
    installs = [line for line in text.splitlines() if re.search(r"\bpip install\b", line)]
    assert installs
    assert any("--require-hashes -r requirements-runtime.lock" in line for line in installs), installs
    for line in installs:  # anything else is the project itself, without its dependencies
        assert "--require-hashes" in line or "--no-deps" in line, line
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
    assert users, "the Dockerfile has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"the image runs as {users[-1]}"
    entry = text.index("ENTRYPOINT")
    assert text.rindex("USER") < entry, "USER must come before the ENTRYPOINT"


def test_the_kafka_healthcheck_writes_the_admin_password_file_private() -> None:
    """The healthcheck's properties file holds the admin's password: made with umask 077, before it is written."""
    check = " ".join(load()["services"]["kafka"]["healthcheck"]["test"])  # type: ignore[index]
    assert "admin.properties" in check
    assert check.index("umask 077") < check.index("> /tmp/admin.properties")


def test_the_stack_keeps_store_passwords_off_command_lines() -> None:
    """keytool reads the keystore password from its 0600 file: a `-storepass VALUE` would show in ps."""
    script = (ROOT / "scripts" / "stack").read_text()
    assert "-storepass:file" in script
    assert not re.search(r"-storepass\s", script) and not re.search(r"-(key|store)pass:env", script)
