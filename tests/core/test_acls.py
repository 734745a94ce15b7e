"""The ACL table (enrolment.kafka.acls) without a broker: least privilege, and every topic has its writer."""

from __future__ import annotations

from dataclasses import replace

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
