"""Sunbird-compatible `POST /v1/course/batch/users/add|remove`, backed by the pipeline.

Each call is an upload: the ids are published as commands (kind `api`), the processor applies them, and
the call answers once every result is in, in Sunbird's envelope.  Past `SUNBIRD_API_WAIT_S` it answers 202
`ACCEPTED` with `result.uploadId`, to be followed with `participants status` or `GET /api/uploads/{id}`.
Callers authenticate with a bearer token that maps to an admin user (`participants api-tokens create`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from enrolment.domain.model import Batch, User
from enrolment.domain.rules import is_authorized
from enrolment.domain.sunbird import BadRequest, envelope, parse_request, user_result
from enrolment.files import InputRow
from enrolment.messages.codec import default_codec
from enrolment.settings import Settings
from producer.follow import ResultFollower, UploadStatus
from producer.publish import BrokerUnavailable, UploadRequest, publish_upload

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
        "401": {"description": "No or unknown bearer token"},
        "403": {"description": "The caller may not change this batch (another state's batch)"},
        "404": {"description": "No such batch"},
    },
    "security": [{"bearerAuth": []}],
}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, user_id: str, label: str = "") -> str:
    """Creates a token for an existing user and returns it (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    with engine.begin() as conn:
        if conn.execute(text("SELECT 1 FROM users WHERE user_id = :u"), {"u": user_id}).first() is None:
            raise LookupError(f"No user {user_id}.")
        conn.execute(
            text("INSERT INTO api_tokens (token_sha256, user_id, label) VALUES (:h, :u, :l)"),
            {"h": token_hash(token), "u": user_id, "l": label},
        )
    return token


def _caller(engine: Engine, authorization: str | None) -> User | None:
    if not authorization or not authorization.lower().startswith("bearer "):
        return None
    token = authorization[7:].strip()
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT u.user_id, u.state, u.status, u.roles, u.state_id FROM api_tokens t "
                "JOIN users u ON u.user_id = t.user_id WHERE t.token_sha256 = :h AND t.revoked_at IS NULL"
            ),
            {"h": token_hash(token)},
        ).first()
    if row is None:
        return None
    return User(row[0], row[1], row[2], frozenset(row[3]), row[4])


def _batch(engine: Engine, batch_id: str) -> Batch | None:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT b.batch_id, b.course_id, b.state, b.enrollment_type, b.status, b.participant_count, "
                "coalesce(array_agg(m.user_id) FILTER (WHERE m.user_id IS NOT NULL), '{}') "
                "FROM course_batches b LEFT JOIN batch_mentors m ON m.batch_id = b.batch_id "
                "WHERE b.batch_id = :b GROUP BY b.batch_id"
            ),
            {"b": batch_id},
        ).first()
    if row is None:
        return None
    return Batch(row[0], row[1], row[2], row[3], row[4], frozenset(row[6]), int(row[5]))


def sunbird_router(settings: Settings, engine: Engine) -> APIRouter:
    router = APIRouter(tags=["Sunbird-compatible batch API"])
    wait_s = float(os.environ.get("SUNBIRD_API_WAIT_S", "30"))

    def fail(action: str, status: int, code: str, err: str, message: str, msgid: str | None = None) -> JSONResponse:
        return JSONResponse(envelope(API_IDS[action], code, {}, msgid=msgid, err=err, errmsg=message), status)

    def handle(action: str, request: Request, body: Any) -> JSONResponse:
        caller = _caller(engine, request.headers.get("authorization"))
        if caller is None:
            return fail(action, 401, "UNAUTHORIZED", "UNAUTHORIZED", "A valid bearer token is required.")
        try:
            req = parse_request(body)
        except BadRequest as exc:
            return fail(action, 400, "CLIENT_ERROR", exc.code, exc.message)
        batch = _batch(engine, req.batch_id)
        if batch is None:
            return fail(action, 404, "RESOURCE_NOT_FOUND", "BATCH_NOT_FOUND", f"Batch {req.batch_id} does not exist.")
        if not is_authorized(caller, batch):
            return fail(
                action,
                403,
                "FORBIDDEN",
                "NOT_AUTHORIZED",
                f"{caller.user_id} is neither an ORG_ADMIN of {batch.state} nor a mentor of batch {batch.batch_id}.",
                req.msgid,
            )
        if batch.enrollment_type != "invite-only":
            return fail(
                action,
                400,
                "CLIENT_ERROR",
                "enrollmentTypeValidation",
                f"Batch {batch.batch_id} is {batch.enrollment_type}; only invite-only batches take participants here.",
                req.msgid,
            )
        codec = default_codec()
        upload = UploadRequest(
            batch_id=batch.batch_id, action=action.upper(), requested_by=caller.user_id, kind=f"api-{action}"
        )
        rows = [InputRow(i + 1, ident, req.id_type) for i, ident in enumerate(dict.fromkeys(req.identifiers))]  # type: ignore[arg-type]
        try:
            follower = ResultFollower(settings, codec)
            try:
                published = publish_upload(settings, codec, upload, rows)
                status = UploadStatus(upload_id=published.upload_id, batch_id=batch.batch_id, published=len(rows))
                results = follower.follow(status, published.published, wait_s)
            finally:
                follower.close()
        except BrokerUnavailable as exc:
            return fail(action, 503, "SERVER_ERROR", "SERVICE_UNAVAILABLE", str(exc), req.msgid)
        if not status.completed:
            return JSONResponse(
                envelope(
                    API_IDS[action],
                    "ACCEPTED",
                    {"uploadId": published.upload_id, "processed": status.processed, "total": len(rows)},
                    msgid=req.msgid,
                ),
                202,
            )
        by_id = {r.identifier: r for r in results.values()}
        result: dict[str, Any] = {}
        details: dict[str, Any] = {}
        for ident in req.identifiers:
            r = by_id[ident]
            result[ident] = user_result(action, r.reason, r.message)
            details[ident] = {"outcome": r.outcome, "reason": r.reason, "message": r.message}
        return JSONResponse(
            envelope(
                API_IDS[action],
                "OK",
                {**result, "details": details, "uploadId": published.upload_id},
                msgid=req.msgid,
            )
        )

    async def _body(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            return None

    @router.post(
        "/v1/course/batch/users/add",
        summary="Add participants to an invite-only batch (Sunbird API)",
        openapi_extra=OPENAPI,
    )
    async def add(request: Request) -> JSONResponse:
        body = await _body(request)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(handle, "add", request, body)

    @router.post(
        "/v1/course/batch/users/remove",
        summary="Remove participants from a batch (Sunbird API)",
        openapi_extra=OPENAPI,
    )
    async def remove(request: Request) -> JSONResponse:
        body = await _body(request)
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(handle, "remove", request, body)

    return router
