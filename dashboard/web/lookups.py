"""Reads a route cannot go on without: an unknown batch or upload becomes a 404 with one sentence."""

from __future__ import annotations

from sqlalchemy import Connection

from dashboard import queries
from dashboard.readmodel import UploadRow
from dashboard.web.errors import PageError


def need_batch(conn: Connection, group: str, batch_id: str) -> queries.BatchInfo:
    b = queries.batch(conn, group, batch_id)
    if b is None:
        raise PageError(404, f"Batch {batch_id} does not exist.")
    return b


def need_upload(conn: Connection, group: str, upload_id: str) -> UploadRow:
    row = queries.upload(conn, group, upload_id)
    if row is None:
        raise PageError(404, f"No upload {upload_id} is known to the dashboard yet.")
    return row
