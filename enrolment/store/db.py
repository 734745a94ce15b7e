"""Connecting to the store, and saying so in one sentence (without the password) when it cannot be reached."""

from __future__ import annotations

import re

import psycopg2
from sqlalchemy import Engine, create_engine

from enrolment.errors import EXIT_UNREACHABLE, UserError
from enrolment.settings import Settings


def engine(settings: Settings) -> Engine:
    """An engine that checks a pooled connection before use: long-running commands outlive idle connections."""
    return create_engine(settings.database_url, pool_pre_ping=True)


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
