"""Runs Alembic migrations programmatically (``participants db upgrade``), then the grants (enrolment.store.grants)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from enrolment.store import grants

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrates to ``revision``, then gives each component's role its privileges on the tables now there."""
    command.upgrade(alembic_config(database_url), revision)
    apply_grants(database_url)


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
