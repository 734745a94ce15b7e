"""The grant table (enrolment/store/grants.py) against the schema: every table has a reader or is the owner's."""

from __future__ import annotations

from pathlib import Path

import pytest

from enrolment import credentials
from enrolment.store import grants
from enrolment.store.tables import metadata

PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE"}


def test_every_table_is_granted_to_a_role_or_is_the_owners() -> None:
    granted = {table for tables in grants.TABLES.values() for table in tables}
    missing = sorted(set(metadata.tables) - granted - grants.OWNER_ONLY)
    assert not missing, f"tables in no role's grants and not marked owner-only (grants.OWNER_ONLY): {missing}"
    unknown = sorted(granted - set(metadata.tables))
    assert not unknown, f"grants name tables the schema does not have: {unknown}"
    assert not (granted & grants.OWNER_ONLY), "a table is both granted and owner-only"


def test_privileges_are_row_privileges_only() -> None:
    for role, tables in grants.TABLES.items():
        for table, privileges in tables.items():
            assert privileges, f"{role} on {table}: an empty grant is a missing line"
            assert set(privileges) <= PRIVILEGES, f"{role} on {table}: {privileges} (no TRUNCATE, REFERENCES, ...)"
    assert set(grants.SEQUENCES) <= set(grants.TABLES)


def test_every_component_with_a_database_role_is_known() -> None:
    assert set(grants.ROLE_OF_COMPONENT) <= set(credentials.COMPONENTS)
    assert set(grants.ROLE_OF_COMPONENT.values()) == set(grants.TABLES)


def test_the_processor_and_the_dashboard_keep_out_of_each_others_tables() -> None:
    processor = grants.TABLES["participants_processor"]
    dashboard = grants.TABLES["participants_dashboard"]
    assert not [t for t in processor if t.startswith("dash_")]
    for table in ("command_ledger", "enrolments", "uploads", "consumer_positions"):
        assert set(dashboard.get(table, ())) <= {"SELECT"}, f"the dashboard writes the processor's {table}"
    # the read model records its own dead letters: insert only (it neither reads, marks nor deletes any)
    assert dashboard["dead_letters"] == ("INSERT",)
    producer = grants.TABLES["participants_producer"]
    writes = {t for t, privileges in producer.items() if set(privileges) - {"SELECT"}}
    expected = {"plans", "plan_rows", "published_files"}  # its plans, and the file of each upload it publishes
    assert writes == expected, f"the producer writes only its plans and published files, not {writes}"
    assert "DELETE" not in set().union(*producer.values())
    assert grants.TABLES["participants_progress"] == {}


def test_grant_statements_revoke_first_then_grant() -> None:
    sql = grants.grant_statements(["participants_producer"])
    assert sql[0] == 'REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "participants_producer"'
    assert 'GRANT SELECT ON TABLE public."uploads" TO "participants_producer"' in sql
    inserts = [s for s in sql if "GRANT" in s and "INSERT" in s]
    assert all('"plans"' in s or '"plan_rows"' in s or '"published_files"' in s for s in inserts), inserts
    assert not [s for s in sql if "DROP" in s or "DELETE" in s]


def test_role_statements_demote_and_set_passwords() -> None:
    sql = grants.role_statements({"participants": "o'k", "participants_processor": "p"})
    alters = [s for s in sql if s.startswith("ALTER ROLE")]
    assert len(alters) == 2 and all("NOSUPERUSER" in s and "LOGIN" in s for s in alters)
    owner = next(s for s in alters if '"participants" ' in s)
    assert " CREATEDB " in owner and "PASSWORD 'o''k'" in owner
    assert "NOCREATEDB" in next(s for s in alters if "participants_processor" in s)


def test_database_urls_keep_stored_passwords_and_rotate_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARTICIPANTS_SECRETS_DIR", str(tmp_path))
    first = grants.database_urls("participants", "localhost", 5433, "participants")
    assert set(first) == {"owner", *grants.ROLE_OF_COMPONENT}
    assert first["processor"].startswith("postgresql+psycopg2://participants_processor:")
    assert first["owner"].endswith("@localhost:5433/participants")
    for component, url in first.items():
        (tmp_path / f"{component}.env").write_text(f"export DATABASE_URL='{url}'\n")
    again = grants.database_urls("participants", "localhost", 5433, "participants", rotate="dashboard")
    assert {c: u for c, u in again.items() if c != "dashboard"} == {c: u for c, u in first.items() if c != "dashboard"}
    assert again["dashboard"] != first["dashboard"]


def test_the_readme_table_is_the_grant_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    header = next(line for line in readme.splitlines() if line.startswith("| table | owner"))
    roles = [cell.strip().strip("`") for cell in header.strip("|").split("|")[2:]]
    assert roles == list(grants.TABLES)
    letters = {"S": "SELECT", "I": "INSERT", "U": "UPDATE", "D": "DELETE"}
    shown: dict[str, dict[str, tuple[str, ...]]] = {role: {} for role in roles}
    for line in readme.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) == len(roles) + 2 and cells[0].startswith("`") and cells[1] == "owns":
            for role, cell in zip(roles, cells[2:], strict=True):
                if cell != "—":
                    shown[role][cells[0].strip("`")] = tuple(letters[c] for c in cell)
    assert shown == {role: dict(tables) for role, tables in grants.TABLES.items()}


def test_the_owner_password_given_is_quoted_into_its_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scripts/stack's STACK_PG_PASSWORD may hold URL characters ('@', ':', '/', '%'): the URL keeps it intact."""
    from sqlalchemy.engine import make_url

    monkeypatch.setenv("PARTICIPANTS_SECRETS_DIR", str(tmp_path))
    given = "p@ss:w/rd%20?#"
    urls = grants.database_urls("participants", "localhost", 5433, "participants", owner_password=given)
    owner = make_url(urls["owner"])
    assert owner.password == given and owner.host == "localhost" and owner.port == 5433
    assert make_url(urls["processor"]).password != given
