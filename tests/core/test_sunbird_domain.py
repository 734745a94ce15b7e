"""The Sunbird-compatible API's pure part: request validation, envelope, per-user result."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from enrolment.domain.sunbird import BadRequest, envelope, parse_request, user_result


def test_parse_user_ids_and_msgid() -> None:
    req = parse_request({"params": {"msgid": "m"}, "request": {"batchId": " b1 ", "userIds": [" u1", "u2"]}})
    assert (req.batch_id, req.identifiers, req.id_type, req.msgid) == ("b1", ["u1", "u2"], "USER_ID", "m")


def test_parse_state_ids_extension() -> None:
    req = parse_request({"request": {"batchId": "b1", "stateIds": ["KA-1"]}})
    assert req.id_type == "STATE_ID" and req.msgid is None


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (None, "INVALID_REQUEST"),
        ([], "INVALID_REQUEST"),
        ({"request": "x"}, "INVALID_REQUEST"),
        ({"request": {"userIds": ["u"]}}, "MISSING_BATCH_ID"),
        ({"request": {"batchId": "", "userIds": ["u"]}}, "MISSING_BATCH_ID"),
        ({"request": {"batchId": "b"}}, "MISSING_IDS"),
        ({"request": {"batchId": "b", "userIds": "u"}}, "MISSING_IDS"),
        ({"request": {"batchId": "b", "userIds": ["u"], "stateIds": ["s"]}}, "MISSING_IDS"),
        ({"request": {"batchId": "b", "userIds": [None]}}, "INVALID_ID"),
        ({"request": {"batchId": "b", "userIds": ["a b"]}}, "INVALID_ID"),
        ({"request": {"batchId": "b", "userIds": ["x" * 129]}}, "INVALID_ID"),
        ({"request": {"batchId": "b", "userIds": ["u"] * 10_001}}, "TOO_MANY_IDS"),
    ],
)
def test_malformed_bodies(body: Any, code: str) -> None:
    with pytest.raises(BadRequest) as err:
        parse_request(body)
    assert err.value.code == code and err.value.message.endswith(".")


def test_envelope_shape() -> None:
    now = datetime(2026, 11, 29, tzinfo=UTC)
    ok = envelope("api.course.batch.users.add", "OK", {"u": "SUCCESS"}, msgid="m", now=now)
    assert ok["ver"] == "v1" and ok["ts"].startswith("2026-11-29T00:00:00.000")
    assert ok["params"]["status"] == "successful" and ok["params"]["err"] is None and ok["params"]["resmsgid"]
    bad = envelope("api.course.batch.users.add", "CLIENT_ERROR", {}, err="X", errmsg="why")
    assert bad["params"]["status"] == "failed" and bad["params"]["errmsg"] == "why"


def test_user_result_like_sunbird() -> None:
    assert user_result("add", "ENROLLED", "m") == "SUCCESS"
    assert user_result("add", "ALREADY_ENROLLED", "m") == "SUCCESS"
    assert user_result("remove", "NOT_ENROLLED", "m") == "SUCCESS"
    assert user_result("add", "USER_OTHER_STATE", "m") == "userNotAssociatedToRootOrg"
    assert user_result("add", "USER_NOT_FOUND", "No user has user id x.") == "No user has user id x."
    assert user_result("remove", "ENROLLED", "m") == "m"
