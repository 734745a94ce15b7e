"""Who may do what in the store: one database role per component, with only the table privileges it uses.

The owner role (``participants`` on the local stack) runs the migrations and owns every table; it is a
plain LOGIN role (never a superuser) that may create databases (the tests make private ones).  Each other
component logs in as its own role, which owns nothing — so it can neither DROP nor ALTER a table — and holds
exactly the privileges below.  :func:`apply` (run by the owner right after every migration, see
``enrolment.store.migrate.upgrade``) revokes whatever a role had and grants this table again, so the table
is the truth; README "Database roles" shows it.

Roles are cluster-level: ``scripts/stack up`` creates them as the ``postgres`` system user (with the SQL of
:func:`role_statements`), docker-compose's init service as the image's superuser.  A database whose cluster
lacks a role (a throw-away test container) simply gets no grants for it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from enrolment import credentials

SEL, INS, UPD, DEL = "SELECT", "INSERT", "UPDATE", "DELETE"
READ: tuple[str, ...] = (SEL,)
ALL_ROWS: tuple[str, ...] = (SEL, INS, UPD, DEL)

# component -> its database role (the owner is whoever runs the migrations; README "Database roles")
ROLE_OF_COMPONENT: Mapping[str, str] = {
    "processor": "participants_processor",
    "dashboard": "participants_dashboard",
    "producer": "participants_producer",
    "progress": "participants_progress",
}
OWNER_COMPONENT = "owner"
DEFAULT_OWNER_ROLE = "participants"

# role -> table -> privileges.  Read the code before adding a line: each one is a reason a component needs it.
TABLES: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "participants_processor": {
        # rules' lookups (enrolment.store.step, reference, accounts.served_states_of)
        "users": READ,
        "batch_mentors": READ,
        "served_states": READ,
        "course_batches": (SEL, UPD),  # participant_count
        # its exactly-once state: ledger (append-only), enrolments, uploads, positions, dead letters
        "enrolments": (SEL, INS, DEL),
        "command_ledger": (SEL, INS),
        "uploads": (SEL, INS, UPD),
        "consumer_positions": ALL_ROWS,  # replay groups forget their positions
        "dead_letters": (SEL, INS, UPD),  # dead-letters replay marks them
        # the completion rule: completions learned from course progress (upsert keeps the earliest)
        "course_completions": (SEL, INS, UPD),
    },
    "participants_dashboard": {
        # what the pages, the upload API (find_upload, report.csv) and the Sunbird API read
        "states": READ,
        "users": READ,
        "course_batches": READ,
        "batch_mentors": READ,
        "served_states": READ,
        "uploads": READ,
        "command_ledger": READ,
        # sign-in: a password rehash, sessions, failures; API tokens' last use, creation and revocation (/api/tokens)
        "accounts": (SEL, UPD),
        "web_sessions": ALL_ROWS,
        "sign_in_failures": (SEL, INS, DEL),
        "api_tokens": (SEL, INS, UPD),
        # Sunbird's bulk upload API: the uploads of a processId (enrolment.store.bulk)
        "bulk_processes": (SEL, INS),
        # the file of each upload it publishes (upload and Sunbird bulk APIs): the resubmission check in progress
        "published_files": (SEL, INS),
        # plans (enrolment.store.plans): made, decided and applied from the dashboard; planning evaluates the
        # rows against membership and completions, and records the processor's positions as the plan's basis
        "plans": (SEL, INS, UPD),
        "plan_rows": (SEL, INS),
        "plan_settings": READ,
        "enrolments": READ,
        "course_completions": READ,
        "consumer_positions": READ,
        # its read model (dashboard.readstore; `dashboard rebuild` empties a group's rows)
        "dash_positions": ALL_ROWS,
        "dash_applied_events": ALL_ROWS,
        "dash_members": ALL_ROWS,
        "dash_batch_counts": ALL_ROWS,
        "dash_progress": ALL_ROWS,
        "dash_uploads": ALL_ROWS,
        # what its read model cannot use, recorded once (dashboard.consumer; INSERT ... ON CONFLICT DO NOTHING)
        "dead_letters": (INS,),
    },
    "participants_producer": {
        # the CLI's direct path: `status`, `retry`, `undo` read the upload and its ledger; `batches show` a batch
        "uploads": READ,
        "command_ledger": READ,
        "course_batches": READ,
        "batch_mentors": READ,
        # plans on the direct path (`plan`, `sync`, an implementation team's `add`): the rules' lookups against
        # the store as it is, the plan and its rows, the state's settings, the processor's positions (the basis)
        "users": READ,
        "served_states": READ,
        "enrolments": READ,
        "course_completions": READ,
        "consumer_positions": READ,
        "plans": (SEL, INS, UPD),
        "plan_rows": (SEL, INS),
        "plan_settings": READ,
        # `add`/`remove` record their file once published (the resubmission check while it is in progress)
        "published_files": (SEL, INS),
    },
    "participants_progress": {},  # `progress publish` writes Kafka only
}
SEQUENCES: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "participants_processor": {"dead_letters_id_seq": ("USAGE",)},
    "participants_dashboard": {"dead_letters_id_seq": ("USAGE",)},
}
# Tables no component role may touch: only the owner (migrations, imports, accounts, api-tokens) uses them.
OWNER_ONLY: frozenset[str] = frozenset({"alembic_version"})


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def grant_statements(roles: Sequence[str]) -> list[str]:
    """The SQL that gives each of ``roles`` exactly its privileges (after taking all of them away)."""
    statements: list[str] = []
    for role in roles:
        r = _quote(role)
        statements += [
            f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {r}",
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {r}",
            f"GRANT USAGE ON SCHEMA public TO {r}",
        ]
        for table, privileges in sorted(TABLES.get(role, {}).items()):
            statements.append(f"GRANT {', '.join(privileges)} ON TABLE public.{_quote(table)} TO {r}")
        for sequence, privileges in sorted(SEQUENCES.get(role, {}).items()):
            statements.append(f"GRANT {', '.join(privileges)} ON SEQUENCE public.{_quote(sequence)} TO {r}")
    return statements


def apply(conn: Any) -> list[str]:
    """Applies the grant table in the current database (a SQLAlchemy connection of the owner); returns the roles.

    The schema's CREATE privilege is taken from PUBLIC (only the owner creates objects) when the connected role
    may; roles missing from the cluster are skipped.
    """
    from sqlalchemy import text

    wanted = sorted(TABLES)
    present = [r for (r,) in conn.execute(text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:r)"), {"r": wanted})]
    owns_schema = conn.execute(
        text("SELECT pg_has_role(current_user, nspowner, 'USAGE') FROM pg_namespace WHERE nspname = 'public'")
    ).scalar_one()
    if owns_schema:
        conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
    for statement in grant_statements(sorted(present)):
        conn.execute(text(statement))
    return sorted(present)


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def role_statements(passwords: Mapping[str, str], owner: str = DEFAULT_OWNER_ROLE) -> list[str]:
    """Cluster-level SQL (run by a superuser): every role exists, logs in with its password, and is no superuser.

    ``passwords`` maps a role to its password; the owner keeps CREATEDB, the others get no attribute at all.
    An owner role that earlier versions created SUPERUSER is demoted here.
    """
    statements: list[str] = []
    for role, password in sorted(passwords.items()):
        r = _quote(role)
        statements.append(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {_literal(role)}) "
            f"THEN CREATE ROLE {r}; END IF; END $$"
        )
        createdb = "CREATEDB" if role == owner else "NOCREATEDB"
        statements.append(
            f"ALTER ROLE {r} WITH LOGIN NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS {createdb} "
            f"PASSWORD {_literal(password)}"
        )
    return statements


def _password_of(component: str, role: str) -> str:
    """The password in a component's stored DATABASE_URL, when that URL logs in as ``role``."""
    from sqlalchemy.engine import make_url

    url = credentials.load(component).get("DATABASE_URL", "")
    if not url:
        return ""
    parsed = make_url(url)
    return str(parsed.password or "") if parsed.username == role else ""


