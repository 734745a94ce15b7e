"""Retry and undo record the person who ran them: `--as` is required on the direct path (no broker needed)."""

from __future__ import annotations

import pytest

from enrolment.errors import EXIT_INPUT
from enrolment.store.ledger import AppliedChange, RejectedRow
from enrolment.store.uploads import UploadRecord
from participants.cli import main
from producer import derived


@pytest.mark.parametrize("argv", [["retry", "up-1"], ["undo", "up-1"], ["retry", "up-1", "--as", "  "]])
def test_retry_and_undo_without_as_are_refused_before_anything_is_read(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg2://nobody:x@127.0.0.1:1/none")  # never reached
    assert main(argv) == EXIT_INPUT
    err = capsys.readouterr().err
    assert f"{argv[0]} needs --as ADMIN_USER_ID" in err
    assert "Nothing was published." in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_retry_and_undo_plans_name_the_runner_not_the_original_requester(monkeypatch: pytest.MonkeyPatch) -> None:
    original = UploadRecord("up-1", "b1", "add", "admin-original", False, 1, [], True)
    monkeypatch.setattr(derived, "find_upload", lambda cur, upload_id: original)
    monkeypatch.setattr(derived, "rejected_rows", lambda cur, u: [RejectedRow(2, "u9", "USER_ID", "ADD", "X")])
    monkeypatch.setattr(derived, "applied_changes", lambda cur, u, b: [AppliedChange(2, "u1", "ENROLLED", False)])
    assert derived.plan_retry(None, "up-1", None, "admin-runner").requested_by == "admin-runner"
    assert derived.plan_undo(None, "up-1", "admin-runner").requested_by == "admin-runner"
