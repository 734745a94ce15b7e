"""Sunbird's `POST /v1/course/batch/users/add|remove/{batchId}`, on Sunbird's wire, backed by the pipeline.

Each call is an upload (kind `api-add`/`api-remove`): the ids are published as commands, the processor applies
them, and the call answers once every result is in, in Sunbird's envelope with `result` holding the user ids
only; the upload's id is in the `X-Upload-Id` header (our reasons per row: `GET /api/uploads/{id}` and its
report.csv).  Past `SUNBIRD_API_WAIT_S` it answers 202 `ACCEPTED` with `result.uploadId`.  The body-only form
(`request.batchId`, no id in the path) is kept as an alias.  Callers authenticate with an API token in
`x-authenticated-user-token` or `Authorization: Bearer`; it is checked before the body is read, and the body
is read only up to `SUNBIRD_API_MAX_BODY_BYTES`.  The gateway's paths (`/api/course/v1/batch/user/add|remove/{id}`)
are aliases.  Waiting holds no thread (dashboard.web.sunbird_hub).
"""

from __future__ import annotations

import json
from contextlib import closing
from typing import Any, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.datastructures import Headers

from dashboard.web.audit_log import log_submission
from dashboard.web.middleware import Answer, BodyTooLarge
from dashboard.web.sunbird_hub import Hub
from enrolment.domain import sunbird as sb
from enrolment.domain.model import OPEN_STATUSES, Batch, IdTypeValue, User
from enrolment.domain.rules import is_authorized
from enrolment.domain.tokens import USER_TOKEN_HEADER, presented_tokens
from enrolment.files import InputRow
from enrolment.kafka.clients import BrokerUnavailable
from enrolment.settings import Settings
from enrolment.store import reference, tokens
from producer.follow import RowResult
from producer.publish import UploadRequest

MSGID_HEADER = "x-msgid"
# Sunbird's API gateway publishes the same APIs here (its route names the batch id last); scripts that go through
# the gateway call these paths.
GATEWAY_PATHS = {action: f"/api/course/v1/batch/user/{action}/" for action in ("add", "remove")}
OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["request"],
                    "properties": {
                        "request": {
                            "type": "object",
                            "properties": {
                                "batchId": {"type": "string", "description": "Only without the id in the path"},
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
                "example": {"request": {"userIds": ["u-ka-000001"]}},
            }
        },
    },
    "responses": {
        "200": {"description": "Processed: result maps each user id to SUCCESS or Sunbird's text; X-Upload-Id"},
        "202": {"description": "Still processing: responseCode ACCEPTED, result.uploadId to follow"},
        "400": {"description": "USERID_MISSING, INVALID_COURSE_BATCH_ID, ENROLLMENT_TYPE_VALIDATION, …"},
        "401": {"description": "UNAUTHORIZED_USER: no or bad token, or not an admin/mentor of the batch"},
        "413": {"description": "The body is over SUNBIRD_API_MAX_BODY_BYTES (2 MB by default); nothing published"},
    },
    "parameters": [
        {
            "name": USER_TOKEN_HEADER,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Sunbird's header: the same API token as Authorization: Bearer (either one)",
        },
        {"name": "X-msgId", "in": "header", "required": False, "schema": {"type": "string"}},
    ],
    "security": [{"bearerAuth": []}],
}


def failure(api_id: str, refusal: sb.Refusal, msgid: str | None = None) -> JSONResponse:
    """A whole-request error in Sunbird's envelope; our reason code in `X-Reason`."""
    body = sb.envelope(api_id, {}, msgid=msgid, error=refusal.error, errmsg=refusal.errmsg)
    return JSONResponse(body, refusal.error.http, headers={"X-Reason": refusal.reason})


