"""The CLI's server mode for plans: ``POST /api/plans`` and ``GET|POST /api/plans/{id}[/rows.csv|/approve|/reject]``.

Kept apart from ``remote`` (the upload API's client) so each stays small; it uses the same :class:`Remote`
(one server, one token, sentences for the server's refusals).  A decision the server refuses because the plan
is not waiting (409) ends with exit 1, as on the direct path; every other refusal is exit 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from enrolment.errors import EXIT_UNREACHABLE, UserError
from producer.remote import Refused, Remote, _chunks, _detail, _size


def _plan_path(plan_id: str, tail: str = "") -> str:
    return f"/api/plans/{quote(plan_id, safe='')}{tail}"


def make_plan(remote: Remote, stream: BinaryIO, params: dict[str, str], file_name: str | None) -> dict[str, Any]:
    """POSTs the file (streamed) to /api/plans; the plan the server made (waiting, or applied with ``apply``)."""
    headers = {"Content-Type": "text/csv"}
    if file_name:
        headers["X-File-Name"] = file_name.encode("ascii", "replace").decode()
    size = _size(stream)
    if size is not None:
        headers["Content-Length"] = str(size)
    answer: dict[str, Any] = remote.request(
        "POST", "/api/plans", params=params, content=_chunks(stream), headers=headers
    ).json()
    return answer


def show_plan(remote: Remote, plan_id: str) -> dict[str, Any]:
    answer: dict[str, Any] = remote.request("GET", _plan_path(plan_id)).json()
    return answer


def plan_rows(remote: Remote, plan_id: str, outcome: str | None = None) -> list[dict[str, str]]:
    """The plan's rows (its rows.csv), optionally of one expected outcome."""
    import csv
    import io

    body = remote.request("GET", _plan_path(plan_id, "/rows.csv")).content.decode("utf-8-sig")
    return [r for r in csv.DictReader(io.StringIO(body)) if outcome is None or r["outcome"] == outcome]


def decide_plan(remote: Remote, plan_id: str, decision: str) -> dict[str, Any]:
    """Approves (and so applies) or rejects a plan; one that is not waiting, or not the token's user's to decide,
    is exit 1, as on the direct path."""
    response = remote.send("POST", _plan_path(plan_id, f"/{decision}"))
    if response.status_code in (403, 409):  # not theirs to decide, or not waiting: exit 1 as on the direct path
        raise UserError(f"The server {remote.server} refused: {_detail(response)}", EXIT_UNREACHABLE)
    answer: dict[str, Any] = remote.check(response).json()
    return answer


def plan_file(remote: Remote, path: str, params: dict[str, str]) -> dict[str, Any]:
    """Sends FILE ('-' for stdin) as a plan; an unusable file is the direct path's sentence (exit 2)."""
    from enrolment.files import open_binary

    stream = open_binary(path)
    try:
        return make_plan(remote, stream, params, None if path == "-" else Path(path).name)
    except Refused as exc:
        why = exc.refusals[0]["message"] if exc.refusals else str(exc).removesuffix(" Nothing was published.")
        raise UserError(f"{path}: {why} Nothing was planned.") from None
    finally:
        stream.close()
