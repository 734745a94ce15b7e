"""Avro single-object encoding (marker C3 01 + CRC-64-AVRO fingerprint + body).

Every message names its writer schema by fingerprint, so any consumer can decode it without a
registry service; decoding resolves the writer schema against the reader's (current) schema.
Older versions of a schema live in ``schemas/history/`` so their fingerprints stay readable.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from enrolment.domain.text import CONTROL_CHARACTER, control_sentence
from enrolment.messages.avro_fast import Decoder, Encoder, compile_decoder, compile_encoder
from enrolment.messages.errors import DecodeError as DecodeError  # re-exported: callers catch it from here

MARKER = b"\xc3\x01"
HEADER_LEN = 10
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
# The records whose text is checked for control characters on decoding (enrolment.domain.text), with the
# fields left out: a seal's refused rows quote what was refused (escaped by the producer, shown, never stored
# as an id); telemetry and the changelog state are written by the processor and read by no consumer here.
CHECKED_TEXT: dict[str, frozenset[str]] = {
    "ParticipantCommand": frozenset(),
    "CourseProgress": frozenset(),
    "UploadSummary": frozenset({"refused"}),
    "EnrollmentEvent": frozenset(),
    "CommandResult": frozenset(),
}


def fingerprint_of(canonical: str) -> bytes:
    """The 8 header bytes naming a schema: its CRC-64-AVRO fingerprint, little-endian (fastavro's hex order)."""
    return bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))


@dataclass(frozen=True)
class SchemaEntry:
    name: str  # short record name, e.g. "ParticipantCommand"
    parsed: Any
    fingerprint: bytes  # 8 bytes, little-endian
    encoder: Encoder
    decoder: Decoder


class Codec:
    """Encodes with the current schema of a record name; decodes any known writer schema."""

    def __init__(self, schema_dir: Path = SCHEMA_DIR) -> None:
        self.current: dict[str, SchemaEntry] = {}
        self.by_fingerprint: dict[bytes, SchemaEntry] = {}
        for path in sorted(schema_dir.glob("*.avsc")):
            entry = self._load(path)
            self.current[entry.name] = entry
            self.by_fingerprint[entry.fingerprint] = entry
        history = schema_dir / "history"
        if history.is_dir():
            for path in sorted(history.glob("*.avsc")):
                entry = self._load(path)
                self.by_fingerprint.setdefault(entry.fingerprint, entry)

    @staticmethod
    def _load(path: Path) -> SchemaEntry:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return Codec.entry_for(raw)

    @staticmethod
    def entry_for(raw: dict[str, Any]) -> SchemaEntry:
        parsed = fastavro.parse_schema(raw)
        return SchemaEntry(
            name=str(raw["name"]),
            parsed=parsed,
            fingerprint=fingerprint_of(to_parsing_canonical_form(parsed)),
            encoder=compile_encoder(parsed),
            decoder=compile_decoder(parsed),
        )

    def add_writer_schema(self, raw: dict[str, Any]) -> None:
        """Registers an extra (e.g. older) writer schema."""
        entry = self.entry_for(raw)
        self.by_fingerprint.setdefault(entry.fingerprint, entry)

    def encode(self, name: str, record: dict[str, Any]) -> bytes:
        return self.encode_with(self.current[name], record)

    @staticmethod
    def encode_with(entry: SchemaEntry, record: dict[str, Any]) -> bytes:
        return MARKER + entry.fingerprint + entry.encoder(record)

    def decode(self, data: bytes | None, expect: str | None = None) -> tuple[str, dict[str, Any]]:
        """Returns (record name, record) read with the current schema of that name.

        Raises DecodeError for anything that is not a complete single-object message of a known schema.
        """
        if data is None:
            raise DecodeError("EMPTY_MESSAGE", "message has no value")
        if len(data) < HEADER_LEN or data[:2] != MARKER:
            raise DecodeError("NOT_SINGLE_OBJECT", "missing the Avro single-object marker C3 01")
        writer = self.by_fingerprint.get(bytes(data[2:HEADER_LEN]))
        if writer is None:
            raise DecodeError("UNKNOWN_SCHEMA", f"unknown schema fingerprint {bytes(data[2:HEADER_LEN]).hex()}")
        reader = self.current.get(writer.name)
        if reader is None:
            raise DecodeError("UNKNOWN_SCHEMA", f"no current schema named {writer.name}")
        if expect is not None and writer.name != expect:
            raise DecodeError("UNEXPECTED_SCHEMA", f"expected {expect}, got {writer.name}")
        try:
            record: Any
            if writer is reader:
                record, end = writer.decoder(data, HEADER_LEN)
            else:
                buf = io.BytesIO(data)
                buf.seek(HEADER_LEN)
                record = fastavro.schemaless_reader(buf, writer.parsed, reader.parsed)
                end = buf.tell()
        except DecodeError:
            raise
        except Exception as exc:  # noqa: BLE001 - fastavro's resolving reader raises many types
            raise DecodeError("CORRUPT_BODY", f"{type(exc).__name__}: {exc}") from None
        if end != len(data):
            raise DecodeError("CORRUPT_BODY", f"{len(data) - end} bytes left after the record")
        if not isinstance(record, dict):
            raise DecodeError("CORRUPT_BODY", "body is not a record")
        skipped = CHECKED_TEXT.get(writer.name)
        if skipped is not None:
            check_text(writer.name, record, skipped)
        return writer.name, record


def check_text(name: str, record: dict[str, Any], skipped: frozenset[str] = frozenset()) -> None:
    """Raises DecodeError(CONTROL_CHARACTER) when a string field of the record holds a control character."""
    for field, value in record.items():
        if field in skipped:
            continue
        if isinstance(value, str):
            sentence = control_sentence(f"{name}.{field}", value)
            if sentence is not None:
                raise DecodeError(CONTROL_CHARACTER, sentence)
        elif isinstance(value, dict):
            check_text(name, value)


_DEFAULT: Codec | None = None


def default_codec() -> Codec:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Codec()
    return _DEFAULT
