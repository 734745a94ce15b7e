"""The CLI's server mode: the upload API over HTTP, and the credentials that prove who runs it.

The client's own environment (not the services'): ``PARTICIPANTS_SERVER`` (the dashboard's URL),
``PARTICIPANTS_TOKEN`` (an API token) and ``PARTICIPANTS_CREDENTIALS`` (where `participants login` keeps tokens,
by server; default ``~/.config/participants/credentials``).  A credentials file that its group or others may
read is refused: a token is as good as its owner's password.  No token is ever printed or logged.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from enrolment.errors import EXIT_INPUT, EXIT_UNREACHABLE, UserError
from producer.follow import UploadStatus, refused_json

CHUNK = 64 * 1024
POLL_S = 0.5


def server_url(flag: str | None, configured: str = "") -> str | None:
    """The server of this run: --server, else PARTICIPANTS_SERVER; None means the direct path (Kafka)."""
    url = (flag or configured).strip().rstrip("/")
    if url and not url.startswith(("http://", "https://")):
        raise UserError(f"The server {url!r} is not an http:// or https:// URL.")
    return url or None


def credentials_path(configured: str = "") -> Path:
    configured = configured.strip()
    return Path(configured).expanduser() if configured else Path.home() / ".config" / "participants" / "credentials"


def read_credentials(path: Path) -> dict[str, str]:
    """Tokens by server from ``path`` ({} when there is none); refused when others may read it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return {}
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(
            f"The credentials file {path} may be read by others (mode {stat.S_IMODE(mode):o}); "
            f"run 'chmod 600 {path}' or 'participants login' again."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(
            f"The credentials file {path} cannot be read ({exc}); run 'participants login' again."
        ) from None
    servers = data.get("servers") if isinstance(data, dict) else None
    return {str(k): str(v) for k, v in servers.items()} if isinstance(servers, dict) else {}


def write_credentials(path: Path, server: str, token: str) -> None:
    """Adds or replaces the token for ``server``; the file is created with mode 0600 (its folder 0700)."""
    servers = read_credentials(path)
    servers[server] = token
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode on open
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump({"servers": servers}, out, indent=2)
        out.write("\n")


def token_for(server: str, given: str = "", path: Path | None = None) -> str:
    """PARTICIPANTS_TOKEN (``given``), else this server's token from the credentials file."""
    if given:
        return given
    path = path or credentials_path()
    token = read_credentials(path).get(server, "")
    if not token:
        raise UserError(
            f"No API token for {server}: set PARTICIPANTS_TOKEN or run 'participants login --server {server}'."
        )
    return token


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


class Refused(UserError):
    """The server found the file unusable (400): nothing was published; ``refusals`` says why."""

    def __init__(self, message: str, refusals: list[dict[str, Any]]) -> None:
        super().__init__(message, EXIT_INPUT)
        self.refusals = refusals


class Remote:
    """The upload API of one server, with one token."""

    def __init__(self, server: str, token: str, timeout_s: float = 60.0) -> None:
        self.server = server
        self.client = httpx.Client(
            base_url=server, headers={"Authorization": f"Bearer {token}"}, timeout=timeout_s, follow_redirects=False
        )

    def close(self) -> None:
        self.client.close()

    def send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request; a sentence (UserError) when the server cannot be reached."""
        try:
            return self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise UserError(f"Cannot reach the server {self.server}: {reason}.", EXIT_UNREACHABLE) from None

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """:meth:`send`, and a sentence (UserError) for an answer that is not 2xx."""
        return self.check(self.send(method, path, **kw))

    def check(self, response: httpx.Response) -> httpx.Response:
        """``response`` when it is 2xx; else the server's refusal as a sentence (UserError, exit 2 or 1)."""
        if response.is_success:
            return response
        detail = _detail(response)
        if response.status_code == 400:
            body = response.json() if "json" in response.headers.get("content-type", "") else {}
            raise Refused(detail, list(body.get("refusals", [])) if isinstance(body, dict) else [])
        if response.status_code == 401:
            raise UserError(f"The server {self.server} refused the token: {detail}", EXIT_INPUT)
        if response.status_code in (403, 404, 409, 413, 422):
            raise UserError(f"The server {self.server} refused: {detail}", EXIT_INPUT)
        raise UserError(f"The server {self.server} answered {response.status_code}: {detail}", EXIT_UNREACHABLE)

    def check_token(self) -> None:
        """Raises the server's sentence when the token is not accepted."""
        self.request("GET", "/api/workspace")

    def submit(self, stream: BinaryIO, params: dict[str, str], file_name: str | None) -> dict[str, Any]:
        """POSTs the file (streamed) to /api/uploads; the 202 answer."""
        headers = {"Content-Type": "text/csv"}
        if file_name:
            headers["X-File-Name"] = file_name.encode("ascii", "replace").decode()
        size = _size(stream)
        if size is not None:
            headers["Content-Length"] = str(size)  # a file over the limit is refused before it is sent
        response = self.request("POST", "/api/uploads", params=params, content=_chunks(stream), headers=headers)
        answer: dict[str, Any] = response.json()
        return answer

    def derive(self, upload_id: str, kind: str, params: dict[str, str]) -> dict[str, Any]:
        """POSTs a retry or undo of ``upload_id`` (kind ``retry`` or ``undo``); the 202 answer."""
        response = self.request("POST", f"/api/uploads/{quote(upload_id, safe='')}/{kind}", params=params)
        answer: dict[str, Any] = response.json()
        return answer

    def status(self, upload_id: str) -> dict[str, Any] | None:
        """The upload's summary, or None while the server does not know it yet."""
        if self.send("GET", f"/api/uploads/{upload_id}").status_code == 404:
            return None
        response = self.request("GET", f"/api/uploads/{upload_id}")
        found: dict[str, Any] = response.json()
        return found

    def follow(self, upload_id: str, timeout_s: float) -> dict[str, Any] | None:
        """Polls the summary until it is complete or ``timeout_s`` passes; the last one seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.status(upload_id)
            if (found is not None and found.get("complete")) or time.monotonic() >= deadline:
                return found
            time.sleep(POLL_S)

    def report(self, upload_id: str) -> bytes:
        return self.request("GET", f"/api/uploads/{upload_id}/report.csv").content


def _size(stream: BinaryIO) -> int | None:
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        return os.fstat(stream.fileno()).st_size - here
    except (OSError, ValueError):
        return None


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def status_from_json(data: dict[str, Any]) -> UploadStatus:
    """The summary the server answered, as the CLI's own :class:`UploadStatus` (so it prints the same)."""
    refused = [refused_json(r) for r in data.get("refused_rows") or []]
    reasons = Counter({str(k): int(v) for k, v in (data.get("reasons") or {}).items()})
    reasons.subtract(Counter(str(r["reason"]) for r in refused))  # to_json adds the refused rows back
    return UploadStatus(
        upload_id=str(data["upload_id"]),
        batch_id=data.get("batch_id"),
        kind=data.get("kind"),
        dry_run=bool(data.get("dry_run")),
        published=data.get("published"),
        processed=int(data.get("processed") or 0),
        outcomes=Counter({str(k): int(v) for k, v in (data.get("processor_outcomes") or {}).items()}),
        reasons=+reasons,
        refused=refused,
        completed=bool(data.get("complete")),
        requested_by=data.get("requested_by"),
        submitted_by=data.get("submitted_by"),
    )
