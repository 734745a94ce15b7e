"""The demo data generator: file shapes, the upload file's encoding, determinism."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from participants.demo_data import DemoFiles, main, write_demo_data


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return write_demo_data(tmp_path_factory.mktemp("demo"), teachers_per_state=300)


def test_users(demo: DemoFiles) -> None:
    header = b"user_id,state_id,state,name,roles,status,org_name,district,block,school_name,school_udise\n"
    assert demo.users.read_bytes().startswith(header)
    rows = _rows(demo.users)
    assert len(rows) == 2 * 300 + 5
    by_id = {r["user_id"]: r for r in rows}
    assert len(by_id) == len(rows)
    assert by_id["admin-ka"]["roles"] == "ORG_ADMIN" and by_id["admin-mh"]["roles"] == "ORG_ADMIN"
    teacher = by_id["u-ka-000001"]  # the state report's columns are filled for every teacher
    assert all(teacher[c] for c in ("org_name", "district", "block", "school_name", "school_udise"))
    assert len(teacher["school_udise"]) == 11 and teacher["school_udise"].startswith("29")
    for mentor, state in (("mentor-ka-1", "KA"), ("mentor-ka-2", "KA"), ("mentor-mh-1", "MH")):
        assert (by_id[mentor]["roles"], by_id[mentor]["state"]) == ("COURSE_MENTOR", state)
    assert by_id["u-ka-000001"]["state_id"] == "KA-T000001"
    assert by_id["u-mh-000300"]["state_id"] == "MH-T000300"
    teachers = [r for r in rows if r["user_id"].startswith("u-")]
    assert len(teachers) == 600
    assert {r["state"] for r in teachers} == {"KA", "MH"}
    assert all(r["name"].count(" ") == 1 for r in teachers)
    assert {r["status"] for r in rows} <= {"active", "inactive"}
    state_ids = [(r["state"], r["state_id"]) for r in rows if r["state_id"]]
    assert len(set(state_ids)) == len(state_ids)


def test_inactive_share_is_about_two_percent(tmp_path: Path) -> None:
    files = write_demo_data(tmp_path, teachers_per_state=6000)
    teachers = [r for r in _rows(files.users) if r["user_id"].startswith("u-")]
    inactive = sum(r["status"] == "inactive" for r in teachers)
    assert 0.01 < inactive / len(teachers) < 0.03


def test_batches(demo: DemoFiles) -> None:
    rows = {r["batch_id"]: r for r in _rows(demo.batches)}
    assert set(rows) == {"batch-ka-invite", "batch-ka-open", "batch-ka-ended", "batch-ka-small", "batch-mh-invite"}
    assert (rows["batch-ka-invite"]["enrollment_type"], rows["batch-ka-invite"]["status"]) == ("invite-only", "ongoing")
    assert rows["batch-ka-invite"]["mentors"] == "mentor-ka-1"
    assert (rows["batch-ka-open"]["enrollment_type"], rows["batch-ka-open"]["status"]) == ("open", "ongoing")
    assert (rows["batch-ka-ended"]["enrollment_type"], rows["batch-ka-ended"]["status"]) == ("invite-only", "2")
    assert rows["batch-ka-small"]["mentors"] == "mentor-ka-2"
    assert (rows["batch-mh-invite"]["state"], rows["batch-mh-invite"]["status"]) == ("MH", "upcoming")
    for r in rows.values():
        assert r["start_date"] <= r["end_date"]


def test_upload_file_has_bom_crlf_and_10k_ka_state_ids(demo: DemoFiles) -> None:
    data = demo.upload.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfState ID,Name\r\n")
    assert data.endswith(b"\r\n")
    assert data.count(b"\n") == data.count(b"\r\n") == 10_001
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert len(rows) == 10_001
    ids = [r[0] for r in rows[1:]]
    assert len(set(ids)) == 10_000
    assert ids[0] == "KA-T000001" and ids[-1] == "KA-T010000"
    # The first ids are the state's teachers, with the names the users file gives them.
    names = {r["state_id"]: r["name"] for r in _rows(demo.users)}
    assert all(names[sid] == name for sid, name in rows[1:301])


def test_progress(tmp_path: Path, demo: DemoFiles) -> None:
    rows = _rows(demo.progress)
    assert len(rows) == 300  # fewer teachers than 10,000: all of them
    assert [r["user_id"] for r in rows[:2]] == ["u-ka-000001", "u-ka-000002"]
    assert {r["batch_id"] for r in rows} == {"batch-ka-invite"}
    for r in rows:
        assert 0 <= int(r["progress"]) <= 100
        assert (r["completed_at"] != "") == (r["progress"] == "100")
    assert any(r["progress"] == "100" for r in rows)

    big = _rows(write_demo_data(tmp_path, teachers_per_state=12_000).progress)
    assert len(big) == 10_000 and big[-1]["user_id"] == "u-ka-010000"


def test_deterministic(tmp_path: Path) -> None:
    a = write_demo_data(tmp_path / "a", teachers_per_state=500)
    b = write_demo_data(tmp_path / "b", teachers_per_state=500)
    for name in ("users", "batches", "upload", "progress"):
        assert getattr(a, name).read_bytes() == getattr(b, name).read_bytes(), name


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--out", str(tmp_path / "out"), "--teachers-per-state", "10"])
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == ["users.csv", "batches.csv", "upload-10k.csv", "progress.csv"]
    assert len(_rows(tmp_path / "out" / "users.csv")) == 25


def test_a_small_upload_for_a_quick_demo(tmp_path: Path) -> None:
    """scripts/demo's DEMO_ROWS: 40 teachers and a 40-row upload of exactly them (the same first rows)."""
    small = write_demo_data(tmp_path / "small", teachers_per_state=40, upload_rows=40)
    full = write_demo_data(tmp_path / "full", teachers_per_state=300)
    assert [r["State ID"] for r in _rows(small.upload)] == [f"KA-T{n:06d}" for n in range(1, 41)]
    assert _rows(small.upload) == _rows(full.upload)[:40]
    with pytest.raises(ValueError, match="upload_rows"):
        write_demo_data(tmp_path / "none", upload_rows=0)
