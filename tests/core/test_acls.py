"""The ACL table (enrolment.kafka.acls) without a broker: least privilege, and every topic has its writer."""

from __future__ import annotations

import re
from dataclasses import fields, replace
from pathlib import Path

from enrolment.kafka import acls
from enrolment.settings import Settings


def _allowed(settings: Settings, component: str, operation: str) -> set[str]:
    return {
        g.name
        for g in acls.grants(settings)
        if g.component == component and g.resource == "topic" and g.operation == operation
    }


def test_each_principal_gets_only_what_its_commands_do() -> None:
    s = Settings.from_env()
    t = s.topics
    assert t.results not in _allowed(s, "dashboard", "WRITE")
    # the read model dead-letters what it cannot use; nothing else beyond its edits, upload records and audit
    assert _allowed(s, "dashboard", "WRITE") == {t.commands, t.uploads, t.telemetry, t.dead_letters}
    assert t.course_progress not in _allowed(s, "processor", "WRITE")
    assert t.course_progress in _allowed(s, "processor", "READ")  # the completion rule (processor.completions)
    assert _allowed(s, "progress", "WRITE") == {t.course_progress} and not _allowed(s, "progress", "READ")
    assert _allowed(s, "owner", "WRITE") == {t.telemetry}
    assert _allowed(s, "producer", "READ") == {t.results, t.uploads}
    assert t.commands in _allowed(s, "processor", "READ") and t.commands not in _allowed(s, "dashboard", "READ")
    writers = {g.name for g in acls.grants(s) if g.resource == "topic" and g.operation == "WRITE"}
    assert writers == set(t.all()), "every topic has a writer, and no other topic is named"
    assert {g.component for g in [*acls.grants(s), *acls.shared_grants()]} <= set(acls.PRINCIPALS)


def test_groups_and_transactional_ids_follow_the_settings() -> None:
    s = replace(Settings.from_env(), consumer_group="processor-x", dashboard_group="dashboard-x")
    groups = {(g.component, g.name, g.prefixed) for g in acls.grants(s) if g.resource != "topic"}
    assert ("processor", "processor-x", False) in groups and ("dashboard", "dashboard-x", False) in groups
    assert ("processor", "processor-x.", True) in groups  # "<group>.<instance>", processor.engine
    binding = acls.binding(acls.Grant("dashboard", "topic", "a.commands", "WRITE"))
    assert binding.principal == "User:dashboard" and binding.name == "a.commands"


def _readme_rows(first_header_cell: str) -> list[list[str]]:
    """The rows of the README table whose header starts with ``| first_header_cell |``."""
    lines = (Path(__file__).resolve().parents[2] / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header_cell} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))])
    return rows


def _topic_names(cell: str) -> set[str]:
    """``commands, results (why)`` -> {"commands", "results"}; ``—`` -> nothing."""
    bare = re.sub(r"\([^)]*\)", "", cell)
    return {name.strip() for name in bare.split(",") if name.strip() and name.strip() != "—"}


def test_the_readme_principal_table_is_the_acl_table() -> None:
    s = Settings.from_env()
    short = {getattr(s.topics, f.name): f.name.replace("_", "-") for f in fields(s.topics)}
    rows = {row[0].strip("`"): row for row in _readme_rows("principal")}
    assert set(rows) == {*acls.PRINCIPALS, "admin"}
    assert rows["admin"][2:4] == ["super user", "super user"]
    for component in acls.PRINCIPALS:
        for column, operation in ((2, "READ"), (3, "WRITE")):
            shown = _topic_names(rows[component][column])
            assert shown == {short[name] for name in _allowed(s, component, operation)}, (component, operation)
