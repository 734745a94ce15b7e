"""Sunbird-compatible `POST /v1/course/batch/users/add|remove`, backed by the pipeline.

Each call is an upload: the ids are published as commands (kind `api-add`/`api-remove`), the processor applies
them, and the call answers once every result is in, in Sunbird's envelope.  Past `SUNBIRD_API_WAIT_S` it
answers 202 `ACCEPTED` with `result.uploadId`, to be followed with `participants status` or
`GET /api/uploads/{id}`.  Callers authenticate with an API token (`participants api-tokens create`) in
`Authorization: Bearer` or Sunbird's `x-authenticated-user-token`; it is checked before the body is read, and
the body is read only up to `SUNBIRD_API_MAX_BODY_BYTES`.
"""

from __future__ import annotations

import json
from contextlib import closing
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

from enrolment.domain.model import Batch, IdTypeValue, User
from enrolment.domain.rules import is_authorized
from enrolment.domain.sunbird import BadRequest, ParticipantsRequest, envelope, parse_request, user_result
from enrolment.domain.tokens import USER_TOKEN_HEADER, presented_tokens
from enrolment.files import InputRow
from enrolment.kafka.clients import BrokerUnavailable
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from enrolment.store import reference, tokens
from producer.follow import ResultFollower, RowResult, UploadStatus
from producer.publish import UploadRequest, publish_upload

API_IDS = {"add": "api.course.batch.users.add", "remove": "api.course.batch.users.remove"}
OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["request"],
                    "properties": {
                        "params": {"type": "object", "properties": {"msgid": {"type": "string"}}},
                        "request": {
                            "type": "object",
                            "required": ["batchId"],
                            "properties": {
                                "batchId": {"type": "string"},
                                "userIds": {"type": "array", "items": {"type": "string"}, "maxItems": 10000},
                                "stateIds": {
                                    "type": "array",
                                    "items": {"type": "string"},
                                    "description": "Extension: state (external) ids instead of userIds",
                                },
                            },
                        },
                    },
                },
                "example": {"request": {"batchId": "batch-ka-invite", "userIds": ["u-ka-000001"]}},
            }
        },
    },
    "responses": {
        "200": {"description": "Processed: result maps each id to SUCCESS or an error; details has our reasons"},
        "202": {"description": "Still processing: responseCode ACCEPTED, result.uploadId to follow"},
        "400": {"description": "Malformed body, or the batch is not invite-only; nothing published"},
        "401": {"description": "No token, or an unknown, expired or revoked one (the body is not read)"},
        "403": {"description": "The caller may not change this batch (another state's batch)"},
        "404": {"description": "No such batch"},
        "413": {"description": "The body is over SUNBIRD_API_MAX_BODY_BYTES (2 MB by default); nothing published"},
    },
    "parameters": [
        {
            "name": USER_TOKEN_HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Sunbird's header: the same API token as Authorization: Bearer (either one)",
        }
    ],
    "security": [{"bearerAuth": []}],
}


class Refused(Exception):
    """A call answered with an error envelope before anything was published."""

    def __init__(self, action: str, status: int, code: str, err: str, message: str, msgid: str | None = None):
        super().__init__(message)
        self.response = failure(action, status, code, err, message, msgid)


def failure(action: str, status: int, code: str, err: str, message: str, msgid: str | None = None) -> JSONResponse:
    return JSONResponse(envelope(API_IDS[action], code, {}, msgid=msgid, err=err, errmsg=message), status)


class TooLarge(Exception):
    """The request body is over the limit (or says it will be)."""


def caller(engine: Engine, headers: Headers) -> tokens.TokenCheck:
    """The user of the request's token (either header), or why not; the use is recorded, so this commits."""
    presented = presented_tokens(headers.get("authorization"), headers.get(USER_TOKEN_HEADER))
    if not presented:
        return tokens.TokenCheck(None, problem=tokens.NO_TOKEN)
    with engine.begin() as conn, closing(conn.connection.cursor()) as cur:
        return tokens.authenticate(cur, presented)


def find_batch(engine: Engine, batch_id: str) -> Batch | None:
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        return reference.batch(cur, batch_id)


def admit(engine: Engine, action: str, user: User, body: Any) -> tuple[ParticipantsRequest, Batch]:
    """What an authenticated caller asks and on which batch, or Refused: in Sunbird's order of checks."""
    try:
        req = parse_request(body)
    except BadRequest as exc:
        raise Refused(action, 400, "CLIENT_ERROR", exc.code, exc.message) from None
    batch = find_batch(engine, req.batch_id)
    if batch is None:
        raise Refused(action, 404, "RESOURCE_NOT_FOUND", "BATCH_NOT_FOUND", f"Batch {req.batch_id} does not exist.")
    if not is_authorized(user, batch):
        who = f"{user.user_id} is neither an ORG_ADMIN of {batch.state} nor a mentor of batch {batch.batch_id}."
        raise Refused(action, 403, "FORBIDDEN", "NOT_AUTHORIZED", who, req.msgid)
    if batch.enrollment_type != "invite-only":
        why = f"Batch {batch.batch_id} is {batch.enrollment_type}; only invite-only batches take participants here."
        raise Refused(action, 400, "CLIENT_ERROR", "enrollmentTypeValidation", why, req.msgid)
    return req, batch


