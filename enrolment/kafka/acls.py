"""Who may do what on the broker: the one table of Kafka ACLs (README "Principals and ACLs").

One principal per component (``User:<component>``, a SCRAM user whose password `scripts/stack up` generates),
each allowed only what its commands do; the broker denies everything else (``allow.everyone.if.no.acl.found``
is false) and only ``User:admin`` is a super user. READ and WRITE imply DESCRIBE, so describing is not listed.

`grants` is the table for one set of names (the settings' topics, consumer groups and transactional ids):
`scripts/stack up` applies it for the stack's names, and the tests for each test's private topic prefix and
groups, so a subprocess a test starts runs with its component's real credentials and ACLs. `shared_grants`
holds what does not depend on those names (idempotent producing, the processor's replay groups); it is applied
by `scripts/stack up` only, so the tests never revoke it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaException

# (the admin package re-exports these without declaring them; its own modules do)
from confluent_kafka.admin._acl import AclBinding, AclBindingFilter, AclOperation, AclPermissionType
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from enrolment.kafka.clients import admin_client
from enrolment.settings import Settings

# The principals that get ACLs (admin is the super user; it needs none).
PRINCIPALS = ("processor", "dashboard", "producer", "progress", "owner")
REPLAY_PREFIX = "replay-"  # processor.replay: group and transactional id of a replay run
# bench.secure's unauthenticated baseline: its topics, groups and transactional ids all start with "bench"
# (bench/world.py), and the anonymous principal of its PLAINTEXT listener may touch nothing else.
BENCH_PREFIX = "bench"
BENCH_PRINCIPAL = "ANONYMOUS"
SCRAM_ITERATIONS = 8192


@dataclass(frozen=True)
class Grant:
    """One allowed operation: ``component`` may ``operation`` the ``resource`` named (or prefixed) ``name``."""

    component: str
    resource: str  # topic | group | transactional-id | cluster
    name: str
    operation: str  # READ | WRITE | DELETE | DESCRIBE | IDEMPOTENT_WRITE
    prefixed: bool = False

    def describe(self) -> str:
        pattern = f"{self.name}*" if self.prefixed else self.name
        return f"User:{self.component} {self.operation} {self.resource} {pattern}"


def _topics(component: str, operation: str, names: Iterable[str]) -> list[Grant]:
    return [Grant(component, "topic", name, operation) for name in names]


def grants(settings: Settings) -> list[Grant]:
    """The ACLs of the settings' topics, groups and transactional ids (the table in README)."""
    t = settings.topics
    processor_txn = f"{settings.consumer_group}."  # processor.engine: transactional id "<group>.<instance>"
    return [
        # processor: consumes commands in its group, publishes its outputs in transactions; follows course
        # progress for the completion rule (processor.completions; `store rebuild` restores completions from it);
        # `store rebuild|verify` read the changelog, results and upload records; `dead-letters list|replay` read
        # dead letters and re-publish them to their source topic (commands, or the read model's results, uploads
        # and enrolment events; never course progress, which only the progress component writes).
        *_topics(
            "processor", "READ", [t.commands, t.course_progress, t.enrollments, t.results, t.uploads, t.dead_letters]
        ),
        *_topics(
            "processor",
            "WRITE",
            [t.results, t.enrollment_events, t.uploads, t.telemetry, t.enrollments, t.dead_letters, t.commands],
        ),
        Grant("processor", "group", settings.consumer_group, "READ"),
        Grant("processor", "transactional-id", processor_txn, "WRITE", prefixed=True),
        # dashboard: the read model's topics in its group (what it cannot use goes to the dead-letter topic); UI
        # edits and the upload API publish commands and their upload records; audit events go to telemetry.
        *_topics("dashboard", "READ", [t.enrollment_events, t.course_progress, t.results, t.uploads]),
        *_topics("dashboard", "WRITE", [t.commands, t.uploads, t.telemetry, t.dead_letters]),
        Grant("dashboard", "group", settings.dashboard_group, "READ"),
        # producer (the operators' direct CLI path): commands, the upload record and its audit event; `--wait`
        # and `status` read results and upload records (assigned readers, see shared_grants).
        *_topics("producer", "WRITE", [t.commands, t.uploads, t.telemetry]),
        *_topics("producer", "READ", [t.results, t.uploads]),
        # progress: learners' course progress.
        *_topics("progress", "WRITE", [t.course_progress]),
        # owner (imports, db, accounts, api-tokens): audit events only.
        *_topics("owner", "WRITE", [t.telemetry]),
    ]


