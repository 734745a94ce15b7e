"""``Server-Timing: app;dur=<ms>`` on every response, so the bench can read the server's own time."""

from __future__ import annotations

import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ServerTiming:
    """ASGI middleware: the time until the response starts (a streamed body is not waited for)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(
                    "Server-Timing", f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
                )
            await send(message)

        await self.app(scope, receive, timed_send)
