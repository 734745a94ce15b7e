"""The bench's private world: its own topics, consumer groups, state, users and batches — and their removal.

Everything is named after one token (``bench<timestamp>``) so a run never touches other data: topics are
``bench<ts>.<scenario>.<name>``, groups ``bench-<ts>-<scenario>``, the state ``BENCH<ts>``, users
``bu-<ts>-NNNNNNN`` with state ids ``BS<ts>-NNNNNNN``, batches ``bench-<ts>-<scenario>-N``.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from confluent_kafka import KafkaException
from sqlalchemy import Engine

from enrolment.kafka import acls
from enrolment.kafka.admin import create_topics, delete_topics, topic_specs
from enrolment.kafka.clients import admin_client
from enrolment.settings import Settings, Topics
from processor.imports import import_batches, import_users

ROOT = Path(__file__).resolve().parent.parent
PARTICIPANTS = str(ROOT / ".venv" / "bin" / "participants")
PYTHON = str(ROOT / ".venv" / "bin" / "python")


def _topic_fields() -> list[str]:
    return [f.name for f in fields(Topics)]


def private_topics(prefix: str) -> Topics:
    """Every topic of the Topics dataclass under ``prefix`` (new topics are covered without a change here)."""
    return Topics(**{name: prefix + name.replace("_", "-") for name in _topic_fields()})


def env_for(settings: Settings, prefix: str) -> dict[str, str]:
    """The environment that points a `participants` child at these settings (private topics and group).

    TOPIC_PREFIX is set as well, so a topic this code does not know about stays private too.
    """
    env = dict(os.environ)
    env.update({f"TOPIC_{name.upper()}": getattr(settings.topics, name) for name in _topic_fields()})
    env.update(
        {
            "TOPIC_PREFIX": prefix,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "DATABASE_URL": settings.database_url,
            "CONSUMER_GROUP": settings.consumer_group,
            "DASHBOARD_GROUP": settings.dashboard_group,
            "PROCESSOR_INSTANCE_ID": settings.instance_id,
            "COMMANDS_PARTITIONS": str(settings.commands_partitions),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@dataclass
class World:
    """Reference data and private topics for one bench run; `cleanup` removes all of it."""

    base: Settings
    engine: Engine
    token: str
    partitions: int = 12
    users: int = 0
    settings: dict[str, Settings] = field(default_factory=dict)
    batches: list[str] = field(default_factory=list)
    extra_groups: list[str] = field(default_factory=list)  # groups of side runs (idle baseline, profile)
    granted: list[acls.Grant] = field(default_factory=list)  # the components' ACLs on the private topics

    @property
    def state(self) -> str:
        return f"BENCH{self.token}".upper()  # the import upper-cases state codes

    @property
    def admin(self) -> str:
        return f"badmin-{self.token}"

    def user_id(self, n: int) -> str:
        return f"bu-{self.token}-{n % self.users:07d}"

    def state_id(self, n: int) -> str:
        """State id of pool user ``n`` (wraps around the pool)."""
        return f"BS{self.token}-{n % self.users:07d}"

    # -------------------------------------------------------------------------------- reference data
    def make_users(self, n: int) -> float:
        """Imports the admin and ``n`` active teachers of the bench state; returns seconds taken."""
        started = time.perf_counter()
        self.users = n
        buf = io.StringIO()
        buf.write("user_id,state_id,state,name,roles,status\n")
        buf.write(f"{self.admin},,{self.state},Bench Admin,ORG_ADMIN,active\n")
        for i in range(n):
            buf.write(f"{self.user_id(i)},{self.state_id(i)},{self.state},Teacher {i},PUBLIC,active\n")
        report = import_users(self.engine, io.BytesIO(buf.getvalue().encode()))
        if report.errors:
            raise RuntimeError(f"user import failed: {report.errors[:3]}")
        return time.perf_counter() - started

    def make_batches(self, scenario: str, n: int) -> list[str]:
        """``n`` fresh, open, invite-only batches of the bench state."""
        ids = [f"bench-{self.token}-{scenario}-{i:04d}" for i in range(n)]
        lines = ["batch_id,course_id,course_name,state,enrollment_type,status,start_date,end_date,mentors"]
        lines += [
            f"{b},course-{self.token},Bench course,{self.state},invite-only,ongoing,2026-01-01,2027-01-01," for b in ids
        ]
        report = import_batches(self.engine, io.BytesIO(("\n".join(lines) + "\n").encode()))
        if report.errors:
            raise RuntimeError(f"batch import failed: {report.errors[:3]}")
        self.batches += ids
        return ids

    # -------------------------------------------------------------------------------- topics
    @property
    def topic_prefix(self) -> str:
        return f"bench{self.token}."

    def prefix_for(self, scenario: str) -> str:
        return f"{self.topic_prefix}{scenario}."

    def env(self, scenario: str) -> dict[str, str]:
        return env_for(self.settings[scenario], self.prefix_for(scenario))

    def _ours(self, names: list[str]) -> list[str]:
        """Refuses any topic name outside this run's prefix (never create or delete a shared topic)."""
        foreign = [n for n in names if not n.startswith(self.topic_prefix)]
        if foreign:
            raise RuntimeError(f"refusing to touch topics outside {self.topic_prefix}*: {foreign}")
        return names

    def topics_for(self, scenario: str, only: tuple[str, ...] | None = None) -> Settings:
        """Settings with private topics (created now; ``only`` limits which) and a private group/instance id."""
        topics = private_topics(self.prefix_for(scenario))
        settings = replace(
            self.base,
            topics=topics,
            consumer_group=f"bench-{self.token}-{scenario}",
            dashboard_group=f"bench-{self.token}-{scenario}-dashboard",
            instance_id=f"bench-{self.token}-{scenario}",
            commands_partitions=self.partitions,
        )
        specs = topic_specs(settings)
        if only is not None:
            wanted = {getattr(topics, name) for name in only}
            specs = [s for s in specs if s.name in wanted]
        self._ours([t.name for t in specs] + topics.all())
        self.settings[scenario] = settings
        create_topics(settings, specs)
        if settings.kafka_sasl_username == "admin":  # a secured broker: the children run as their components
            table = acls.grants(settings)
            acls.apply(settings, table)
            self.granted += table
        return settings

    # -------------------------------------------------------------------------------- cleanup
    def groups(self) -> list[str]:
        return [s.consumer_group for s in self.settings.values()] + self.extra_groups

    def cleanup(self) -> list[str]:
        """Deletes every row, topic and consumer group of this run; returns what could not be removed."""
        problems: list[str] = []
        groups = [*self.groups(), f"bench-{self.token}-ceiling"]
        topics = sorted({t for s in self.settings.values() for t in s.topics.all()})
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            statements = [
                ("DELETE FROM command_ledger WHERE group_id = ANY(%s)", groups),
                ("DELETE FROM consumer_positions WHERE group_id = ANY(%s)", groups),
                ("DELETE FROM dead_letters WHERE source_topic = ANY(%s)", topics),
                ("DELETE FROM enrolments WHERE batch_id = ANY(%s)", self.batches),
                ("DELETE FROM uploads WHERE batch_id = ANY(%s)", self.batches),
                ("DELETE FROM batch_mentors WHERE batch_id = ANY(%s)", self.batches),
                ("DELETE FROM course_batches WHERE batch_id = ANY(%s)", self.batches),
                ("DELETE FROM users WHERE state = %s", self.state),
                ("DELETE FROM states WHERE code = %s", self.state),
            ]
            for sql, arg in statements:
                cur.execute(sql, (arg,))
            raw.commit()
        except Exception as exc:  # noqa: BLE001 - report and go on with the topics
            raw.rollback()
            problems.append(f"database cleanup: {exc}")
        finally:
            raw.close()
        for settings in self.settings.values():
            try:
                delete_topics(settings, self._ours(settings.topics.all()))
            except (KafkaException, RuntimeError) as exc:
                problems.append(f"topics: {exc}")
        try:
            acls.revoke(self.base, self.granted)
        except (KafkaException, RuntimeError) as exc:
            problems.append(f"ACLs: {exc}")
        left = self.delete_groups(self.groups())
        if left:
            problems.append(f"consumer groups not deleted: {left}")
        return problems

    def delete_groups(self, groups: list[str], timeout_s: float = 20.0) -> list[str]:
        """Deletes consumer groups; a static member stays in its group for session.timeout.ms after it stops,
        so a NON_EMPTY_GROUP is retried for a while.  Returns the groups still there."""
        admin = admin_client(self.base)
        pending = [g for g in groups if g.startswith(f"bench-{self.token}")]
        deadline = time.monotonic() + timeout_s
        while pending:
            futures = admin.delete_consumer_groups(pending, request_timeout=10)
            retry: list[str] = []
            for group, fut in futures.items():
                try:
                    fut.result()
                except KafkaException as exc:
                    if exc.args[0].name() == "NON_EMPTY_GROUP":
                        retry.append(group)
            pending = retry
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        return pending


def chunks(n: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, length) of consecutive chunks of ``size`` covering ``n``."""
    for start in range(0, n, size):
        yield start, min(size, n - start)
