"""Sunbird's batch participant and bulk upload APIs, in our terms (pure): requests, envelope, codes and texts.

State teams already script against Sunbird's `POST /v1/course/batch/users/add|remove/:batchId` and its bulk
upload API; we answer on the same wire (``/work/shared/reference/sunbird.md`` in the project notes, README
"Sunbird-compatible API"): the same envelope, codes, HTTP statuses and per-user texts, and ``result`` holding
the user ids only.  What really happened per row (our reason codes) is the upload's, followed by its id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from enrolment.domain.model import MAX_ID_LENGTH, Reason
from enrolment.domain.text import CONTROL_CHARACTER, control_sentence

API_IDS = {
    "add": "api.course.batch.users.add",
    "remove": "api.course.batch.users.remove",
    "bulk-add": "api.batch.bulk.enrollment",
    "bulk-remove": "api.batch.bulk.unenrollment",
    "status": "api.upload.status",
}
SUCCESS_REASONS = {
    "add": frozenset({Reason.ENROLLED, Reason.ALREADY_ENROLLED}),
    "remove": frozenset({Reason.UNENROLLED}),
}
NOT_IN_ROOT_ORG = "User (ID = {id}) not associated to course batch creator root org."
NOT_ENROLLED = "User is not enrolled to given course batch."
# Sunbird's per-user texts for our reason codes (COURSE_COMPLETED: the completion rule's refusal).
USER_TEXTS = {
    "USER_NOT_FOUND": NOT_IN_ROOT_ORG,
    "USER_OTHER_STATE": NOT_IN_ROOT_ORG,
    "NOT_ENROLLED": NOT_ENROLLED,
    "COURSE_COMPLETED": "User already completed given course batch.",
    "USER_INACTIVE": "User account has been blocked .",
    "NOT_AUTHORIZED": "You are not authorized.",
    "BATCH_CLOSED": "Course batch is already completed.",
    "BATCH_NOT_INVITE_ONLY": "Enrollment type should be invite-only.",
    "BATCH_NOT_FOUND": "Invalid course batch id ",
}
# Sunbird checks the root org on add only: a remove of an unknown user or one of another state finds no
# enrolment to remove, so it answers as for anyone not in the batch.
REMOVE_TEXTS = {"USER_NOT_FOUND": NOT_ENROLLED, "USER_OTHER_STATE": NOT_ENROLLED}
MAX_IDS = 10_000


@dataclass(frozen=True)
class WireError:
    """A whole-request error as Sunbird answers it: HTTP status, ``err``, ``params.status``, text, responseCode."""

    http: int
    code: str
    text: str
    response_code: str = "CLIENT_ERROR"
    status: str | None = None  # params.status when Sunbird does not repeat the code there


UNAUTHORIZED_USER = WireError(401, "UNAUTHORIZED_USER", "You are not authorized.", status="SERVER_ERROR")
USERID_MISSING = WireError(400, "USERID_MISSING", "UserId is mandatory.")
INVALID_COURSE_BATCH_ID = WireError(400, "INVALID_COURSE_BATCH_ID", "Invalid course batch id ")
ENROLLMENT_TYPE_VALIDATION = WireError(400, "ENROLLMENT_TYPE_VALIDATION", "Enrollment type should be invite-only.")
# Extensions (Sunbird never checked these): Sunbird's own codes and texts where it has one.
COURSE_BATCH_ALREADY_COMPLETED = WireError(400, "COURSE_BATCH_ALREADY_COMPLETED", "Course batch is already completed.")
COURSE_BATCH_ID_MISSING = WireError(400, "COURSE_BATCH_ID_MISSING", "Course batchId is mandatory.")
INVALID_REQUESTED_DATA = WireError(400, "INVALID_REQUESTED_DATA", "Requested data for this operation is not valid.")
INVALID_PROCESS_ID = WireError(400, "INVALID_PROCESS_ID", "Invalid Process Id.")
REQUEST_TOO_LARGE = WireError(413, "REQUEST_TOO_LARGE", "The request body is too large.")
SERVICE_UNAVAILABLE = WireError(503, "SERVICE_UNAVAILABLE", "Service is unavailable.", "SERVER_ERROR")


class Refusal(Exception):
    """A request answered with a whole-request error before anything was published.

    ``detail`` is our own sentence, appended to Sunbird's text only where Sunbird would not have refused
    (an extension), so that Sunbird's own refusals keep Sunbird's exact text.  ``reason`` is our reason code
    (sent in the ``X-Reason`` header).
    """

    def __init__(self, error: WireError, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or error.text)
        self.error = error
        self.reason = reason
        self.detail = detail

    @property
    def errmsg(self) -> str:
        return f"{self.error.text} {self.detail}" if self.detail else self.error.text


@dataclass(frozen=True)
class ParticipantsRequest:
    batch_id: str
    identifiers: list[str]
    id_type: str  # USER_ID | STATE_ID


def valid_id(value: str) -> bool:
    """An id we can publish: not over-long, printable, no whitespace."""
    return 0 < len(value) <= MAX_ID_LENGTH and not any(ch.isspace() or not ch.isprintable() for ch in value)


def no_control(name: str, value: str) -> None:
    """CONTROL_CHARACTER (with the field named) before anything else is checked: the one rule of text.py."""
    sentence = control_sentence(name, value)
    if sentence is not None:
        raise Refusal(INVALID_REQUESTED_DATA, CONTROL_CHARACTER, sentence)


def _ids(req: dict[str, Any]) -> tuple[str, list[str]]:
    """``userIds`` (or our ``stateIds``) as clean strings; USERID_MISSING when neither holds any."""
    has_users, has_states = bool(req.get("userIds")), bool(req.get("stateIds"))
    if not has_users and not has_states:
        raise Refusal(USERID_MISSING, "MISSING_IDS")
    if has_users and has_states:
        raise Refusal(INVALID_REQUESTED_DATA, "MISSING_IDS", "Give request.userIds or request.stateIds, not both.")
    key = "userIds" if has_users else "stateIds"
    ids = req[key]
    if not isinstance(ids, list):
        raise Refusal(INVALID_REQUESTED_DATA, "INVALID_ID", f"request.{key} must be a list of ids.")
    if len(ids) > MAX_IDS:
        raise Refusal(
            INVALID_REQUESTED_DATA, "TOO_MANY_IDS", f"request.{key} has {len(ids)} ids; send at most {MAX_IDS}."
        )
    clean: list[str] = []
    for i, value in enumerate(ids):
        if isinstance(value, str):
            no_control(f"request.{key}[{i}]", value)
        if not isinstance(value, str) or not valid_id(value.strip()):
            raise Refusal(INVALID_REQUESTED_DATA, "INVALID_ID", f"request.{key}[{i}] is not a valid id.")
        clean.append(value.strip())
    return key, clean


def parse_request(body: Any, path_batch_id: str | None = None) -> ParticipantsRequest:
    """Validates `{"request": {"userIds": [...]}}`; the path's batch id wins over `request.batchId`, as in Sunbird.

    A `params.msgid` in the body is ignored: Sunbird echoes the `X-msgId` header only (or null).
    """
    if not isinstance(body, dict) or not isinstance(body.get("request", {}), dict):
        raise Refusal(INVALID_REQUESTED_DATA, "INVALID_REQUEST", 'The body must be a JSON object with a "request".')
    req: dict[str, Any] = body.get("request") or {}
    batch_id = path_batch_id if path_batch_id is not None else req.get("batchId")
    if not isinstance(batch_id, str) or not batch_id.strip():
        raise Refusal(COURSE_BATCH_ID_MISSING, "MISSING_BATCH_ID")
    no_control("request.batchId", batch_id)
    key, ids = _ids(req)
    return ParticipantsRequest(batch_id.strip(), ids, "USER_ID" if key == "userIds" else "STATE_ID")


def sunbird_ts(now: datetime | None = None) -> str:
    """`yyyy-MM-dd HH:mm:ss:SSSZ`, e.g. `2026-12-01 21:30:20:123+0000`."""
    now = now or datetime.now(UTC)
    return f"{now:%Y-%m-%d %H:%M:%S}:{now.microsecond // 1000:03d}{now:%z}"


def envelope(
    api_id: str,
    result: dict[str, Any],
    *,
    msgid: str | None = None,
    error: WireError | None = None,
    errmsg: str | None = None,
    response_code: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Sunbird's response envelope: success (no ``error``) or a whole-request error."""
    status = "success" if error is None else (error.status or error.code)
    return {
        "id": api_id,
        "ver": "v1",
        "ts": sunbird_ts(now),
        "params": {
            "resmsgid": None,
            "msgid": msgid,
            "err": None if error is None else error.code,
            "status": status,
            "errmsg": None if error is None else (errmsg or error.text),
        },
        "responseCode": response_code or ("OK" if error is None else error.response_code),
        "result": result,
    }


def user_result(action: str, reason: str, identifier: str, message: str) -> str:
    """What Sunbird puts in `result[userId]`: SUCCESS, or its per-user text (ours where Sunbird has none)."""
    if reason in SUCCESS_REASONS[action]:
        return "SUCCESS"
    text = (REMOVE_TEXTS if action == "remove" else {}).get(reason) or USER_TEXTS.get(reason)
    return message if text is None else text.format(id=identifier)


def bulk_ids(cell: str) -> list[str]:
    """The ids of one `userIds` cell of a bulk file: comma-separated, blanks dropped."""
    return [part.strip() for part in cell.split(",") if part.strip()]


def process_status(parts: list[tuple[int, bool]]) -> str:
    """Sunbird's status word for a bulk process from its uploads' (results so far, complete)."""
    if parts and all(done for _n, done in parts):
        return "COMPLETED"
    if any(n for n, _done in parts):
        return "IN PROGRESS"
    return "NOT STARTED"
