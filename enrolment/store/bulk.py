"""Sunbird bulk processes: one ``processId`` spans several batches, each an upload of ours (table bulk_processes).

The dashboard writes a row per batch once its upload is published; the status call reads the uploads' own
records and ledger rows through these ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class BulkPart:
    """One batch of a bulk process: the upload that carries it and how many ids were published."""

    process_id: str
    position: int  # the batch's place in the file (first seen)
    upload_id: str
    batch_id: str
    operation: str  # add | remove
    requested_by: str
    ids: int


def record_part(cur: Any, part: BulkPart) -> None:
    cur.execute(
        "INSERT INTO bulk_processes (process_id, position, upload_id, batch_id, operation, requested_by, ids) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (part.process_id, part.position, part.upload_id, part.batch_id, part.operation, part.requested_by, part.ids),
    )


def parts_of(cur: Any, process_id: str) -> list[BulkPart]:
    """The batches of a process, in the order of the file."""
    cur.execute(
        "SELECT process_id, position, upload_id, batch_id, operation, requested_by, ids FROM bulk_processes "
        "WHERE process_id = %s ORDER BY position",
        (process_id,),
    )
    return [BulkPart(p, int(i), u, b, o, r, int(n)) for p, i, u, b, o, r, n in cur.fetchall()]
