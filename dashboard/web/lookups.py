"""Reads a route cannot go on without: a batch or upload that does not exist, or that the signed-in person may
not see, is the same 404 with one sentence (so a page never confirms what someone may not know exists).
"""

from __future__ import annotations

from sqlalchemy import Connection

from dashboard import queries
from dashboard.readmodel import UploadRow
from dashboard.web.deps import AppSettings, Db, Who
from dashboard.web.errors import PageError
from enrolment.domain.access import Viewer, may_edit_batch, may_view_batch, may_view_upload
from enrolment.store import reference


def need_batch(conn: Connection, group: str, batch_id: str, viewer: Viewer | None = None) -> queries.BatchInfo:
    """The batch if ``viewer`` may see it.  ``viewer`` None only where the route's dependency ``visible_batch``
    already checked the scope (the CSV download, whose module predates sign-in)."""
    b = queries.batch(conn, group, batch_id)
    if b is None or (viewer is not None and not may_view_batch(viewer, b.as_domain())):
        raise PageError(404, f"Batch {batch_id} does not exist.")
    return b


def need_batch_to_change(conn: Connection, group: str, batch_id: str, viewer: Viewer) -> queries.BatchInfo:
    """For an action (a form post, a JSON write): 404 when the batch does not exist or may not be seen (an action
    must not confirm what a read would hide), 403 when it may be seen but not changed."""
    b = need_batch(conn, group, batch_id, viewer)
    if not may_edit_batch(viewer, b.as_domain()):
        raise PageError(403, f"{viewer.user_id} may not change the participants of batch {batch_id}.")
    return b


def need_upload(conn: Connection, group: str, upload_id: str, viewer: Viewer) -> UploadRow:
    row = queries.upload(conn, group, upload_id)
    if row is not None:
        with queries.cursor(conn) as cur:
            batch = reference.batch(cur, row.batch_id) if row.batch_id else None
        if may_view_upload(viewer, batch, row.requested_by):
            return row
    raise PageError(404, f"No upload {upload_id} is known to the dashboard yet.")


def visible_batch(batch_id: str, who: Who, conn: Db, settings: AppSettings) -> None:
    """A route dependency for routes that take ``batch_id`` (the CSV download): 404 unless it may be seen."""
    need_batch(conn, settings.dashboard_group, batch_id, who.viewer)
