"""Connecting to the store, and saying so in one sentence (without the password) when it cannot be reached.

Two ways in: ``engine`` (SQLAlchemy, pooled: the servers and the processor) and ``direct`` (a psycopg2
connection per ``raw_connection()`` call, without importing SQLAlchemy: the producer's short commands, whose
store work is cursor-level SQL; SQLAlchemy's import is about half a second of a command's start-up on a busy
machine). Code that only needs ``raw_connection()`` takes :class:`Connections`, which both satisfy.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg2
from psycopg2.extensions import make_dsn

from enrolment.errors import EXIT_UNREACHABLE, UserError
from enrolment.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine


class Connections(Protocol):
    """What cursor-level store code needs of an engine: a DB-API connection (the caller commits and closes)."""

    def raw_connection(self) -> Any: ...


def engine(settings: Settings) -> Engine:
    """An engine that checks a pooled connection before use: long-running commands outlive idle connections."""
    from sqlalchemy import create_engine

    return create_engine(settings.database_url, pool_pre_ping=True)


def connect_args(url: str) -> dict[str, str]:
    """psycopg2.connect's keywords for a ``postgresql[+psycopg2]://user:password@host:port/db?k=v`` URL, read as
    SQLAlchemy's psycopg2 dialect reads it (percent-escapes decoded; query parameters passed on)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgresql+psycopg2", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {redact(url)}")
    args: dict[str, str] = {}
    if parts.username:
        args["user"] = unquote(parts.username)
    if parts.password is not None:
        args["password"] = unquote(parts.password)
    if parts.hostname:
        args["host"] = parts.hostname
    if parts.port is not None:
        args["port"] = str(parts.port)
    if parts.path.lstrip("/"):
        args["dbname"] = unquote(parts.path.lstrip("/"))
    args.update(parse_qsl(parts.query))
    return args


@dataclass(frozen=True)
class DirectConnections:
    """``raw_connection()`` as a new psycopg2 connection each call (no pool, no SQLAlchemy)."""

    url: str = field(repr=False)

    def raw_connection(self) -> Any:
        return psycopg2.connect(make_dsn(**connect_args(self.url)))


def direct(settings: Settings) -> DirectConnections:
    """Connections for a short command that only runs cursor-level SQL (the producer's)."""
    return DirectConnections(settings.database_url)


def redact(url: str) -> str:
    """``url`` with its password (in the credentials or a ``password=`` parameter) replaced by ``***``.

    Every URL that is printed or logged goes through here: a message or a log line never carries a password.
    """
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        if ":" in creds:
            url = f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


# scheme://user:password@ (to the last @ of the word: a password may hold one)
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s'\"]+:)[^\s'\"]*@")


def redact_urls(text: str) -> str:
    """Every URL's password in a free text (an exception's message, a log line) replaced by ``***``."""
    return re.sub(r"(?i)([?&]password=)[^&\s'\"]*", r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def db_unreachable(settings: Settings, exc: BaseException) -> UserError:
    """The driver's first line, behind which database we tried: enough to fix a wrong URL or a stopped server."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(f"Cannot reach PostgreSQL ({redact(settings.database_url)}): {first}", EXIT_UNREACHABLE)


def refused_data(exc: BaseException) -> str | None:
    """Why PostgreSQL refused a batch for a reason retrying cannot cure (None for anything else).

    Data and integrity errors (SQLSTATE classes 22 and 23: a NUL byte, a value out of range, a constraint) say
    something about the rows themselves, so the consumer splits the batch and dead-letters the bad message. The
    driver's own refusal of a NUL in a parameter counts too. A lost connection, a deadlock, a serialisation
    failure or a timeout is an operational error: it is waited out and the batch retried whole.
    """
    if isinstance(exc, psycopg2.Error):
        code = exc.pgcode or ""
        if isinstance(exc, psycopg2.DataError | psycopg2.IntegrityError) or code[:2] in ("22", "23"):
            said = (exc.pgerror or str(exc)).strip().splitlines()
            return f"PostgreSQL refused it ({code or type(exc).__name__}): {said[0] if said else ''}"
        return None
    if isinstance(exc, ValueError) and "cannot contain NUL" in str(exc):
        return f"PostgreSQL cannot store it: {exc}"
    return None


def lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the database went away (stopped, restarting, the connection cut): an outage, not a bug.

    Such errors are waited out with one log line per attempt and no traceback (README, "Faults, health and
    operations").
    """
    sa_exc = sys.modules.get("sqlalchemy.exc")  # not imported by the producer's commands: then no DBAPIError
    if sa_exc is not None and isinstance(exc, sa_exc.DBAPIError):
        orig = getattr(exc, "orig", None)
        return bool(getattr(exc, "connection_invalidated", False)) or isinstance(
            orig, psycopg2.OperationalError | psycopg2.InterfaceError
        )
    return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)


def first_line(exc: BaseException) -> str:
    """An exception as one line: its type and the first line of its message (the driver adds a hint line)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def rollback(raw: Any) -> None:
    """Rolls back after a failure; a connection the server has dropped is invalidated instead.

    Why: rolling back a dead connection raises a second error that hides the first (the one the retry loop must
    see), and the pool would log a traceback trying to reset it on close; invalidated, the pool discards it.
    """
    try:
        raw.rollback()
    except psycopg2.Error:
        invalidate = getattr(raw, "invalidate", None)
        if invalidate is not None:
            invalidate()
