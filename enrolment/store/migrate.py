"""Runs Alembic migrations programmatically (``participants db upgrade``), then the grants (enrolment.store.grants)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

from enrolment.errors import UserError
from enrolment.store import grants
from enrolment.store.tables import metadata

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrates to ``revision``, then gives each component's role its privileges on the tables now there."""
    command.upgrade(alembic_config(database_url), revision)
    if revision == "head":
        check_tables(database_url)
    apply_grants(database_url)


def check_tables(database_url: str) -> None:
    """Refuses a store stamped at the latest revision that lacks tables of it.

    Alembic trusts ``alembic_version``; a database migrated by another build of this code (a renumbered
    revision, say) can carry the right stamp and miss a table, and every component would then fail later
    and further from the cause. One sentence now names what is missing and how to start afresh.
    """
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            present = set(inspect(conn).get_table_names(schema="public"))
            stamp = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()
    missing = sorted(set(metadata.tables) - present)
    if missing:
        raise UserError(
            f"The database is stamped at revision {stamp} but has no table {', '.join(missing)}: it was migrated"
            " by another build of this code. Restore it from a backup, or empty it with `scripts/stack reset`"
            " (local stack) and replay the topics (`participants store rebuild`).",
            code=1,
        )


def apply_grants(database_url: str) -> list[str]:
    """The grant table applied by the owner in one transaction; returns the roles that got their privileges."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            return grants.apply(conn)
    finally:
        engine.dispose()


def reset(database_url: str) -> None:
    """Drops every table of the public schema, then migrates to head: an empty store at the latest schema."""
    engine = create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(database_url)