def publish_and_follow(
    settings: Settings, action: str, user: User, req: ParticipantsRequest, batch: Batch, wait_s: float
) -> tuple[UploadStatus, int, dict[int, RowResult]]:
    """Publishes the ids as one upload and waits up to ``wait_s`` for their results: (status, total, results)."""
    codec = default_codec()
    upload = UploadRequest(
        batch_id=batch.batch_id,
        action=action.upper(),
        requested_by=user.user_id,
        kind=f"api-{action}",
        submitted_by=user.user_id,
    )
    id_type = cast(IdTypeValue, req.id_type)
    rows = [InputRow(i + 1, ident, id_type) for i, ident in enumerate(dict.fromkeys(req.identifiers))]
    follower = ResultFollower(settings, codec)  # before publishing, so no result is missed
    try:
        published = publish_upload(settings, codec, upload, rows)
        status = UploadStatus(upload_id=published.upload_id, batch_id=batch.batch_id, published=len(rows))
        return status, len(rows), follower.follow(status, published.published, wait_s)
    finally:
        follower.close()


def answer(action: str, req: ParticipantsRequest, status: UploadStatus, results: dict[int, RowResult]) -> JSONResponse:
    """Sunbird's per-id result, and ours (outcome, reason, message) under ``details``."""
    by_id = {r.identifier: r for r in results.values()}
    result: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for ident in req.identifiers:
        r = by_id[ident]
        result[ident] = user_result(action, r.reason, r.message)
        details[ident] = {"outcome": r.outcome, "reason": r.reason, "message": r.message}
    return JSONResponse(
        envelope(API_IDS[action], "OK", {**result, "details": details, "uploadId": status.upload_id}, msgid=req.msgid)
    )


def handle(settings: Settings, engine: Engine, wait_s: float, action: str, user: User, body: Any) -> JSONResponse:
    try:
        req, batch = admit(engine, action, user, body)
    except Refused as refused:
        return refused.response
    try:
        status, total, results = publish_and_follow(settings, action, user, req, batch, wait_s)
    except BrokerUnavailable as exc:
        return failure(action, 503, "SERVER_ERROR", "SERVICE_UNAVAILABLE", str(exc), req.msgid)
    if not status.completed:
        accepted = {"uploadId": status.upload_id, "processed": status.processed, "total": total}
        return JSONResponse(envelope(API_IDS[action], "ACCEPTED", accepted, msgid=req.msgid), 202)
    return answer(action, req, status, results)


async def json_body(request: Request, limit: int) -> Any:
    """The parsed body, or None when it is not JSON (parse_request then says what is wrong).

    Read no further than ``limit`` bytes: TooLarge as soon as the declared length or the bytes read pass it.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return None


async def serve(settings: Settings, engine: Engine, wait_s: float, action: str, request: Request) -> JSONResponse:
    """The token first (401 without reading the body), then the body up to its limit (413), then the call."""
    check = await run_in_threadpool(caller, engine, request.headers)
    if check.user is None:
        return failure(action, 401, "UNAUTHORIZED", "UNAUTHORIZED", check.problem)
    limit = settings.sunbird_api_max_body_bytes
    try:
        body = await json_body(request, limit)
    except TooLarge:
        why = f"The request body is over {limit} bytes (SUNBIRD_API_MAX_BODY_BYTES); send the ids in smaller calls."
        return failure(action, 413, "CLIENT_ERROR", "REQUEST_TOO_LARGE", why)
    return await run_in_threadpool(handle, settings, engine, wait_s, action, check.user, body)


def sunbird_router(settings: Settings, engine: Engine) -> APIRouter:
    """The two routes, on ``engine`` and ``settings`` (not app state, so any app can include them)."""
    router = APIRouter(tags=["Sunbird-compatible batch API"])
    wait_s = settings.sunbird_api_wait_s

    @router.post(
        "/v1/course/batch/users/add",
        summary="Add participants to an invite-only batch (Sunbird API)",
        openapi_extra=OPENAPI,
    )
    async def add(request: Request) -> JSONResponse:
        return await serve(settings, engine, wait_s, "add", request)

    @router.post(
        "/v1/course/batch/users/remove",
        summary="Remove participants from a batch (Sunbird API)",
        openapi_extra=OPENAPI,
    )
    async def remove(request: Request) -> JSONResponse:
        return await serve(settings, engine, wait_s, "remove", request)

    return router
