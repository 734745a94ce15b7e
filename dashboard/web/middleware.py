"""Hardening on every response and request: security headers, and a limit on the request body.

Both are plain ASGI middleware, so they see every route (pages, JSON, CSV, static files, the Sunbird API).
No request body is ever buffered; only the API documentation pages (a few KB) are held to hash their scripts.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from starlette.applications import Starlette
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

T = TypeVar("T")

# Pages, scripts and styles come from this server only (the templates have no inline script or style);
# no plugins, no <base>, forms post here only, and no other site may frame a page.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# FastAPI's API documentation pages (Swagger UI, ReDoc) load their code and styles from public CDNs and start
# with an inline script: those paths alone allow the CDNs, and exactly the inline scripts of the page as
# served (their sha256, computed from the body). ReDoc writes <style> elements at run time, hence the styles.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' https://cdn.jsdelivr.net{hashes}; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    "font-src 'self' https://fonts.gstatic.com; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect", "/redoc")
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class SecurityHeaders:
    """Sets the Content-Security-Policy, X-Frame-Options, X-Content-Type-Options and Referrer-Policy."""

    def __init__(self, app: ASGIApp, docs_paths: Iterable[str | None] = ()) -> None:
        self.app = app
        self.docs_paths = frozenset(p for p in docs_paths if p)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.docs_paths:
            await self.app(scope, receive, DocsPage(send))
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                secure(message, CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def secure(start: Message, policy: str) -> None:
    """Sets the four headers on an ``http.response.start`` message."""
    headers = MutableHeaders(scope=start)
    headers["Content-Security-Policy"] = policy
    for name, value in HEADERS.items():
        headers[name] = value


class DocsPage:
    """Holds a documentation page (a few KB) until its end, to allow exactly its own inline scripts."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.body = bytearray()

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.body += message.get("body", b"")
        if message.get("more_body", False):
            return
        hashes = "".join(" " + h for h in inline_script_hashes(bytes(self.body)))
        secure(self.start, DOCS_CSP.format(hashes=hashes))
        await self.send(self.start)
        await self.send({"type": "http.response.body", "body": bytes(self.body)})


_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)


def inline_script_hashes(html: bytes) -> list[str]:
    """CSP source expressions (``'sha256-...'``) of every inline ``<script>`` of ``html``."""
    return [
        f"'sha256-{base64.b64encode(hashlib.sha256(m.group(1)).digest()).decode()}'"
        for m in _INLINE_SCRIPT.finditer(html)
    ]


def secure_every_response(app: Starlette, docs_paths: Iterable[str | None] = DOCS_PATHS) -> None:
    """Puts :class:`SecurityHeaders` around the app's whole stack, not among the user middleware.

    Starlette's ServerErrorMiddleware, which answers an unexpected error with our 500 page, sits outside
    every ``add_middleware``; wrapping the stack it builds is the only way that page gets the headers too.
    """
    build = app.build_middleware_stack
    paths = tuple(docs_paths)

    def build_secured() -> ASGIApp:
        return SecurityHeaders(build(), paths)

    app.build_middleware_stack = build_secured  # type: ignore[method-assign]


class BodyTooLarge(HTTPException):
    """Raised while the body is read: the app's error handlers answer 413 with the sentence."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, too_large(limit))


def too_large(limit: int) -> str:
    mib, kib = 1024 * 1024, 1024
    size = f"{limit // mib} MB" if limit % mib == 0 else f"{limit // kib} KB" if limit % kib == 0 else f"{limit} bytes"
    return f"The request is larger than the {size} this address accepts; nothing was read or changed."


# A path's own 413 (the Sunbird APIs answer in Sunbird's envelope): (request headers, limit) -> JSON body, headers.
Answer = Callable[[Headers, int], tuple[bytes, list[tuple[bytes, bytes]]]]


def _of_path(table: Mapping[str, T], path: str) -> T | None:
    """The path's entry: an exact key, or one that ends in "/" and is the path's parent."""
    if path in table:
        return table[path]
    return table.get(path.rsplit("/", 1)[0] + "/")


class BodyLimit:
    """Refuses a request body over ``limit`` bytes (or the path's own limit in ``overrides``) with 413.

    A declared Content-Length over the limit is refused before the app runs; a streamed (chunked) body is
    counted as it is read and refused at the first chunk past the limit, so at most one chunk over the
    limit is ever held. Routes that take bigger bodies (uploads) name their path in ``overrides``; routes
    whose clients expect their own error format name it in ``answers``.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int,
        overrides: Mapping[str, int] | None = None,
        answers: Mapping[str, Answer] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.overrides = dict(overrides or {})
        self.answers = dict(answers or {})

    def limit_of(self, path: str) -> int:
        """The path's own limit: an exact override, or one whose key ends in "/" and prefixes the path."""
        own = _of_path(self.overrides, path)
        return self.limit if own is None else own

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_of(scope["path"])
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await refuse(scope, send, limit, _of_path(self.answers, scope["path"]))
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:  # read outside the app's error handlers (e.g. by another middleware)
            if started:
                raise
            await refuse(scope, send, limit, _of_path(self.answers, scope["path"]))


async def refuse(scope: Scope, send: Send, limit: int, answer: Answer | None = None) -> None:
    """413 with the sentence: the path's own ``answer``, else ``{"detail": ...}`` for the APIs, text for pages."""
    path: str = scope["path"]
    as_json = answer is not None or path.startswith(("/api/", "/v1/"))
    extra: list[tuple[bytes, bytes]] = []
    if answer is not None:
        body, extra = answer(Headers(scope=scope), limit)
    else:
        body = json.dumps({"detail": too_large(limit)}).encode() if as_json else too_large(limit).encode()
    kind = b"application/json" if as_json else b"text/plain; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    headers.extend(extra)
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
