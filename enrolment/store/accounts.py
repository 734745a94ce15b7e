"""Dashboard sign-in in the store: password accounts, server-side sessions, failed sign-ins, served states.

Passwords are kept as argon2id hashes (argon2-cffi's defaults, RFC 9106).  A session is a random value in an
HttpOnly cookie; only its SHA-256 is stored, so a leaked table opens no session, and a session ends for good
when it is closed, idle too long or too old (checked here, in SQL, on every request).  Functions take a DB-API
cursor, like ``reference``; the caller owns the transaction.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from enrolment.store import reference

_HASHER = PasswordHasher()  # argon2id


@cache
def _dummy_hash() -> str:
    """Verified when there is no account, so an unknown user id costs as much time as a wrong password.

    Made on first use (an argon2 hash costs ~0.3 s): every `participants` command imports this module.
    """
    return _HASHER.hash(secrets.token_urlsafe(16))


def prepare() -> None:
    """Makes the dummy hash now (a server calls it at start, so its first sign-in costs what the others do)."""
    _dummy_hash()


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def set_password(cur: Any, user_id: str, password: str) -> None:
    """Creates or replaces the user's password; LookupError when there is no such user."""
    if reference.user(cur, user_id) is None:
        raise LookupError(f"No user {user_id} is known; import the user first (participants users import).")
    cur.execute(
        "INSERT INTO accounts (user_id, password_hash) VALUES (%s, %s) ON CONFLICT (user_id) DO UPDATE "
        "SET password_hash = EXCLUDED.password_hash, updated_at = now()",
        (user_id, _HASHER.hash(password)),
    )
    cur.execute("DELETE FROM web_sessions WHERE user_id = %s", (user_id,))  # a new password ends old sessions


def check_password(cur: Any, user_id: str, password: str) -> bool:
    """True when ``user_id`` has an account and ``password`` is its password (rehashed when parameters moved on)."""
    cur.execute("SELECT password_hash FROM accounts WHERE user_id = %s", (user_id,))
    row = cur.fetchone()
    stored = _dummy_hash() if row is None else str(row[0])
    try:
        _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if row is None:
        return False
    if _HASHER.check_needs_rehash(stored):
        cur.execute("UPDATE accounts SET password_hash = %s WHERE user_id = %s", (_HASHER.hash(password), user_id))
    return True


def served_states(cur: Any, user_id: str) -> frozenset[str]:
    cur.execute("SELECT state FROM served_states WHERE user_id = %s", (user_id,))
    return frozenset(r[0] for r in cur.fetchall())


def served_states_of(cur: Any, user_ids: list[str]) -> dict[str, frozenset[str]]:
    """The states each of ``user_ids`` serves (only those who serve any), in one query."""
    cur.execute("SELECT user_id, state FROM served_states WHERE user_id = ANY(%s)", (user_ids,))
    found: dict[str, set[str]] = {}
    for user_id, state in cur.fetchall():
        found.setdefault(user_id, set()).add(state)
    return {u: frozenset(s) for u, s in found.items()}


def set_served_states(cur: Any, user_id: str, states: list[str]) -> None:
    """Replaces the states ``user_id`` serves; LookupError for an unknown user or state."""
    if reference.user(cur, user_id) is None:
        raise LookupError(f"No user {user_id} is known; import the user first (participants users import).")
    cur.execute("SELECT code FROM states WHERE code = ANY(%s)", (states,))
    unknown = sorted(set(states) - {r[0] for r in cur.fetchall()})
    if unknown:
        raise LookupError(f"No state {', '.join(unknown)} is known; import its users or batches first.")
    cur.execute("DELETE FROM served_states WHERE user_id = %s", (user_id,))
    cur.executemany("INSERT INTO served_states (user_id, state) VALUES (%s, %s)", [(user_id, s) for s in states])


@dataclass(frozen=True, slots=True)
class Session:
    user_id: str
    csrf_token: str


def open_session(cur: Any, user_id: str) -> tuple[str, Session]:
    """A new session for ``user_id``: (the cookie value, which is never stored, and the session)."""
    value = secrets.token_urlsafe(32)
    session = Session(user_id, secrets.token_urlsafe(32))
    cur.execute(
        "INSERT INTO web_sessions (session_sha256, user_id, csrf_token) VALUES (%s, %s, %s)",
        (_sha256(value), user_id, session.csrf_token),
    )
    return value, session


_TOUCH = (
    "UPDATE web_sessions SET last_seen_at = now() WHERE session_sha256 = %(h)s "
    "AND created_at > now() - make_interval(secs => %(max)s) "
    "AND last_seen_at > now() - make_interval(secs => %(idle)s) "
    "RETURNING user_id, csrf_token"
)


def live_session(cur: Any, value: str, idle_s: float, max_s: float) -> Session | None:
    """The session of a cookie value if it is neither idle past ``idle_s`` nor older than ``max_s``; touches it."""
    params = {"h": _sha256(value), "idle": idle_s, "max": max_s}
    cur.execute(_TOUCH, params)
    row = cur.fetchone()
    return None if row is None else Session(row[0], row[1])


def close_session(cur: Any, value: str) -> None:
    cur.execute("DELETE FROM web_sessions WHERE session_sha256 = %s", (_sha256(value),))


def forget_old_sessions(cur: Any, max_s: float) -> None:
    cur.execute("DELETE FROM web_sessions WHERE created_at < now() - make_interval(secs => %s)", (max_s,))


def recent_failures(cur: Any, user_id: str, client: str, window_s: float) -> tuple[int, int]:
    """Failed sign-ins within ``window_s``: (for this user id, from this client)."""
    cur.execute(
        "SELECT count(*) FILTER (WHERE user_id = %(u)s), count(*) FILTER (WHERE client = %(c)s) "
        "FROM sign_in_failures WHERE (user_id = %(u)s OR client = %(c)s) "
        "AND failed_at > now() - make_interval(secs => %(w)s)",
        {"u": user_id, "c": client, "w": window_s},
    )
    by_user, by_client = cur.fetchone()
    return int(by_user), int(by_client)


def record_failure(cur: Any, user_id: str, client: str) -> None:
    """Counts one failed sign-in, and drops those older than a day (they no longer count for anything)."""
    cur.execute("INSERT INTO sign_in_failures (user_id, client) VALUES (%s, %s)", (user_id, client))
    cur.execute("DELETE FROM sign_in_failures WHERE failed_at < now() - interval '1 day'")


def clear_failures(cur: Any, user_id: str) -> None:
    """After a successful sign-in the account's earlier failures no longer count (the client's still do)."""
    cur.execute("DELETE FROM sign_in_failures WHERE user_id = %s", (user_id,))
