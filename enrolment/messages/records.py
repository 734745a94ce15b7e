"""Decoded Avro records -> domain values (the other way, domain -> record, is in enrolment.domain.outputs)."""

from __future__ import annotations

from typing import Any

from enrolment.domain.model import Action, Command, IdType, Source
from enrolment.messages.millis import to_ms


def command_from_record(rec: dict[str, Any]) -> Command:
    """Maps a decoded ParticipantCommand to the domain value object."""
    return Command(
        command_id=rec["command_id"],
        upload_id=rec["upload_id"],
        batch_id=rec["batch_id"],
        action=Action(rec["action"]),
        identifier=rec["identifier"],
        id_type=IdType(rec["id_type"]),
        line=int(rec["line"]),
        requested_by=rec["requested_by"],
        source=Source(rec.get("source", "BACKEND")),
        dry_run=bool(rec.get("dry_run", False)),
        requested_at_ms=to_ms(rec["requested_at"]),
        origin_upload_id=rec.get("origin_upload_id"),
        origin_line=rec.get("origin_line"),
        include_completed=bool(rec.get("include_completed", False)),
    )