def roles_of(owner: str) -> dict[str, str]:
    """component -> database role, the owner included."""
    return {OWNER_COMPONENT: owner, **ROLE_OF_COMPONENT}


def database_urls(
    owner: str, host: str, port: int, database: str, rotate: str = "", owner_password: str = ""
) -> dict[str, str]:
    """Each component's URL: its stored password (kept across runs) or a new one (the first time, or ``rotate``).

    ``owner_password`` (scripts/stack's STACK_PG_PASSWORD) wins for the owner; URL.create quotes any character.
    """
    from sqlalchemy.engine import URL

    urls: dict[str, str] = {}
    for component, role in roles_of(owner).items():
        password = "" if component == rotate else _password_of(component, role)
        if component == OWNER_COMPONENT and owner_password:
            password = owner_password
        url = URL.create(
            "postgresql+psycopg2",
            username=role,
            password=password or secrets.token_urlsafe(24),
            host=host,
            port=port,
            database=database,
        )
        urls[component] = url.render_as_string(hide_password=False)
    return urls


# docker-compose's init step: the passwords come from its env file, one variable per component.
PASSWORD_VARIABLE = {
    component: f"{component.upper()}_DB_PASSWORD" for component in (OWNER_COMPONENT, *ROLE_OF_COMPONENT)
}