def shared_grants() -> list[Grant]:
    """What does not depend on topic or group names: idempotent producing, replay groups, readers' groups."""
    writers = ("processor", "dashboard", "producer", "progress", "owner")
    readers = ("processor", "dashboard", "producer")
    return [
        *(Grant(c, "cluster", "kafka-cluster", "IDEMPOTENT_WRITE") for c in writers),
        # assigned readers (clients.reader_group): librdkafka looks up their group's coordinator, nothing more
        *(Grant(c, "group", f"{c}-reader-", "DESCRIBE", prefixed=True) for c in readers),
        Grant("processor", "group", REPLAY_PREFIX, "READ", prefixed=True),
        Grant("processor", "group", REPLAY_PREFIX, "DELETE", prefixed=True),
        Grant("processor", "transactional-id", REPLAY_PREFIX, "WRITE", prefixed=True),
    ]


def bench_grants() -> list[Grant]:
    """The PLAINTEXT bench listener's anonymous client: the bench's own names only (never a super user)."""
    b = BENCH_PRINCIPAL
    return [
        Grant(b, "topic", BENCH_PREFIX, "READ", prefixed=True),
        Grant(b, "topic", BENCH_PREFIX, "WRITE", prefixed=True),
        Grant(b, "group", BENCH_PREFIX, "READ", prefixed=True),
        Grant(b, "transactional-id", BENCH_PREFIX, "WRITE", prefixed=True),
        Grant(b, "cluster", "kafka-cluster", "IDEMPOTENT_WRITE"),
        # the assigned readers' throwaway groups keep their component's prefix (clients.reader_group)
        *(Grant(b, "group", f"{c}-reader-", "DESCRIBE", prefixed=True) for c in ("processor", "producer")),
    ]


_RESOURCES = {
    "topic": ResourceType.TOPIC,
    "group": ResourceType.GROUP,
    "transactional-id": ResourceType.TRANSACTIONAL_ID,
    "cluster": ResourceType.BROKER,
}


def binding(grant: Grant) -> AclBinding:
    pattern = ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL
    return AclBinding(
        _RESOURCES[grant.resource],
        grant.name,
        pattern,
        f"User:{grant.component}",
        "*",
        AclOperation[grant.operation],
        AclPermissionType.ALLOW,
    )


def _filter(grant: Grant) -> AclBindingFilter:
    b = binding(grant)
    return AclBindingFilter(
        b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
    )


def apply(admin_settings: Settings, wanted: Iterable[Grant]) -> int:
    """Creates the ACLs (creating an existing one is a no-op); returns how many were asked for."""
    items = list(dict.fromkeys(wanted))
    if not items:
        return 0
    admin = admin_client(admin_settings)  # held while the futures resolve
    futures = admin.create_acls([binding(g) for g in items], request_timeout=30)
    for fut in futures.values():
        fut.result()
    return len(items)


def revoke(admin_settings: Settings, granted: Iterable[Grant]) -> None:
    """Deletes exactly these ACLs (a test's private ones)."""
    items = list(dict.fromkeys(granted))
    if items:
        admin = admin_client(admin_settings)  # held while the futures resolve
        futures = admin.delete_acls([_filter(g) for g in items], request_timeout=30)
        for fut in futures.values():
            fut.result()


def upsert_users(admin_settings: Settings, passwords: Mapping[str, str]) -> list[str]:
    """Sets each user's SCRAM-SHA-512 credential to the password given; returns the users set."""
    users = sorted(u for u, p in passwords.items() if p)
    if not users:
        return []
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
    alterations: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(u, info, passwords[u].encode()) for u in users
    ]
    admin = admin_client(admin_settings)  # held while the futures resolve
    futures = admin.alter_user_scram_credentials(alterations, request_timeout=30)
    for user, fut in futures.items():
        try:
            fut.result()
        except KafkaException as exc:
            raise RuntimeError(f"could not set the SCRAM credential of {user}: {exc.args[0].str()}") from None
    return users
