"""A consumed batch, decoded: the commands to apply, the uploads to seal, the messages to dead-letter.

Decoding never stops the partition: whatever cannot be read becomes a dead letter with a reason, and the
position moves past it like any other message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Message

from enrolment.messages.codec import Codec, DecodeError
from enrolment.messages.records import command_from_record
from enrolment.store.dead_letters import DeadLetter
from enrolment.store.step import Positioned


@dataclass
class ReplayRange:
    """A replay: its own group, a start, and an end per partition (where the main group has got to).

    Commands at or past the end belong to the running processor and are left alone.
    """

    end_offsets: dict[int, int]
    start_time_ms: int | None = None  # None: from the beginning
    upload_id: str | None = None  # only this upload's commands
    dry_run: bool = False  # evaluate and report; write and publish nothing


@dataclass
class Decoded:
    commands: list[Positioned] = field(default_factory=list)
    seals: list[tuple[dict[str, Any], int, int]] = field(default_factory=list)  # (record, partition, offset)
    letters: list[DeadLetter] = field(default_factory=list)


DATABASE_REFUSED = "DATABASE_REFUSED"


def decode_batch(
    msgs: list[Message],
    codec: Codec,
    topic: str,
    replay: ReplayRange | None,
    now_ms: int,
    refused: Mapping[tuple[int, int], str] | None = None,
) -> Decoded:
    """Sorts each message into a command, a seal or a dead letter (a replay of one upload skips the others).

    ``refused``: (partition, offset) -> why PostgreSQL refused that message alone; it is dead-lettered.
    """
    out = Decoded()
    for m in msgs:
        p, off = int(m.partition() or 0), int(m.offset() or 0)
        why = refused.get((p, off)) if refused else None
        if why is not None:
            out.letters.append(DeadLetter(topic, p, off, DATABASE_REFUSED, why, m.key(), m.value(), now_ms))
            continue
        try:
            _decode_one(out, codec, m.value(), p, off, replay)
        except DecodeError as exc:
            out.letters.append(DeadLetter(topic, p, off, exc.reason, exc.detail, m.key(), m.value(), now_ms))
        except (KeyError, ValueError, TypeError) as exc:
            out.letters.append(DeadLetter(topic, p, off, "INVALID_COMMAND", str(exc), m.key(), m.value(), now_ms))
    return out


def _decode_one(out: Decoded, codec: Codec, value: bytes | None, p: int, off: int, replay: ReplayRange | None) -> None:
    name, rec = codec.decode(value)
    if replay is not None and replay.upload_id is not None and rec.get("upload_id") != replay.upload_id:
        return  # a replay of one upload leaves the others alone
    if name == "ParticipantCommand":
        command = command_from_record(rec)
        if replay is not None and replay.dry_run:
            command = dataclasses.replace(command, dry_run=True)
        out.commands.append(Positioned(command, p, off))
    elif name == "UploadSummary" and rec["phase"] == "PUBLISHED":
        if replay is None or not replay.dry_run:
            out.seals.append((rec, p, off))
    else:
        raise DecodeError("UNEXPECTED_SCHEMA", f"{name} is not a command")
