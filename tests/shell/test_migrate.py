"""`participants db upgrade` on a store whose stamp and tables disagree: one sentence and exit 1, not a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import create_engine, text

from enrolment.errors import UserError
from enrolment.settings import Settings
from enrolment.store import migrate
from tests.support.helpers import cli


@pytest.fixture()
def private_url(base_settings: Settings, unique: str) -> Iterator[str]:
    admin = create_engine(base_settings.database_url, isolation_level="AUTOCOMMIT")
    name = f"t_{unique}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base_settings.database_url.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_a_store_stamped_at_head_without_a_table_is_refused_with_a_sentence(
    base_settings: Settings, private_url: str
) -> None:
    migrate.upgrade(private_url)
    migrate.upgrade(private_url)  # at head and whole: a second upgrade is a no-op
    engine = create_engine(private_url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE course_completions"))
        stamp = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    engine.dispose()

    with pytest.raises(UserError) as refused:
        migrate.upgrade(private_url)
    assert refused.value.code == 1
    assert f"stamped at revision {stamp}" in str(refused.value)
    assert "course_completions" in str(refused.value)

    run = cli(replace(base_settings, database_url=private_url), "db", "upgrade")
    err = run.stderr.decode()
    assert run.returncode == 1, err
    assert "course_completions" in err and "Traceback" not in err