def caller(engine: Engine, headers: Headers) -> tokens.TokenCheck:
    """The user of the request's token (either header), or why not; the use is recorded, so this commits."""
    presented = presented_tokens(headers.get("authorization"), headers.get(USER_TOKEN_HEADER))
    if not presented:
        return tokens.TokenCheck(None, problem=tokens.NO_TOKEN)
    with engine.begin() as conn, closing(conn.connection.cursor()) as cur:
        return tokens.authenticate(cur, presented)


def unauthorized(check: tokens.TokenCheck) -> sb.Refusal:
    """Sunbird's exact 401 for a missing or unknown token; with our sentence for a revoked or expired one."""
    known = check.problem != tokens.NO_TOKEN and check.token_id is not None
    return sb.Refusal(sb.UNAUTHORIZED_USER, "UNAUTHORIZED", check.problem if known else None)


def find_batch(engine: Engine, batch_id: str) -> Batch | None:
    with engine.connect() as conn, closing(conn.connection.cursor()) as cur:
        return reference.batch(cur, batch_id)


def check_batch(batch: Batch | None, batch_id: str, may: bool, who: str) -> Batch:
    """The batch if it takes participants from ``who``; else Sunbird's refusal (ours where Sunbird had none)."""
    if batch is None:
        raise sb.Refusal(sb.INVALID_COURSE_BATCH_ID, "BATCH_NOT_FOUND")
    if not may:
        why = f"{who} is neither an ORG_ADMIN of {batch.state} nor a mentor of batch {batch_id}."
        raise sb.Refusal(sb.UNAUTHORIZED_USER, "NOT_AUTHORIZED", why)
    if batch.enrollment_type != "invite-only":
        raise sb.Refusal(sb.ENROLLMENT_TYPE_VALIDATION, "BATCH_NOT_INVITE_ONLY")
    if batch.status not in OPEN_STATUSES:
        raise sb.Refusal(sb.COURSE_BATCH_ALREADY_COMPLETED, "BATCH_CLOSED", f"Batch {batch_id} is {batch.status}.")
    return batch


def answer(action: str, req: sb.ParticipantsRequest, results: dict[int, RowResult]) -> dict[str, str]:
    """`result`: each requested id (and nothing else) to SUCCESS or Sunbird's text for what happened."""
    by_id = {r.identifier: r for r in results.values()}
    out: dict[str, str] = {}
    for ident in req.identifiers:
        r = by_id[ident]
        out[ident] = sb.user_result(action, r.reason, ident, r.message)
    return out


def too_large(action: str, limit: int) -> sb.Refusal:
    """REQUEST_TOO_LARGE with the limit and what to do (the bulk API's limit is the upload API's)."""
    if action.startswith("bulk-"):
        why = f"The file is over {limit} bytes (UPLOAD_MAX_BYTES); split it into smaller files."
    else:
        why = f"The request body is over {limit} bytes (SUNBIRD_API_MAX_BODY_BYTES); send the ids in smaller calls."
    return sb.Refusal(sb.REQUEST_TOO_LARGE, "REQUEST_TOO_LARGE", why)


