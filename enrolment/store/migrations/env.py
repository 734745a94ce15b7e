"""Alembic environment: the URL comes from Settings (DATABASE_URL), never from alembic.ini."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from enrolment.settings import Settings
from enrolment.store.tables import metadata

config = context.config
url = config.attributes.get("database_url") or Settings.from_env().database_url
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
