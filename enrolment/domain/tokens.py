"""The rules of API tokens: who may manage whose, how long one lives, when it is refused.

Pure (the store applies them): a token carries its user's roles and scope and nothing more, so the only
questions are whether it is still live and who may create or revoke it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from enrolment.domain.model import ORG_ADMIN, User

DEFAULT_EXPIRY_DAYS = 90  # the store adds it to the database's now(), one clock for every token
MAX_EXPIRY_DAYS = 3650  # ten years: a longer "expiry" is no expiry, and far dates overflow timestamps
TOUCH_INTERVAL = timedelta(minutes=1)  # last_used_at is written at most this often per token
USER_TOKEN_HEADER = "x-authenticated-user-token"  # Sunbird's header, accepted as the same token as Bearer


def may_manage_tokens(actor: User | None, owner: User) -> bool:
    """Whether ``actor`` may create or revoke a token of ``owner``: the owner, or an ORG_ADMIN of their state.

    An inactive actor may do neither. The operator's CLI does not ask (it is the bootstrap path).
    """
    if actor is None or actor.status != "active":
        return False
    if actor.user_id == owner.user_id:
        return True
    return ORG_ADMIN in actor.roles and actor.state == owner.state


def expiry_days(value: str | int) -> int:
    """A token's lifetime in whole days, from 1 to MAX_EXPIRY_DAYS; ValueError with a sentence otherwise."""
    try:
        days = int(str(value).strip())
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_EXPIRY_DAYS:
        raise ValueError(f"--expires-days must be a whole number of days from 1 to {MAX_EXPIRY_DAYS}, not {value!r}.")
    return days


def status(revoked_at: datetime | None, expires: datetime, now: datetime) -> str:
    """``revoked``, ``expired`` or ``active``: a token expires at the instant ``expires_at`` is reached."""
    if revoked_at is not None:
        return "revoked"
    return "expired" if expires <= now else "active"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def refusal(revoked_at: datetime | None, expires: datetime, now: datetime) -> str | None:
    """Why a known token no longer authenticates, and since when (a sentence for the 401), or None while it is
    live: the caller then knows to ask for a new token rather than to check what they typed."""
    state = status(revoked_at, expires, now)
    if state == "active":
        return None
    what = f"was revoked on {_when(revoked_at)}" if revoked_at is not None else f"expired on {_when(expires)}"
    return f"This token {what}; ask for a new one (participants api-tokens create, or /api/tokens)."


def needs_touch(last_used_at: datetime | None, now: datetime) -> bool:
    """Whether to record a use: never recorded, or the last record is older than TOUCH_INTERVAL."""
    return last_used_at is None or now - last_used_at >= TOUCH_INTERVAL


def presented_tokens(authorization: str | None, user_token: str | None) -> list[str]:
    """The token(s) a request carries: ``Authorization: Bearer T`` and/or ``x-authenticated-user-token: T``.

    Sunbird clients send both headers (there, Authorization is the platform's API key); either may carry our
    token, so both are returned, without duplicates, for the store to look up.
    """
    found: list[str] = []
    if authorization and authorization[:7].lower() == "bearer ":
        found.append(authorization[7:].strip())
    if user_token:
        value = user_token.strip()
        found.append(value[7:].strip() if value[:7].lower() == "bearer " else value)
    return [t for t in dict.fromkeys(found) if t]
