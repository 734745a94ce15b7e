"""The Sunbird-compatible APIs' pure part: request validation, envelope, codes, per-user texts, status words."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from enrolment.domain import sunbird as sb


def test_path_batch_id_wins() -> None:
    body = {"params": {"msgid": "body"}, "request": {"batchId": "ignored", "userIds": [" u1", "u2"]}}
    req = sb.parse_request(body, "b1")
    assert (req.batch_id, req.identifiers, req.id_type) == ("b1", ["u1", "u2"], "USER_ID")
    assert sb.parse_request(body).batch_id == "ignored"


def test_state_ids_extension() -> None:
    req = sb.parse_request({"request": {"stateIds": ["KA-1"]}}, "b1")
    assert req.id_type == "STATE_ID"


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        (None, "INVALID_REQUESTED_DATA", "INVALID_REQUEST"),
        ([], "INVALID_REQUESTED_DATA", "INVALID_REQUEST"),
        ({"request": "x"}, "INVALID_REQUESTED_DATA", "INVALID_REQUEST"),
        ({}, "USERID_MISSING", "MISSING_IDS"),
        ({"request": {}}, "USERID_MISSING", "MISSING_IDS"),
        ({"request": {"userIds": []}}, "USERID_MISSING", "MISSING_IDS"),
        ({"request": {"userIds": "u"}}, "INVALID_REQUESTED_DATA", "INVALID_ID"),
        ({"request": {"userIds": ["u"], "stateIds": ["s"]}}, "INVALID_REQUESTED_DATA", "MISSING_IDS"),
        ({"request": {"userIds": [None]}}, "INVALID_REQUESTED_DATA", "INVALID_ID"),
        ({"request": {"userIds": ["a b"]}}, "INVALID_REQUESTED_DATA", "INVALID_ID"),
        ({"request": {"userIds": ["x" * 129]}}, "INVALID_REQUESTED_DATA", "INVALID_ID"),
        ({"request": {"userIds": ["u"] * 10_001}}, "INVALID_REQUESTED_DATA", "TOO_MANY_IDS"),
    ],
)
def test_malformed_bodies(body: Any, code: str, reason: str) -> None:
    with pytest.raises(sb.Refusal) as err:
        sb.parse_request(body, "b1")
    assert (err.value.error.code, err.value.reason) == (code, reason) and err.value.errmsg.endswith(".")


def test_body_only_form_needs_a_batch_id() -> None:
    with pytest.raises(sb.Refusal) as err:
        sb.parse_request({"request": {"userIds": ["u"]}})
    assert err.value.error.code == "COURSE_BATCH_ID_MISSING"


def test_envelope_like_sunbird() -> None:
    now = datetime(2026, 12, 1, 21, 30, 20, 123456, tzinfo=UTC)
    ok = sb.envelope("api.course.batch.users.add", {"u": "SUCCESS"}, msgid="m", now=now)
    assert ok == {
        "id": "api.course.batch.users.add",
        "ver": "v1",
        "ts": "2026-12-01 21:30:20:123+0000",
        "params": {"resmsgid": None, "msgid": "m", "err": None, "status": "success", "errmsg": None},
        "responseCode": "OK",
        "result": {"u": "SUCCESS"},
    }
    bad = sb.envelope("x", {}, error=sb.UNAUTHORIZED_USER)
    assert bad["params"] == {
        "resmsgid": None,
        "msgid": None,
        "err": "UNAUTHORIZED_USER",
        "status": "SERVER_ERROR",
        "errmsg": "You are not authorized.",
    }
    assert bad["responseCode"] == "CLIENT_ERROR"
    missing = sb.envelope("x", {}, error=sb.USERID_MISSING)["params"]
    assert missing["status"] == missing["err"] == "USERID_MISSING"
    assert sb.sunbird_ts(datetime(2026, 1, 2, 3, 4, 5, 6000, tzinfo=timezone(timedelta(hours=5, minutes=30)))) == (
        "2026-01-02 03:04:05:006+0530"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d{3}\+0000", sb.sunbird_ts())


def test_refusal_text_is_sunbirds_with_our_detail_appended() -> None:
    assert sb.Refusal(sb.INVALID_COURSE_BATCH_ID, "BATCH_NOT_FOUND").errmsg == "Invalid course batch id "
    closed = sb.Refusal(sb.COURSE_BATCH_ALREADY_COMPLETED, "BATCH_CLOSED", "Batch b is ended.")
    assert closed.errmsg == "Course batch is already completed. Batch b is ended."


def test_user_result_like_sunbird() -> None:
    assert sb.user_result("add", "ENROLLED", "u", "m") == "SUCCESS"
    assert sb.user_result("add", "ALREADY_ENROLLED", "u", "m") == "SUCCESS"
    assert sb.user_result("remove", "UNENROLLED", "u", "m") == "SUCCESS"
    assert sb.user_result("remove", "NOT_ENROLLED", "u", "m") == "User is not enrolled to given course batch."
    assert sb.user_result("remove", "COURSE_COMPLETED", "u", "m") == "User already completed given course batch."
    other = "User (ID = u9) not associated to course batch creator root org."
    assert sb.user_result("add", "USER_OTHER_STATE", "u9", "m") == other
    assert sb.user_result("add", "USER_NOT_FOUND", "u9", "m") == other
    not_enrolled = "User is not enrolled to given course batch."
    assert sb.user_result("remove", "USER_OTHER_STATE", "u9", "m") == not_enrolled, "root org is for add only"
    assert sb.user_result("remove", "USER_NOT_FOUND", "u9", "m") == not_enrolled
    assert sb.user_result("add", "USER_INACTIVE", "u", "m") == "User account has been blocked ."
    assert sb.user_result("add", "SOMETHING_NEW", "u", "Our sentence.") == "Our sentence."


def test_bulk_cells_and_status_words() -> None:
    assert sb.bulk_ids(" a, b ,,c ") == ["a", "b", "c"]
    assert sb.process_status([]) == "NOT STARTED"
    assert sb.process_status([(0, False), (0, False)]) == "NOT STARTED"
    assert sb.process_status([(3, True), (0, False)]) == "IN PROGRESS"
    assert sb.process_status([(3, True), (2, True)]) == "COMPLETED"
