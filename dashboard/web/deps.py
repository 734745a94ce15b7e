"""What routes depend on: the store connection, the settings and who is acting.

The app keeps its engine and settings in ``app.state`` (set by ``create_app``); routes reach them only through
these dependencies, so a test or another server can build the app around any engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy import Connection, Engine

from enrolment.domain.model import MAX_ID_LENGTH
from enrolment.settings import Settings


def app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def app_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def db(request: Request) -> Iterator[Connection]:
    """A connection per request from the app's engine."""
    with app_engine(request).connect() as conn:
        yield conn


def acting_mentor(
    mentor: Annotated[
        str | None, Query(max_length=MAX_ID_LENGTH, description="User id of the acting mentor (no login yet)")
    ] = None,
) -> str | None:
    """The one place that knows who is acting; replace it with authentication later."""
    return (mentor.strip() or None) if mentor else None


Mentor = Annotated[str | None, Depends(acting_mentor)]
Db = Annotated[Connection, Depends(db)]
AppSettings = Annotated[Settings, Depends(app_settings)]
EngineDep = Annotated[Engine, Depends(app_engine)]