def oversized(action: str) -> Answer:
    """The body-limit middleware's 413 for a Sunbird path, in Sunbird's envelope (it answers before the route)."""

    def answer(headers: Headers, limit: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        refusal = too_large(action, limit)
        body = sb.envelope(sb.API_IDS[action], {}, msgid=headers.get(MSGID_HEADER), error=refusal.error)
        body["params"]["errmsg"] = refusal.errmsg
        return json.dumps(body).encode(), [(b"x-reason", refusal.reason.encode())]

    return answer


async def json_body(request: Request, action: str, limit: int) -> Any:
    """The parsed body (None when it is not JSON); a Refusal (413) as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(action, limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large(action, limit)
            chunks.append(chunk)
    except BodyTooLarge as exc:  # the app's body-limit middleware counted first
        raise too_large(action, limit) from exc
    try:
        return json.loads(b"".join(chunks)) if size else {}
    except ValueError:
        return None


async def admit(
    hub: Hub, engine: Engine, action: str, request: Request, path_batch_id: str | None
) -> tuple[User, sb.ParticipantsRequest, Batch]:
    """Token (before the body is read), body, batch and the caller's right to it; a Refusal otherwise."""
    check = await hub.run(caller, engine, request.headers)
    if check.user is None:
        raise unauthorized(check)
    body = await json_body(request, action, hub.settings.sunbird_api_max_body_bytes)
    req = sb.parse_request(body, path_batch_id)
    batch = await hub.run(find_batch, engine, req.batch_id)
    user = check.user
    return user, req, check_batch(batch, req.batch_id, batch is not None and is_authorized(user, batch), user.user_id)


async def serve(hub: Hub, engine: Engine, action: str, request: Request, path_batch_id: str | None) -> JSONResponse:
    """One call: admitted, published as one upload, answered with its results (or 202 past the wait).

    Every answer echoes the `X-msgId` header as `params.msgid` (null without it), never a body's msgid.
    """
    api_id = sb.API_IDS[action]
    msgid = request.headers.get(MSGID_HEADER)
    try:
        user, req, batch = await admit(hub, engine, action, request, path_batch_id)
    except sb.Refusal as refusal:
        return failure(api_id, refusal, msgid)
    upload = UploadRequest(
        batch_id=batch.batch_id,
        action=action.upper(),
        requested_by=user.user_id,
        kind=f"api-{action}",
        submitted_by=user.user_id,
    )
    id_type = cast(IdTypeValue, req.id_type)
    rows = [InputRow(i + 1, ident, id_type) for i, ident in enumerate(dict.fromkeys(req.identifiers))]
    try:
        complete, results = await hub.publish_and_wait(upload, rows, hub.settings.sunbird_api_wait_s)
    except BrokerUnavailable as exc:
        return failure(api_id, sb.Refusal(sb.SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", str(exc)), msgid)
    log_submission(upload, len(rows), "token")
    headers = {"X-Upload-Id": upload.upload_id}
    if not complete:
        accepted = {"uploadId": upload.upload_id, "processed": len(results), "total": len(rows)}
        return JSONResponse(sb.envelope(api_id, accepted, msgid=msgid, response_code="ACCEPTED"), 202, headers)
    return JSONResponse(sb.envelope(api_id, answer(action, req, results), msgid=msgid), headers=headers)


def sunbird_router(settings: Settings, engine: Engine, hub: Hub | None = None) -> APIRouter:
    """The routes, on ``engine`` and ``hub`` (not app state, so any app can include them)."""
    router = APIRouter(tags=["Sunbird-compatible batch API"])
    shared = hub or Hub(settings)  # the app passes its own, to close it when the server stops
    for action in ("add", "remove"):
        _routes(router, shared, engine, action)
    return router


def _routes(router: APIRouter, hub: Hub, engine: Engine, action: str) -> None:
    verb = "Add participants to" if action == "add" else "Remove participants from"

    @router.post(
        f"/v1/course/batch/users/{action}/{{batch_id}}",
        summary=f"{verb} an invite-only batch (Sunbird API)",
        openapi_extra=OPENAPI,
        name=f"sunbird_{action}",
    )
    async def with_path(batch_id: str, request: Request) -> JSONResponse:
        return await serve(hub, engine, action, request, batch_id)

    @router.post(
        f"{GATEWAY_PATHS[action]}{{batch_id}}",
        summary=f"{verb} an invite-only batch (Sunbird API, the gateway's path)",
        openapi_extra=OPENAPI,
        name=f"sunbird_{action}_gateway",
    )
    async def through_gateway(batch_id: str, request: Request) -> JSONResponse:
        return await serve(hub, engine, action, request, batch_id)

    @router.post(
        f"/v1/course/batch/users/{action}",
        summary=f"{verb} a batch named in the body (Sunbird API, body-only alias)",
        openapi_extra=OPENAPI,
        name=f"sunbird_{action}_body",
    )
    async def body_only(request: Request) -> JSONResponse:
        return await serve(hub, engine, action, request, None)
