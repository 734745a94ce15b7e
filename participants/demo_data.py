"""Deterministic demo data: reference CSVs for the imports, a state's upload file and course progress.

``python -m participants.demo_data --out demo-data`` writes:

* ``users.csv`` — teachers of states KA and MH (``u-ka-000001`` / ``KA-T000001``, ~2% inactive, role PUBLIC,
  with organisation, district, block, school and UDISE code for the state report),
  per state one ORG_ADMIN (``admin-ka``, ``admin-mh``) and the mentors ``mentor-ka-1``, ``mentor-ka-2``,
  ``mentor-mh-1`` (COURSE_MENTOR);
* ``batches.csv`` — ``batch-ka-invite``, ``batch-ka-open``, ``batch-ka-ended`` (status given as Sunbird's
  numeric code 2), ``batch-ka-small`` and ``batch-mh-invite``;
* ``upload-10k.csv`` — ``State ID,Name`` and 10,000 KA state ids, as a state would send it (UTF-8 BOM,
  CRLF).  The ids run from ``KA-T000001`` upward; when a state has fewer than 10,000 teachers the ids past
  the last teacher are unknown ones (the "not found" rows of a real upload);
* ``progress.csv`` — ``batch_id,user_id,progress,completed_at`` for the first 10,000 KA teachers (all of
  them when there are fewer) in ``batch-ka-invite``.

The same arguments always give byte-identical files (a seeded ``random.Random``, fixed dates).
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from processor.imports import BATCH_COLUMNS, PROFILE_COLUMNS, USER_COLUMNS

__all__ = ["DEFAULT_SEED", "STATES", "UPLOAD_ROWS", "DemoFiles", "main", "write_demo_data"]

DEFAULT_SEED = 20240917
STATES: tuple[str, ...] = ("KA", "MH")
UPLOAD_ROWS = 10_000
PROGRESS_ROWS = 10_000
INACTIVE_SHARE = 0.02
# 12k teachers in all: enough KA teachers for the 10k upload, a smaller second state.
DEFAULT_TEACHERS: dict[str, int] = {"KA": 10_500, "MH": 1_500}

FIRST_NAMES: tuple[str, ...] = (
    "Aarav",
    "Aditi",
    "Akash",
    "Ananya",
    "Arjun",
    "Bhavana",
    "Deepak",
    "Divya",
    "Ganesh",
    "Harini",
    "Ishaan",
    "Kavya",
    "Lakshmi",
    "Manoj",
    "Meera",
    "Naveen",
    "Pooja",
    "Prakash",
    "Priya",
    "Rahul",
    "Ramesh",
    "Sanjana",
    "Shreya",
    "Sunil",
    "Vikram",
)
LAST_NAMES: tuple[str, ...] = (
    "Bhat",
    "Deshpande",
    "Gowda",
    "Hegde",
    "Iyer",
    "Joshi",
    "Kulkarni",
    "Naik",
    "Patil",
    "Pawar",
    "Rao",
    "Reddy",
    "Shetty",
    "Shinde",
)

USER_HEADER = (*USER_COLUMNS, *PROFILE_COLUMNS)
BATCH_HEADER = BATCH_COLUMNS
PROGRESS_HEADER = ("batch_id", "user_id", "progress", "completed_at")

# (batch_id, course_id, course_name, state, enrollment_type, status, start_date, end_date, mentors)
BATCHES: tuple[tuple[str, ...], ...] = (
    (
        "batch-ka-invite",
        "course-fln-101",
        "Foundational Literacy and Numeracy",
        "KA",
        "invite-only",
        "ongoing",
        "2026-06-01",
        "2027-03-31",
        "mentor-ka-1",
    ),
    (
        "batch-ka-open",
        "course-ict-201",
        "ICT in the Classroom",
        "KA",
        "open",
        "ongoing",
        "2026-07-01",
        "2027-06-30",
        "",
    ),
    (
        "batch-ka-ended",
        "course-fln-100",
        "Foundational Literacy and Numeracy (2025)",
        "KA",
        "invite-only",
        "2",  # Sunbird's numeric code for "ended", to show the import accepts it
        "2025-06-01",
        "2026-03-31",
        "mentor-ka-1",
    ),
    (
        "batch-ka-small",
        "course-sci-301",
        "Inquiry-based Science",
        "KA",
        "invite-only",
        "ongoing",
        "2026-09-01",
        "2027-02-28",
        "mentor-ka-2",
    ),
    (
        "batch-mh-invite",
        "course-fln-101",
        "Foundational Literacy and Numeracy",
        "MH",
        "invite-only",
        "upcoming",
        "2027-01-04",
        "2027-09-30",
        "mentor-mh-1",
    ),
)

# Where teachers work (the state report's columns): a state's department, districts with their blocks and
# UDISE state codes. Chosen from the teacher's number, so the other columns' random draws stay as they were.
ORGS: dict[str, str] = {"KA": "Samagra Shikshana Karnataka", "MH": "Maharashtra Prathamik Shikshan Parishad"}
UDISE_STATE: dict[str, str] = {"KA": "29", "MH": "27"}
DISTRICTS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "KA": (
        ("Mysuru", ("Hunsur", "Nanjangud", "T. Narasipura")),
        ("Belagavi", ("Athani", "Gokak", "Khanapur")),
        ("Dharwad", ("Hubballi", "Kalghatgi")),
        ("Kalaburagi", ("Aland", "Chincholi", "Sedam")),
    ),
    "MH": (
        ("Pune", ("Baramati", "Junnar", "Maval")),
        ("Nashik", ("Igatpuri", "Sinnar")),
        ("Nagpur", ("Katol", "Ramtek", "Umred")),
    ),
}


def teacher_profile(state: str, n: int) -> tuple[str, str, str, str, str]:
    """(org_name, district, block, school_name, school_udise) of teacher ``n``: ~8 teachers per school."""
    districts = DISTRICTS[state]
    d = n % len(districts)
    district, blocks = districts[d]
    b = (n // len(districts)) % len(blocks)
    school = n // 8 % 97 + 1
    udise = f"{UDISE_STATE[state]}{d + 1:02d}{b + 1:02d}{school:03d}{n % 3 + 1:02d}"  # 11 digits, as UDISE
    return ORGS[state], district, blocks[b], f"GHPS {blocks[b]} No. {school}", udise


# Progress completions fall in this window (fixed, so the files are deterministic).
_COMPLETION_START = datetime(2026, 9, 1, tzinfo=UTC)
_COMPLETION_SPAN_S = 80 * 24 * 3600


@dataclass(frozen=True)
class DemoFiles:
    """Paths of the generated files."""

    users: Path
    batches: Path
    upload: Path
    progress: Path


def teacher_user_id(state: str, n: int) -> str:
    return f"u-{state.lower()}-{n:06d}"


def teacher_state_id(state: str, n: int) -> str:
    return f"{state.upper()}-T{n:06d}"


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def _write_csv(
    path: Path,
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    lineterminator: str = "\n",
    encoding: str = "utf-8",
) -> None:
    with path.open("w", encoding=encoding, newline="") as f:
        writer = csv.writer(f, lineterminator=lineterminator)
        writer.writerow(header)
        writer.writerows(rows)


def write_demo_data(
    out_dir: Path, teachers_per_state: int | None = None, *, seed: int = DEFAULT_SEED, upload_rows: int = UPLOAD_ROWS
) -> DemoFiles:
    """Writes the four demo CSVs into ``out_dir`` (created if needed) and returns their paths.

    ``teachers_per_state`` gives every state the same number; by default KA has 10,500 and MH 1,500.
    ``upload_rows`` makes a smaller upload file for a quick run (scripts/demo's DEMO_ROWS).
    """
    if teachers_per_state is not None and teachers_per_state < 1:
        raise ValueError("teachers_per_state must be at least 1")
    if upload_rows < 1:
        raise ValueError("upload_rows must be at least 1")
    teachers = {s: teachers_per_state or DEFAULT_TEACHERS[s] for s in STATES}
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    files = DemoFiles(
        users=out_dir / "users.csv",
        batches=out_dir / "batches.csv",
        upload=out_dir / "upload-10k.csv",
        progress=out_dir / "progress.csv",
    )

    users: list[tuple[str, ...]] = []
    names: dict[str, str] = {}  # KA state id -> name, reused by the upload file
    for state in STATES:
        code = state.lower()
        users.append((f"admin-{code}", "", state, _name(rng), "ORG_ADMIN", "active", ORGS[state], "", "", "", ""))
        mentors = ("1", "2") if state == "KA" else ("1",)
        for m in mentors:
            mentor = (f"mentor-{code}-{m}", f"{state}-M{int(m):06d}", state, _name(rng), "COURSE_MENTOR", "active")
            users.append((*mentor, ORGS[state], "", "", "", ""))
        for n in range(1, teachers[state] + 1):
            name = _name(rng)
            status = "inactive" if rng.random() < INACTIVE_SHARE else "active"
            state_id = teacher_state_id(state, n)
            teacher = (teacher_user_id(state, n), state_id, state, name, "PUBLIC", status)
            users.append((*teacher, *teacher_profile(state, n)))
            if state == "KA":
                names[state_id] = name
    _write_csv(files.users, USER_HEADER, users)

    _write_csv(files.batches, BATCH_HEADER, BATCHES)

    upload: list[tuple[str, str]] = []
    for n in range(1, upload_rows + 1):
        state_id = teacher_state_id("KA", n)
        upload.append((state_id, names.get(state_id) or _name(rng)))
    _write_csv(files.upload, ("State ID", "Name"), upload, lineterminator="\r\n", encoding="utf-8-sig")

    progress: list[tuple[str, str, str, str]] = []
    for n in range(1, min(PROGRESS_ROWS, teachers["KA"]) + 1):
        # About a quarter have finished; the rest are spread over 0-99.
        value = 100 if rng.random() < 0.25 else rng.randint(0, 99)
        completed_at = ""
        if value == 100:
            when = _COMPLETION_START + timedelta(seconds=rng.randrange(_COMPLETION_SPAN_S))
            completed_at = when.isoformat()
        progress.append(("batch-ka-invite", teacher_user_id("KA", n), str(value), completed_at))
    _write_csv(files.progress, PROGRESS_HEADER, progress)
    return files


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write deterministic demo CSVs (users, batches, upload, progress).")
    parser.add_argument("--out", type=Path, default=Path("demo-data"), help="output directory (default: demo-data)")
    parser.add_argument(
        "--teachers-per-state", type=int, default=None, help="teachers per state (default: KA 10,500, MH 1,500)"
    )
    parser.add_argument("--upload-rows", type=int, default=UPLOAD_ROWS, help="rows of the upload (default: 10,000)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    files = write_demo_data(args.out, args.teachers_per_state, seed=args.seed, upload_rows=args.upload_rows)
    for path in (files.users, files.batches, files.upload, files.progress):
        print(path)


if __name__ == "__main__":
    main()
