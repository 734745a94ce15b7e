"""The CLI's server mode without a server: what is refused before any request, and the credentials file."""

from __future__ import annotations

import json
import os
import stat
from collections import Counter
from pathlib import Path

import pytest

from enrolment.errors import EXIT_INPUT, EXIT_UNREACHABLE, UserError
from participants.cli import main
from producer import remote
from producer.follow import UploadStatus


@pytest.fixture(autouse=True)
def _client_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("PARTICIPANTS_SERVER", "PARTICIPANTS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PARTICIPANTS_CREDENTIALS", str(tmp_path / "cfg" / "credentials"))


def test_as_is_refused_in_server_mode_and_required_on_the_direct_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "f.csv"
    file.write_text("user_id\nu1\n")
    assert main(["add", str(file), "--batch", "b", "--server", "http://127.0.0.1:9", "--as", "admin"]) == EXIT_INPUT
    assert "--as cannot be used with --server" in capsys.readouterr().err
    assert main(["remove", str(file), "--batch", "b"]) == EXIT_INPUT
    assert "remove needs --as ADMIN_USER_ID (or --server URL)" in capsys.readouterr().err


def test_no_token_and_an_unreachable_server_are_sentences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "f.csv"
    file.write_text("user_id\nu1\n")
    assert main(["add", str(file), "--batch", "b", "--server", "http://127.0.0.1:9"]) == EXIT_INPUT
    assert "No API token for http://127.0.0.1:9" in capsys.readouterr().err
    os.environ["PARTICIPANTS_TOKEN"] = "secret-token-value"
    try:
        assert main(["status", "up-1", "--server", "http://127.0.0.1:9"]) == EXIT_UNREACHABLE
    finally:
        del os.environ["PARTICIPANTS_TOKEN"]
    err = capsys.readouterr().err
    assert "Cannot reach the server http://127.0.0.1:9" in err and "secret-token-value" not in err
    with pytest.raises(UserError):
        remote.server_url("ftp://example")


def test_credentials_are_kept_per_server_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "credentials"
    remote.write_credentials(path, "https://a.example", "tok-a")
    remote.write_credentials(path, "https://b.example", "tok-b")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert remote.read_credentials(path) == {"https://a.example": "tok-a", "https://b.example": "tok-b"}
    assert remote.token_for("https://a.example", path=path) == "tok-a"
    path.chmod(0o640)
    with pytest.raises(UserError, match="may be read by others"):
        remote.token_for("https://a.example", path=path)
    path.chmod(0o600)
    with pytest.raises(UserError, match=r"No API token for https://c\.example"):
        remote.token_for("https://c.example", path=path)


def test_the_servers_summary_prints_as_the_cli_own() -> None:
    own = UploadStatus(
        upload_id="up-1",
        batch_id="b1",
        kind="add",
        published=3,
        processed=3,
        outcomes=Counter({"APPLIED": 2, "REJECTED": 1}),
        reasons=Counter({"ENROLLED": 2, "USER_NOT_FOUND": 1}),
        refused=[{"line": 5, "identifier": "u1", "reason": "DUPLICATE_IN_FILE", "message": "Line 5: again."}],
        completed=True,
        requested_by="admin",
        submitted_by="team",
    )
    served = {**own.to_json(), "file_name": None, "percent": 100}
    served["refused_rows"] = [dict(reversed(r.items())) for r in served["refused_rows"]]  # key order as it comes
    again = remote.status_from_json(served)
    assert again.to_json() == own.to_json() and again.render() == own.render()
    assert json.dumps(again.to_json()) == json.dumps(own.to_json())  # the same bytes printed, keys in one order
    assert again.to_json()["requested_by"] == "admin" and again.to_json()["submitted_by"] == "team"
    assert again.exit_code() == own.exit_code() == 3