def create_roles(admin_url: str, passwords: Mapping[str, str], owner: str, database: str) -> None:
    """As a superuser (``admin_url``): the roles with their passwords, and the database handed to the owner."""
    from sqlalchemy import create_engine

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            cur = conn.connection.cursor()  # no parameters: a password may hold any character
            for statement in role_statements(passwords, owner):
                cur.execute(statement)
            cur.execute(f"ALTER DATABASE {_quote(database)} OWNER TO {_quote(owner)}")
    finally:
        engine.dispose()


def _create_roles_from_env(owner: str, database: str) -> int:
    """docker compose's init: a refused superuser login is a sentence (an old volume has no `postgres` role)."""
    from sqlalchemy.exc import OperationalError

    from enrolment.store.db import redact, redact_urls

    env = os.environ
    missing = sorted(v for v in ("ADMIN_DATABASE_URL", *PASSWORD_VARIABLE.values()) if not env.get(v))
    if missing:
        print(f"Set {', '.join(missing)} (see .env.example); no role was created.", file=sys.stderr)
        return 1
    roles = roles_of(owner)
    passwords = {roles[component]: env[variable] for component, variable in PASSWORD_VARIABLE.items()}
    try:
        create_roles(env["ADMIN_DATABASE_URL"], passwords, owner, database)
    except OperationalError as exc:
        first = redact_urls(str(exc.orig).strip().splitlines()[0]) if exc.orig else type(exc).__name__
        print(
            f"Could not log in as the database superuser of ADMIN_DATABASE_URL ({redact(env['ADMIN_DATABASE_URL'])}): "
            f"{first}. A volume made by an earlier docker-compose.yml has no 'postgres' role: create it first "
            "(README, docker compose); no role was created.",
            file=sys.stderr,
        )
        return 1
    print(f"database roles ready: {', '.join(sorted(passwords))}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``database-urls`` (component TAB url lines) and ``roles-sql`` (for psql) for scripts/stack, on stdout;
    ``create-roles`` for docker-compose's init step (ADMIN_DATABASE_URL and the ``*_DB_PASSWORD`` variables)."""
    parser = argparse.ArgumentParser(prog="python -m enrolment.store.grants")
    parser.add_argument("what", choices=["database-urls", "roles-sql", "create-roles"])
    parser.add_argument("--owner", default=DEFAULT_OWNER_ROLE)
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=5432)
    parser.add_argument("--database", default="participants")
    parser.add_argument("--rotate", default="", help="the component that gets a new password")
    args = parser.parse_args(argv)
    if args.what == "create-roles":
        return _create_roles_from_env(args.owner, args.database)
    if args.what == "database-urls":
        given = os.environ.get("STACK_PG_PASSWORD", "")
        for component, url in database_urls(
            args.owner, args.host, args.port, args.database, args.rotate, given
        ).items():
            print(f"{component}\t{url}")
        return 0
    passwords = {role: _password_of(component, role) for component, role in roles_of(args.owner).items()}
    missing = sorted(role for role, password in passwords.items() if not password)
    if missing:
        print(f"No stored database password for {', '.join(missing)}; run scripts/stack up.", file=sys.stderr)
        return 1
    for statement in role_statements(passwords, args.owner):
        print(statement + ";")
    return 0


if __name__ == "__main__":
    sys.exit(main())
