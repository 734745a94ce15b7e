"""Reading the uploads table: what the store knows of an upload as a whole (the processor writes it, see step)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class UploadRecord:
    """An upload's own record: who asked for what, and its progress once the seal is processed."""

    upload_id: str
    batch_id: str
    kind: str
    requested_by: str  # empty when the record came before the requester was known
    dry_run: bool
    published: int | None  # set when the seal is processed
    refused: list[dict[str, Any]]
    completed: bool
    submitted_by: str | None = None  # who sent it (None before migration 0007)


def find_upload(cur: Any, upload_id: str) -> UploadRecord | None:
    cur.execute(
        "SELECT batch_id, kind, requested_by, dry_run, commands_published, refused, completed_at IS NOT NULL, "
        "submitted_by FROM uploads WHERE upload_id = %s",
        (upload_id,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    batch_id, kind, requested_by, dry_run, published, refused, completed, submitted_by = row
    return UploadRecord(
        upload_id,
        str(batch_id),
        str(kind),
        str(requested_by or ""),
        bool(dry_run),
        published,
        list(refused or []),
        bool(completed),
        submitted_by,
    )
