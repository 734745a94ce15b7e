"""Dashboard bench: the batch page and the CSV of a 10k-participant batch, against a naive baseline.

    .venv/bin/python -m bench.dashboard_bench [--participants 10000] [--runs 20] [--keep]

Builds a private batch (its own state, users and dashboard group ``bench-dashboard-<token>``) through the read
model's own write path, then times, in-process through the ASGI app:

* the batch page's first page — server time from the ``Server-Timing`` header (target ≤ 200 ms median);
* the full CSV download, streamed — wall time until the last byte (target ≤ 1 s median);

and, for scale, the naive way in the same run: load every row with an ORM query, then render the whole table
or build the whole CSV in memory.  Prints medians and ratios, and writes bench/results/dashboard.json.
Everything it created is deleted at the end unless --keep.  No asserts: numbers are for reading.
"""

from __future__ import annotations

import argparse
import io
import json
import secrets
import statistics
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment
from sqlalchemy import Engine, ForeignKey, and_, create_engine, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from dashboard.readmodel import MembershipEvent, ProgressUpdate
from dashboard.readstore import apply_batch, clear
from dashboard.rules import CSV_HEADER, csv_row
from dashboard.web.app import create_app
from enrolment import csvsafe
from enrolment.settings import Settings
from enrolment.store import accounts
from processor.imports import import_batches, import_users

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

RESULTS = Path(__file__).resolve().parent / "results"
T0 = 1_788_000_000_000


# ------------------------------------------------------------------------------------------ naive baseline
class Base(DeclarativeBase):
    pass


class UserOrm(Base):
    __tablename__ = "users"
    user_id: Mapped[str] = mapped_column(primary_key=True)
    name: Mapped[str]
    state_id: Mapped[str | None]


class MemberOrm(Base):
    __tablename__ = "dash_members"
    group_id: Mapped[str] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.user_id"), primary_key=True)
    enrolled_at: Mapped[datetime]
    added_via: Mapped[str]


class ProgressOrm(Base):
    __tablename__ = "dash_progress"
    group_id: Mapped[str] = mapped_column(primary_key=True)
    batch_id: Mapped[str] = mapped_column(primary_key=True)
    user_id: Mapped[str] = mapped_column(primary_key=True)
    progress: Mapped[int]
    completed_at: Mapped[datetime | None]


NAIVE_PAGE = Environment(autoescape=True).from_string(
    "<h1>{{ batch_id }}</h1><p>{{ rows|length }} participants</p><table>"
    "{% for m, u, p in rows %}<tr><td>{{ u.name }}</td><td>{{ m.user_id }}</td><td>{{ u.state_id or '' }}</td>"
    "<td>{{ m.enrolled_at }}</td><td>{{ m.added_via }}</td><td>{{ p.progress if p else 0 }}%</td>"
    "<td>{{ p.completed_at if p else '' }}</td></tr>{% endfor %}</table>"
)


def naive_rows(engine: Engine, group: str, batch_id: str) -> list[Any]:
    """Every participant as ORM objects, sorted in Python: the whole batch in memory."""
    with Session(engine) as session:
        stmt = (
            select(MemberOrm, UserOrm, ProgressOrm)
            .join(UserOrm, UserOrm.user_id == MemberOrm.user_id)
            .outerjoin(
                ProgressOrm,
                and_(
                    ProgressOrm.group_id == MemberOrm.group_id,
                    ProgressOrm.batch_id == MemberOrm.batch_id,
                    ProgressOrm.user_id == MemberOrm.user_id,
                ),
            )
            .where(MemberOrm.group_id == group, MemberOrm.batch_id == batch_id)
        )
        rows = list(session.execute(stmt).all())
    rows.sort(key=lambda r: (r[1].name, r[0].user_id))
    return rows


def naive_page(engine: Engine, group: str, batch_id: str) -> str:
    return NAIVE_PAGE.render(batch_id=batch_id, rows=naive_rows(engine, group, batch_id))


def naive_csv(engine: Engine, group: str, batch_id: str) -> bytes:
    buf = io.StringIO()
    writer = csvsafe.writer(buf)
    writer.writerow(CSV_HEADER)
    for m, u, p in naive_rows(engine, group, batch_id):
        writer.writerow(
            csv_row(
                u.name,
                m.user_id,
                u.state_id,
                m.enrolled_at,
                m.added_via,
                p.progress if p else None,
                p.completed_at if p else None,
            )
        )
    return buf.getvalue().encode("utf-8")


