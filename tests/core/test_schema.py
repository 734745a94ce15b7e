"""enrolment/store/tables.py is Alembic's metadata: it must describe exactly what the migrations build.

The session's database is migrated to head (conftest), so autogenerate's comparison against it must find
nothing to do: a table, column, index, type, nullability or server default missing from (or extra in)
tables.py shows up as a difference here.
"""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import CheckConstraint, Column, Engine, MetaData, Table, inspect

from enrolment.store.tables import metadata

pytestmark = pytest.mark.integration

# Both are explicit: compare_type is Alembic's default, compare_server_default is not (it is off by default
# because some databases render defaults differently).  PostgreSQL renders ours the way the migrations wrote
# them, so the strict comparison is clean, and a default that drifts is caught too.
COMPARE = {"compare_type": True, "compare_server_default": True}


def differences(engine: Engine, target: MetaData) -> list[Any]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts=COMPARE), target))


def test_tables_py_matches_the_migrated_database(engine: Engine) -> None:
    assert differences(engine, metadata) == []


def test_primary_keys_and_check_constraints_match_too(engine: Engine) -> None:
    """What autogenerate does not compare at all: primary keys (their columns, in order) and CHECK constraints.

    CHECK constraints are compared by name: PostgreSQL stores their text rewritten (``BETWEEN`` becomes two
    comparisons), so the text would never match literally.
    """
    inspector = inspect(engine)
    for table in metadata.sorted_tables:
        migrated_pk = inspector.get_pk_constraint(table.name)["constrained_columns"]
        assert [c.name for c in table.primary_key.columns] == migrated_pk, table.name
        declared = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
        migrated = {c["name"] for c in inspector.get_check_constraints(table.name)}
        assert declared == migrated, table.name


def _without(table_name: str, column_name: str | None = None) -> MetaData:
    """A copy of the metadata without one table, or with one column of it left out."""
    copy = MetaData()
    for table in metadata.sorted_tables:
        if table.name != table_name:
            table.to_metadata(copy)
        elif column_name is not None:
            columns = [Column(c.name, c.type, nullable=c.nullable) for c in table.columns if c.name != column_name]
            Table(table.name, copy, *columns)
    return copy


def test_the_comparison_sees_a_missing_table_or_column(engine: Engine) -> None:
    """The check above can fail: leaving a table or a column out of the metadata is reported."""
    missing_table = differences(engine, _without("dash_uploads"))
    assert any(d[0] == "remove_table" and d[1].name == "dash_uploads" for d in missing_table if isinstance(d, tuple))
    missing_column = [d for d in differences(engine, _without("dash_members", "state_id")) if isinstance(d, tuple)]
    assert ("dash_members", "state_id") in {(d[2], d[3].name) for d in missing_column if d[0] == "remove_column"}
