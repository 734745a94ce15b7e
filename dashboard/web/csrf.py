"""Cross-site request forgery: a change made with the session cookie must prove it came from our own pages.

Forms carry the session's token in a hidden ``csrf_token`` field; JSON writes send it as ``X-CSRF-Token`` or
come with an ``Origin`` equal to this server's.  An Origin from another site is refused even with a token.
Requests authenticated by an API token carry no cookie, so a forged request cannot use them: no check.
"""

from __future__ import annotations

import hmac

from fastapi import Request

from dashboard.web.deps import Identity
from dashboard.web.errors import PageError

CSRF_HEADER = "x-csrf-token"
REFUSED = (
    "This change did not come from a page of this dashboard, so nothing was changed. Reload the page and try again."
)


def server_origin(request: Request) -> str:
    """scheme://host[:port] as the browser sees this server."""
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def foreign_origin(request: Request) -> bool:
    """True when the browser says the request comes from another origin (``Origin: null`` included)."""
    origin = request.headers.get("origin")
    return origin is not None and origin != server_origin(request)


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and hmac.compare_digest(a.encode(), b.encode())


def check_form(request: Request, who: Identity, form_token: str | None) -> None:
    """A state-changing form post: the session's token in the form, and no foreign Origin; PageError 403 if not."""
    if who.via == "token":
        return
    if foreign_origin(request) or not _same(form_token, who.csrf_token):
        raise PageError(403, REFUSED)


def check_json(request: Request, who: Identity) -> None:
    """A cookie-authenticated JSON write: the X-CSRF-Token header, or an Origin that is this server."""
    if who.via == "token":
        return
    if foreign_origin(request):
        raise PageError(403, REFUSED)
    if _same(request.headers.get(CSRF_HEADER), who.csrf_token) or request.headers.get("origin") is not None:
        return
    raise PageError(403, REFUSED)