_PREVIOUS_SQL = """
SELECT m.user_id, m.name, m.state_id, m.enrolled_at, m.added_via, p.progress, p.completed_at
FROM dash_members m
LEFT JOIN dash_progress p ON p.group_id = m.group_id AND p.batch_id = m.batch_id AND p.user_id = m.user_id
WHERE m.group_id = :g AND m.batch_id = :b ORDER BY m.name, m.user_id
"""


def previous_csv(engine: Engine, group: str, batch_id: str) -> Iterator[bytes]:
    """The CSV as it was before the state report columns (7 columns, no users join), streamed the same way."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=2000).execute(
            text(_PREVIOUS_SQL), {"g": group, "b": batch_id}
        )
        buf = io.StringIO()
        writer = csvsafe.writer(buf)
        writer.writerow(CSV_HEADER[:7])
        for n, r in enumerate(result, 1):
            writer.writerow(csv_row(r[1], r[0], r[2], r[3], r[4], r[5], r[6]))
            if n % 1000 == 0:
                yield buf.getvalue().encode("utf-8")
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue().encode("utf-8")


# ------------------------------------------------------------------------------------------ set-up
def sign_in(engine: Engine, client: TestClient, user_id: str) -> None:
    """Gives ``user_id`` a throwaway password and signs ``client`` in with it."""
    password = secrets.token_urlsafe(16)
    with engine.begin() as conn, closing(conn.connection.cursor()) as cur:
        accounts.set_password(cur, user_id, password)
    r = client.post("/login", data={"username": user_id, "password": password}, follow_redirects=False)
    assert r.status_code == 303, r.text


def build(engine: Engine, group: str, token: str, n: int) -> tuple[str, str]:
    """Reference data and a read model with ``n`` participants (each with progress); returns (state, batch id)."""
    state = f"BD{token}".upper()
    batch_id = f"bench-dash-{token}"
    users = [
        "user_id,state_id,state,name,roles,status,org_name,district,block,school_name,school_udise",
        f"mentor-{token},,{state},Mentor,COURSE_MENTOR,active,,,,,",
    ]
    first = ("Aarav", "Divya", "Kavya", "Manoj", "Priya", "Rahul", "Sunil", "Meera")
    last = ("Rao", "Patil", "Iyer", "Shetty", "Naik", "Joshi")
    ids = [f"u-{token}-{i:06d}" for i in range(n)]
    for i, uid in enumerate(ids):
        school = f"Org {i % 7},District {i % 5},Block {i % 11},GHPS No. {i // 8},2901{i:07d}"
        users.append(f"{uid},{state}-T{i:06d},{state},{first[i % 8]} {last[(i // 8) % 6]} {i},PUBLIC,active,{school}")
    import_users(engine, io.BytesIO(("\n".join(users) + "\n").encode()))
    import_batches(
        engine,
        io.BytesIO(
            (
                "batch_id,course_id,course_name,state,enrollment_type,status,start_date,end_date,mentors\n"
                f"{batch_id},course-bench,Bench course,{state},invite-only,ongoing,2026-01-01,2027-01-01,"
                f"mentor-{token}\n"
            ).encode()
        ),
    )
    events: list[Any] = [
        MembershipEvent(f"bench-{token}:{i}", batch_id, "course-bench", uid, "ENROLLED", "BACKEND", T0 + i)
        for i, uid in enumerate(ids)
    ]
    events += [
        ProgressUpdate(batch_id, uid, i % 101, T0 + 5000 if i % 101 == 100 else None, T0 + 10_000)
        for i, uid in enumerate(ids)
    ]
    raw = engine.raw_connection()
    try:
        apply_batch(raw, group, events, lambda _cur: None)  # no positions: the bench writes rows directly
    finally:
        raw.close()
    with engine.begin() as conn:
        conn.execute(text("ANALYZE dash_members; ANALYZE dash_progress"))
    return state, batch_id


def cleanup(engine: Engine, group: str, state: str, batch_id: str) -> None:
    raw = engine.raw_connection()
    try:
        clear(raw, group)
    finally:
        raw.close()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM batch_mentors WHERE batch_id = :b"), {"b": batch_id})
        conn.execute(text("DELETE FROM course_batches WHERE batch_id = :b"), {"b": batch_id})
        conn.execute(text("DELETE FROM users WHERE state = :s"), {"s": state})
        conn.execute(text("DELETE FROM states WHERE code = :s"), {"s": state})


# ------------------------------------------------------------------------------------------ timing
def median_ms(fn: Callable[[], float | None], runs: int, warmup: int = 2) -> float:
    """Median over ``runs`` of fn's own measurement (ms) when it returns one, else of its wall time."""
    samples = []
    for i in range(warmup + runs):
        started = time.perf_counter()
        own = fn()
        wall = (time.perf_counter() - started) * 1000
        if i >= warmup:
            samples.append(own if own is not None else wall)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--participants", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the bench data in the store")
    args = parser.parse_args()

    base = Settings.from_env()
    token = uuid.uuid4().hex[:8]
    group = f"bench-dashboard-{token}"
    settings = replace(base, dashboard_group=group)
    engine = create_engine(base.database_url)
    started = time.perf_counter()
    state, batch_id = build(engine, group, token, args.participants)
    print(f"set-up: {args.participants} participants with progress in {time.perf_counter() - started:.1f} s")
    client = TestClient(create_app(settings, engine))
    sign_in(engine, client, f"mentor-{token}")  # every page needs a session (the batch's mentor sees it)
    try:

        def page() -> float:
            r = client.get(f"/batches/{batch_id}")
            assert r.status_code == 200
            return float(r.headers["server-timing"].split("dur=")[1])

        def page_sorted_search() -> float:
            r = client.get(f"/batches/{batch_id}", params={"sort": "progress", "dir": "desc", "q": "Rao"})
            assert r.status_code == 200
            return float(r.headers["server-timing"].split("dur=")[1])

        def download() -> None:
            with client.stream("GET", f"/batches/{batch_id}/participants.csv") as r:
                size = sum(len(chunk) for chunk in r.iter_bytes())
            assert size > args.participants * 40

        def download_sunbird() -> None:
            with client.stream("GET", f"/batches/{batch_id}/participants.csv", params={"format": "sunbird"}) as r:
                size = sum(len(chunk) for chunk in r.iter_bytes())
            assert r.status_code == 200 and size > args.participants * 40

        def previous_format() -> None:
            size = sum(len(chunk) for chunk in previous_csv(engine, group, batch_id))
            assert size > args.participants * 40

        def naive_page_run() -> None:
            naive_page(engine, group, batch_id)

        def naive_csv_run() -> None:
            naive_csv(engine, group, batch_id)

        rows = len(naive_csv(engine, group, batch_id).decode("utf-8-sig").splitlines()) - 1
        assert rows == args.participants, rows
        results = {
            "participants": args.participants,
            "runs": args.runs,
            "page_first_ms": median_ms(page, args.runs),
            "page_sorted_search_ms": median_ms(page_sorted_search, args.runs),
            "naive_page_ms": median_ms(naive_page_run, args.runs),
            "csv_stream_ms": median_ms(download, args.runs),
            "csv_sunbird_ms": median_ms(download_sunbird, args.runs),
            "csv_previous_format_ms": median_ms(previous_format, args.runs),
            "naive_csv_ms": median_ms(naive_csv_run, args.runs),
        }
    finally:
        if not args.keep:
            cleanup(engine, group, state, batch_id)
        engine.dispose()

    page_ratio = results["naive_page_ms"] / results["page_first_ms"]
    csv_ratio = results["naive_csv_ms"] / results["csv_stream_ms"]
    print(f"dashboard bench: {args.participants} participants, medians of {args.runs} runs")
    print(f"  batch page, first page (server time)        {results['page_first_ms']:8.1f} ms   target <= 200 ms")
    print(f"  batch page, sorted by progress + search     {results['page_sorted_search_ms']:8.1f} ms")
    print(f"  naive: ORM load all rows + render them all  {results['naive_page_ms']:8.1f} ms   x{page_ratio:.1f}")
    print(f"  CSV, every row streamed (to last byte)      {results['csv_stream_ms']:8.1f} ms   target <= 1000 ms")
    print(f"  naive: ORM load all rows + CSV in memory    {results['naive_csv_ms']:8.1f} ms   x{csv_ratio:.1f}")
    prev = results["csv_previous_format_ms"]
    for key, label in (("csv_stream_ms", "standard (14 columns)"), ("csv_sunbird_ms", "?format=sunbird      ")):
        print(f"  CSV {label}, / previous 7-column format  {results[key]:8.1f} ms   x{results[key] / prev:.2f}")
    print(f"  previous format (7 columns, no users join)  {prev:8.1f} ms")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "dashboard.json"
    out.write_text(json.dumps({**results, "naive_page_ratio": page_ratio, "naive_csv_ratio": csv_ratio}, indent=2))
    print(f"  written to {out}")


if __name__ == "__main__":
    main()
