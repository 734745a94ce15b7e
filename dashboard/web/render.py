"""Server-rendered pages: one Jinja2 environment (autoescaped); every page knows who is signed in."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader

from dashboard import rules
from dashboard.web.deps import app_settings

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def href(path: str, **params: Any) -> str:
    """A link with the non-empty parameters."""
    kept = {k: v for k, v in params.items() if v not in (None, "", False)}
    return f"{path}?{urlencode(kept)}" if kept else path


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.globals.update(
        href=href,
        shown_time=rules.shown_time,
        progress_label=rules.progress_label,
        progress_status=rules.progress_status,
        percent=rules.percent,
    )
    return env


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    """Template ``name`` with ``ctx``; every page also gets the request, the UI limit and ``me`` (the identity)."""
    env: Environment = request.app.state.templates
    ctx.setdefault("me", getattr(request.state, "identity", None))
    html = env.get_template(name).render(request=request, limit=app_settings(request).ui_participant_limit, **ctx)
    return HTMLResponse(html, status_code=status)
