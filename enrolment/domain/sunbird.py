"""Sunbird's batch participant API, in our terms (pure): request validation, envelope, per-user result.

State teams already script against `POST /v1/course/batch/users/add|remove`; we answer in the same
envelope so their scripts keep working, and add `details` that say what really happened (Sunbird answers
SUCCESS for a user already in the batch; we tell ALREADY_ENROLLED apart).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from enrolment.domain.model import MAX_ID_LENGTH, Reason
from enrolment.domain.text import CONTROL_CHARACTER, control_sentence

SUCCESS_REASONS = {
    "add": frozenset({Reason.ENROLLED, Reason.ALREADY_ENROLLED}),
    "remove": frozenset({Reason.UNENROLLED, Reason.NOT_ENROLLED}),
}
# Sunbird's own error texts where one exists, so scripts that match on them keep working.
SUNBIRD_ERRORS = {"USER_OTHER_STATE": "userNotAssociatedToRootOrg"}
MAX_IDS = 10_000


class BadRequest(Exception):
    """A malformed body: nothing is published."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ParticipantsRequest:
    batch_id: str
    identifiers: list[str]
    id_type: str  # USER_ID | STATE_ID
    msgid: str | None


def parse_request(body: Any) -> ParticipantsRequest:
    """Validates `{"request": {"batchId": ..., "userIds": [...]}}` (or `stateIds`, our extension)."""
    if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
        raise BadRequest("INVALID_REQUEST", 'The body must be a JSON object with a "request" object.')
    req = body["request"]
    batch_id = req.get("batchId")
    if not isinstance(batch_id, str) or not batch_id.strip():
        raise BadRequest("MISSING_BATCH_ID", "request.batchId is required and must be a non-empty string.")
    control = control_sentence("request.batchId", batch_id)
    if control is not None:
        raise BadRequest(CONTROL_CHARACTER, control)
    has_users, has_states = "userIds" in req, "stateIds" in req
    if has_users == has_states:
        raise BadRequest("MISSING_IDS", "Give exactly one of request.userIds or request.stateIds (a list of ids).")
    key = "userIds" if has_users else "stateIds"
    ids = req[key]
    if not isinstance(ids, list) or not ids:
        raise BadRequest("MISSING_IDS", f"request.{key} must be a non-empty list of ids.")
    if len(ids) > MAX_IDS:
        raise BadRequest("TOO_MANY_IDS", f"request.{key} has {len(ids)} ids; send at most {MAX_IDS} per call.")
    clean: list[str] = []
    for i, value in enumerate(ids):
        if not isinstance(value, str) or not value.strip():
            raise BadRequest("INVALID_ID", f"request.{key}[{i}] must be a non-empty string.")
        control = control_sentence(f"request.{key}[{i}]", value)
        if control is not None:
            raise BadRequest(CONTROL_CHARACTER, control)
        value = value.strip()
        if len(value) > MAX_ID_LENGTH or any(ch.isspace() or not ch.isprintable() for ch in value):
            raise BadRequest("INVALID_ID", f"request.{key}[{i}] is not a valid id.")
        clean.append(value)
    params = body.get("params")
    msgid = params.get("msgid") if isinstance(params, dict) and isinstance(params.get("msgid"), str) else None
    return ParticipantsRequest(batch_id.strip(), clean, "USER_ID" if has_users else "STATE_ID", msgid)


def envelope(
    api_id: str,
    response_code: str,
    result: dict[str, Any],
    *,
    msgid: str | None = None,
    err: str | None = None,
    errmsg: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Sunbird's response envelope."""
    return {
        "id": api_id,
        "ver": "v1",
        "ts": (now or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "params": {
            "resmsgid": str(uuid.uuid4()),
            "msgid": msgid,
            "status": "failed" if err else "successful",
            "err": err,
            "errmsg": errmsg,
        },
        "responseCode": response_code,
        "result": result,
    }


def user_result(action: str, reason: str, message: str) -> str:
    """What Sunbird would put in `result[userId]`: SUCCESS, or an error message."""
    if reason in SUCCESS_REASONS[action]:
        return "SUCCESS"
    return SUNBIRD_ERRORS.get(reason, message)
