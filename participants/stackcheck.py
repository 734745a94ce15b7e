"""Health check for scripts/stack: waits for Kafka and PostgreSQL, then creates topics / migrates / resets."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

from sqlalchemy import text

from enrolment import credentials
from enrolment.errors import UserError
from enrolment.kafka import acls
from enrolment.kafka.admin import create_topics, delete_groups, delete_topics, topic_specs
from enrolment.kafka.clients import admin_client
from enrolment.settings import Settings, with_stored_credentials
from enrolment.store import migrate
from enrolment.store.db import engine as db_engine
from enrolment.store.db import redact


def wait_kafka(settings: Settings, timeout: float, brokers: int = 1) -> None:
    """Waits until the cluster lists `brokers` brokers (every node of the stack has joined)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            admin = admin_client(settings, log_level=0)
            md = admin.list_topics(timeout=3)
            if len(md.brokers) >= brokers:
                return
            last = f"({len(md.brokers)} of {brokers} brokers)"
        except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
            last = str(exc)
        time.sleep(1)
    raise SystemExit(f"Kafka did not answer at {settings.kafka_bootstrap_servers} within {timeout:.0f}s {last}")


def wait_postgres(settings: Settings, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    engine = db_engine(settings)
    while time.monotonic() < deadline:
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            engine.dispose()
            return
        except Exception as exc:  # noqa: BLE001
            last = str(exc).splitlines()[0]
        time.sleep(1)
    raise SystemExit(f"PostgreSQL did not answer at {redact(settings.database_url)} within {timeout:.0f}s: {last}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stackcheck")
    parser.add_argument("--timeout", type=float, default=90)
    parser.add_argument("--create-topics", action="store_true")
    parser.add_argument("--migrate", action="store_true")
    parser.add_argument("--reset", action="store_true")
    parser.add_argument("--secure", action="store_true", help="act as admin; set the components' users and ACLs")
    parser.add_argument("--brokers", type=int, default=1, help="wait for this many brokers; replicate to fit")
    parser.add_argument("--admin-over", metavar="HOST:PORT", help="first set admin's SCRAM credential over PLAIN")
    parser.add_argument("--bench-anonymous", action="store_true", help="ACLs for the bench's PLAINTEXT listener")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    wait_postgres(settings, args.timeout)
    print("[stack] postgresql: healthy", file=sys.stderr)
    kafka = with_stored_credentials(settings, "admin") if args.secure else settings
    if args.admin_over:
        set_admin(kafka, args.admin_over, args.timeout)
    wait_kafka(kafka, args.timeout, args.brokers)
    print(f"[stack] kafka: healthy ({args.brokers} broker(s))", file=sys.stderr)
    specs = topic_specs(kafka, args.brokers)
    if args.reset:
        delete_groups(kafka)
        delete_topics(kafka, [s.name for s in specs])
        migrate.reset(settings.database_url)
    elif args.migrate:
        migrate.upgrade(settings.database_url)
    if args.create_topics or args.reset:
        created = create_topics(kafka, specs)
        if created:
            print(f"[stack] created topics: {', '.join(created)}", file=sys.stderr)
    if args.secure:
        secure(kafka, args.bench_anonymous)
    return 0


def set_admin(admin: Settings, listener: str, timeout: float) -> None:
    """Sets the admin's SCRAM credential over the broker's INTERNAL listener (admin over SASL/PLAIN)."""
    plain = replace(admin, kafka_bootstrap_servers=listener, kafka_sasl_mechanism="PLAIN")
    wait_kafka(plain, timeout)
    acls.upsert_users(plain, {"admin": admin.kafka_sasl_password})
    print("[stack] kafka: the admin's SCRAM credential is set", file=sys.stderr)


def component_password(component: str) -> str:
    """A component's Kafka password: ``<COMPONENT>_KAFKA_PASSWORD`` (docker compose's .env), else its file."""
    return os.environ.get(f"{component.upper()}_KAFKA_PASSWORD") or credentials.load(component).get(
        "KAFKA_SASL_PASSWORD", ""
    )


def secure(admin: Settings, bench_anonymous: bool = False) -> None:
    """Every component's SCRAM user (the password in its file) and the ACL table (enrolment.kafka.acls).

    The bench listener's anonymous ACLs exist only while that listener is open: a plain `up` revokes them.
    """
    passwords = {c: component_password(c) for c in acls.PRINCIPALS}
    users = acls.upsert_users(admin, passwords)
    count = acls.apply(admin, [*acls.grants(admin), *acls.shared_grants()])
    if bench_anonymous:
        count += acls.apply(admin, acls.bench_grants())
    else:
        acls.revoke(admin, acls.bench_grants())
    print(f"[stack] kafka: SCRAM users {', '.join(users)}; {count} ACLs", file=sys.stderr)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as exc:
        print(f"[stack] ERROR: {exc}", file=sys.stderr)
        sys.exit(exc.code)
