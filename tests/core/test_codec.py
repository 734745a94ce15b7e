"""Avro single-object encoding (enrolment.messages.codec): header, round trips, schema evolution, corrupt input."""

from __future__ import annotations

import json
import random
import signal
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form

from enrolment.domain.model import Action, Command, IdType, Source
from enrolment.messages.avro_fast import _long
from enrolment.messages.codec import HEADER_LEN, MARKER, SCHEMA_DIR, Codec, DecodeError, default_codec, fingerprint_of
from enrolment.messages.records import command_from_record

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T0 = 1_717_171_717_171  # 2024-05-31T16:08:37.171Z
SCHEMA_NAMES = sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc"))


def ts(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


class _Timeout(BaseException):
    """Not an Exception, so the codec's `except Exception` cannot turn it into a DecodeError."""


@pytest.fixture()
def deadline() -> Iterator[Callable[[float], None]]:
    """Arms a wall-clock alarm (seconds) so a decoder that loops forever fails the test instead of hanging it."""

    def on_alarm(signum: int, frame: object) -> None:
        raise _Timeout("decode did not finish in time")

    previous = signal.signal(signal.SIGALRM, on_alarm)

    def arm(seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)

    try:
        yield arm
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------------------------------ sample records

TELEMETRY = {
    "eid": "AUDIT",
    "ets": T0,
    "ver": "3.0",
    "mid": "AUDIT:up-1:2",
    "actor": {"id": "admin-1", "type": "User"},
    "context": {
        "channel": "KA",
        "pdata": {"id": "participants.processor", "pid": "bulk-enrolment", "ver": "0.1.0"},
        "env": "Course",
        "sid": None,
        "did": "device-ä",
        "cdata": [{"id": "b-1", "type": "CourseBatch"}, {"id": "up-1", "type": "Upload"}],
        "rollup": {"l1": "course-1", "l2": ""},
    },
    "object": {"id": "u-1", "type": "User", "ver": None, "rollup": {"l1": "course-1"}},
    "edata": {
        "type": "course-enroll",
        "state": "enrolled",
        "prevstate": "unenrolled",
        "props": ["batch.participants"],
        "level": None,
        "message": None,
        "params": {},
    },
    "tags": ["t1", "ünï😀"],
}

# (record as given to encode, record expected back from decode): timestamp-millis come back as aware datetimes.
SAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}


def _sample(name: str, given: dict[str, Any], **decoded: Any) -> None:
    SAMPLES[name] = (given, {**given, **decoded})


_sample(
    "ParticipantCommand",
    {
        "command_id": "up-1:2",
        "upload_id": "up-1",
        "batch_id": "b-1",
        "action": "ADD",
        "identifier": "KA-0001",
        "id_type": "STATE_ID",
        "line": 2,
        "requested_by": "admin-1",
        "source": "UI",
        "dry_run": True,
        "requested_at": T0,
        "origin_upload_id": "up-0",
        "origin_line": 17,
        "include_completed": True,
    },
    requested_at=ts(T0),
)
_sample(
    "CommandResult",
    {
        "command_id": "up-1:3",
        "upload_id": "up-1",
        "batch_id": "b-1",
        "line": 3,
        "identifier": "u-9",
        "id_type": "USER_ID",
        "action": "REMOVE",
        "outcome": "REJECTED",
        "reason": "USER_NOT_FOUND",
        "message": "No user has user id u-9.",
        "user_id": None,
        "participant_count": None,
        "dry_run": False,
        "source": "BACKEND",
        "processed_at": ts(T0),
        "origin_upload_id": None,
        "origin_line": None,
        "requested_by": "admin-1",
    },
)
_sample(
    "EnrollmentEvent",
    {
        "event_id": "up-1:2",
        "batch_id": "b-1",
        "course_id": "course-1",
        "user_id": "u-1",
        "change": "UNENROLLED",
        "participant_count": 0,
        "source": "BACKEND",
        "upload_id": "up-1",
        "requested_by": "admin-1",
        "occurred_at": -1,
    },
    occurred_at=ts(-1),
)
_sample(
    "UploadSummary",
    {
        "upload_id": "up-1",
        "batch_id": "b-1",
        "phase": "COMPLETED",
        "kind": "add",
        "requested_by": "admin-1",
        "submitted_by": "cli:operator",
        "dry_run": False,
        "include_completed": True,
        "file_name": "participants (1).csv",
        "parent_upload_id": None,
        "plan_id": "plan-1",
        "content_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "commands_published": 300,
        "refused": [
            {
                "line": 7,
                "identifier": "",
                "reason": "EMPTY_ID",
                "message": "Line 7 has no identifier.",
                "id_type": None,
            },
            {"line": 9, "identifier": "=cmd()", "reason": "BAD_ID", "message": "Line 9 is not an id.", "id_type": None},
        ],
        "outcomes": {"APPLIED": 250, "SKIPPED": 40, "REJECTED": 10},
        "reasons": {"ENROLLED": 250, "ALREADY_ENROLLED": 40, "USER_NOT_FOUND": 10},
        "created_at": T0 - 5000,
        "completed_at": T0,
    },
    created_at=ts(T0 - 5000),
    completed_at=ts(T0),
)
_sample("TelemetryEvent", TELEMETRY)
_sample(
    "EnrollmentState",
    {
        "batch_id": "b-1",
        "user_id": "u-1",
        "added_via": "ui",
        "enrolled_at": T0,
        "enrolled_by": "mentor-1",
        "command_id": "up-1:2",
    },
    enrolled_at=ts(T0),
)
_sample(
    "CourseProgress",
    {"batch_id": "b-1", "user_id": "u-1", "progress": 100, "completed_at": T0, "updated_at": ts(T0 + 1)},
    completed_at=ts(T0),
)


def test_every_schema_has_a_sample() -> None:
    assert sorted(SAMPLES) == SCHEMA_NAMES
    assert sorted(default_codec().current) == SCHEMA_NAMES


# ------------------------------------------------------------------------------------------ header


def test_fingerprint_is_the_spec_value_for_null_little_endian() -> None:
    """The Avro spec's CRC-64-AVRO of the schema "null" is 0x63DD24E7CC258F8A; the header carries it little-endian."""
    assert fingerprint_of('"null"') == (0x63DD24E7CC258F8A).to_bytes(8, "little")


def test_fingerprint_of_empty_input_is_the_empty_constant() -> None:
    assert fingerprint_of("") == (0xC15D213AA4D7A795).to_bytes(8, "little")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_fingerprint_is_crc64_of_the_parsing_canonical_form(name: str) -> None:
    raw = json.loads((SCHEMA_DIR / f"{name}.avsc").read_text(encoding="utf-8"))
    entry = default_codec().current[name]
    canonical = to_parsing_canonical_form(raw)
    assert entry.fingerprint.hex() == fingerprint(canonical, "CRC-64-AVRO")
    assert entry.fingerprint == fingerprint_of(canonical)
    assert default_codec().by_fingerprint[entry.fingerprint] is entry


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_header_is_marker_and_little_endian_fingerprint(name: str) -> None:
    codec = default_codec()
    data = codec.encode(name, SAMPLES[name][0])
    assert MARKER == b"\xc3\x01" and HEADER_LEN == 10
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == codec.current[name].fingerprint
    assert data[10:] == codec.current[name].encoder(SAMPLES[name][0])


def test_fingerprints_are_distinct() -> None:
    fps = [e.fingerprint for e in default_codec().current.values()]
    assert len(set(fps)) == len(fps)


# -------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_round_trip(name: str) -> None:
    given, expected = SAMPLES[name]
    codec = default_codec()
    got_name, record = codec.decode(codec.encode(name, given))
    assert got_name == name
    assert record == expected
    assert codec.decode(codec.encode(name, given), expect=name) == (name, expected)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_timestamps_decode_as_aware_utc_datetimes(name: str) -> None:
    codec = default_codec()
    _, record = codec.decode(codec.encode(name, SAMPLES[name][0]))
    for value in record.values():
        if isinstance(value, datetime):
            assert value.tzinfo is not None and value.utcoffset() == timedelta(0)


def test_fields_with_defaults_may_be_omitted() -> None:
    given = {k: v for k, v in SAMPLES["ParticipantCommand"][0].items() if k not in ("source", "dry_run", "origin_line")}
    _, record = default_codec().decode(default_codec().encode("ParticipantCommand", given))
    assert record["source"] == "BACKEND" and record["dry_run"] is False and record["origin_line"] is None


def test_decoded_command_maps_to_the_domain_command() -> None:
    codec = default_codec()
    _, rec = codec.decode(codec.encode("ParticipantCommand", SAMPLES["ParticipantCommand"][0]))
    assert command_from_record(rec) == Command(
        command_id="up-1:2",
        upload_id="up-1",
        batch_id="b-1",
        action=Action.ADD,
        identifier="KA-0001",
        id_type=IdType.STATE_ID,
        line=2,
        requested_by="admin-1",
        source=Source.UI,
        dry_run=True,
        requested_at_ms=T0,
        origin_upload_id="up-0",
        origin_line=17,
        include_completed=True,
    )


def _command_at(ms: int) -> dict[str, Any]:
    return {**SAMPLES["ParticipantCommand"][0], "requested_at": ms}


@pytest.mark.parametrize("ms", [0, 1, 999, T0, 1_700_000_000_001, 1_999_999_999_999])
def test_requested_at_survives_encode_decode_and_mapping(ms: int) -> None:
    codec = default_codec()
    _, rec = codec.decode(codec.encode("ParticipantCommand", _command_at(ms)))
    assert command_from_record(rec).requested_at_ms == ms


@pytest.mark.parametrize("ms", [1_081_422_362_985, -546_704_982_532])
def test_requested_at_millis_are_exact_for_every_instant(ms: int) -> None:
    codec = default_codec()
    _, rec = codec.decode(codec.encode("ParticipantCommand", _command_at(ms)))
    assert rec["requested_at"] == ts(ms)  # the codec is exact ...
    assert command_from_record(rec).requested_at_ms == ms  # ... and so is the mapping (integer arithmetic)


# ---------------------------------------------------------------------------------- schema evolution

THING_V1 = {
    "type": "record",
    "name": "Thing",
    "namespace": "org.test",
    "fields": [{"name": "id", "type": "string"}, {"name": "size", "type": "int"}],
}
THING_V2 = {
    "type": "record",
    "name": "Thing",
    "namespace": "org.test",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "size", "type": "int"},
        {"name": "colour", "type": "string", "default": "blue"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}


def _codec_with_current(tmp_path: Path, schema: dict[str, Any]) -> Codec:
    (tmp_path / "Thing.avsc").write_text(json.dumps(schema), encoding="utf-8")
    return Codec(schema_dir=tmp_path)


def test_old_writer_new_reader_gets_the_default(tmp_path: Path) -> None:
    codec = _codec_with_current(tmp_path, THING_V2)
    old = Codec.entry_for(THING_V1)
    data = Codec.encode_with(old, {"id": "x", "size": -3})
    with pytest.raises(DecodeError) as info:
        codec.decode(data)  # the old fingerprint is not known yet
    assert info.value.reason == "UNKNOWN_SCHEMA"
    codec.add_writer_schema(THING_V1)
    assert codec.decode(data) == ("Thing", {"id": "x", "size": -3, "colour": "blue", "note": None})
    assert codec.decode(data, expect="Thing")[1]["colour"] == "blue"
    # The current writer still round-trips through the same codec.
    assert codec.decode(codec.encode("Thing", {"id": "y", "size": 1, "colour": "red", "note": "n"})) == (
        "Thing",
        {"id": "y", "size": 1, "colour": "red", "note": "n"},
    )


def test_new_writer_old_reader_ignores_the_new_field(tmp_path: Path) -> None:
    codec = _codec_with_current(tmp_path, THING_V1)
    new = Codec.entry_for(THING_V2)
    data = Codec.encode_with(new, {"id": "x", "size": 7, "colour": "red", "note": "hello"})
    codec.add_writer_schema(THING_V2)
    assert codec.decode(data) == ("Thing", {"id": "x", "size": 7})


def test_history_directory_keeps_old_fingerprints_readable(tmp_path: Path) -> None:
    codec_dir = tmp_path / "schemas"
    (codec_dir / "history").mkdir(parents=True)
    (codec_dir / "Thing.avsc").write_text(json.dumps(THING_V2), encoding="utf-8")
    (codec_dir / "history" / "Thing.v1.avsc").write_text(json.dumps(THING_V1), encoding="utf-8")
    codec = Codec(schema_dir=codec_dir)
    assert codec.current["Thing"].fingerprint == Codec.entry_for(THING_V2).fingerprint
    data = Codec.encode_with(Codec.entry_for(THING_V1), {"id": "x", "size": 0})
    assert codec.decode(data) == ("Thing", {"id": "x", "size": 0, "colour": "blue", "note": None})


HISTORY = sorted((SCHEMA_DIR / "history").glob("*.avsc"))
assert HISTORY, "schemas/history ships at least CommandResult v1"


@pytest.mark.parametrize("path", HISTORY, ids=[p.name for p in HISTORY])
def test_shipped_history_schemas_stay_readable(path: Path) -> None:
    codec = default_codec()
    raw = json.loads(path.read_text(encoding="utf-8"))
    old = Codec.entry_for(raw)
    assert old.name in codec.current
    assert codec.by_fingerprint[old.fingerprint].fingerprint == old.fingerprint
    given = {k: v for k, v in SAMPLES[old.name][0].items() if k in {f["name"] for f in raw["fields"]}}
    name, record = codec.decode(Codec.encode_with(old, given), expect=old.name)
    assert name == old.name
    expected = SAMPLES[old.name][1]
    current_fields = {f["name"]: f for f in json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())["fields"]}
    for field, spec in current_fields.items():
        assert record[field] == (expected[field] if field in given else spec["default"]), field


def test_an_upload_summary_v2_carries_its_submitter_and_the_refused_rows_id_types() -> None:
    """What the report needs of a refused row (its id type) and who sent the upload survive the topic; a v1
    record (before both) reads as null for each."""
    codec = default_codec()
    given = dict(SAMPLES["UploadSummary"][0])
    given["refused"] = [
        {"line": 3, "identifier": "KA-1", "reason": "DUPLICATE_IN_FILE", "message": "m", "id_type": "STATE_ID"}
    ]
    _name, record = codec.decode(codec.encode("UploadSummary", given))
    assert record["refused"][0]["id_type"] == "STATE_ID" and record["submitted_by"] == "cli:operator"
    v1 = Codec.entry_for(json.loads((SCHEMA_DIR / "history" / "UploadSummary.v1.avsc").read_text(encoding="utf-8")))
    old = {k: v for k, v in given.items() if k != "submitted_by"}
    old["refused"] = [{k: v for k, v in r.items() if k != "id_type"} for r in old["refused"]]
    _name, record = codec.decode(Codec.encode_with(v1, old))
    assert record["refused"][0]["id_type"] is None and record["submitted_by"] is None


def test_add_writer_schema_does_not_replace_the_current_schema(tmp_path: Path) -> None:
    codec = _codec_with_current(tmp_path, THING_V2)
    current = codec.current["Thing"]
    codec.add_writer_schema(THING_V2)
    codec.add_writer_schema(THING_V1)
    assert codec.current["Thing"] is current
    assert codec.by_fingerprint[current.fingerprint] is current


def test_evolved_body_that_is_corrupt_is_corrupt_body(tmp_path: Path) -> None:
    codec = _codec_with_current(tmp_path, THING_V2)
    codec.add_writer_schema(THING_V1)
    data = Codec.encode_with(Codec.entry_for(THING_V1), {"id": "abc", "size": 1})
    for cut in range(HEADER_LEN, len(data)):
        with pytest.raises(DecodeError) as info:
            codec.decode(data[:cut])
        assert info.value.reason == "CORRUPT_BODY"
    with pytest.raises(DecodeError) as info:
        codec.decode(data + b"\x00")
    assert info.value.reason == "CORRUPT_BODY"


def test_writer_with_no_current_schema_of_its_name_is_unknown(tmp_path: Path) -> None:
    codec = _codec_with_current(tmp_path, THING_V2)
    other = {"type": "record", "name": "Other", "fields": [{"name": "a", "type": "int"}]}
    codec.add_writer_schema(other)
    with pytest.raises(DecodeError) as info:
        codec.decode(Codec.encode_with(Codec.entry_for(other), {"a": 1}))
    assert info.value.reason == "UNKNOWN_SCHEMA"


# ------------------------------------------------------------------------------------- corrupt input


def _reason(data: bytes | None, expect: str | None = None) -> str:
    with pytest.raises(DecodeError) as info:
        default_codec().decode(data, expect=expect)
    err = info.value
    assert err.detail and str(err).startswith(err.reason + ": ")
    return err.reason


def _valid(name: str = "CommandResult") -> bytes:
    return default_codec().encode(name, SAMPLES[name][0])


def test_none_is_an_empty_message() -> None:
    assert _reason(None) == "EMPTY_MESSAGE"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc3",
        b"\xc3\x01",
        b"\xc3\x01\x00\x00\x00",
        _valid()[: HEADER_LEN - 1],
        b"\x00\x01" + _valid()[2:],
        b"\xc3\x02" + _valid()[2:],
        _valid()[2:],
        b'{"command_id": "x"}',
    ],
    ids=[
        "empty",
        "one-byte",
        "marker-only",
        "short-header",
        "header-minus-one",
        "bad-marker-0",
        "bad-marker-1",
        "no-marker",
        "json",
    ],
)
def test_missing_marker_is_not_single_object(data: bytes) -> None:
    assert _reason(data) == "NOT_SINGLE_OBJECT"


def test_unknown_fingerprint_is_unknown_schema() -> None:
    data = _valid()
    assert _reason(MARKER + bytes(8) + data[HEADER_LEN:]) == "UNKNOWN_SCHEMA"
    assert _reason(MARKER + fingerprint_of('"null"')) == "UNKNOWN_SCHEMA"
    # Big-endian fingerprint is not the same fingerprint.
    assert _reason(MARKER + data[2:HEADER_LEN][::-1] + data[HEADER_LEN:]) == "UNKNOWN_SCHEMA"
    # Unknown schema wins over an expectation.
    assert _reason(MARKER + bytes(8) + data[HEADER_LEN:], expect="CommandResult") == "UNKNOWN_SCHEMA"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_truncated_body_is_corrupt(name: str) -> None:
    data = _valid(name)
    for cut in range(HEADER_LEN, len(data)):
        assert _reason(data[:cut]) == "CORRUPT_BODY", cut


@pytest.mark.parametrize("name", SCHEMA_NAMES)
@pytest.mark.parametrize("extra", [b"\x00", b"\x02", b"garbage", _valid("CourseProgress")])
def test_trailing_bytes_are_corrupt(name: str, extra: bytes) -> None:
    assert _reason(_valid(name) + extra) == "CORRUPT_BODY"


def test_invalid_utf8_is_corrupt() -> None:
    entry = default_codec().current["CourseProgress"]
    body = entry.encoder({"batch_id": "xy", "user_id": "u", "progress": 1, "updated_at": 0})
    assert body[:3] == b"\x04xy"
    assert _reason(MARKER + entry.fingerprint + b"\x04\xff\xfe" + body[3:]) == "CORRUPT_BODY"


def test_enum_index_out_of_range_is_corrupt() -> None:
    entry = default_codec().current["EnrollmentEvent"]
    rec = dict(SAMPLES["EnrollmentEvent"][0])
    good = entry.encoder(rec)
    prefix = entry.encoder({**rec, "change": "ENROLLED"})
    # The change enum follows event_id, batch_id, course_id, user_id: find its byte by diffing two encodings.
    pos = next(i for i, (a, b) in enumerate(zip(good, prefix, strict=True)) if a != b)
    for index in (7, -1):  # -1 must not wrap around to the last symbol
        bad = good[:pos] + _long(index) + good[pos + 1 :]
        assert _reason(MARKER + entry.fingerprint + bad) == "CORRUPT_BODY"


def test_boolean_byte_other_than_0_or_1_is_corrupt() -> None:
    entry = default_codec().current["ParticipantCommand"]
    rec = SAMPLES["ParticipantCommand"][0]
    yes, no = entry.encoder({**rec, "dry_run": True}), entry.encoder({**rec, "dry_run": False})
    pos = next(i for i, (a, b) in enumerate(zip(yes, no, strict=True)) if a != b)
    assert (yes[pos], no[pos]) == (1, 0)
    bad = yes[:pos] + b"\x05" + yes[pos + 1 :]
    assert _reason(MARKER + entry.fingerprint + bad) == "CORRUPT_BODY"


TWO_MB_OF_FF = b"\xff" * (2 * 1024 * 1024)


def test_2_mb_of_ff_is_not_single_object() -> None:
    assert _reason(TWO_MB_OF_FF) == "NOT_SINGLE_OBJECT"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_a_known_header_then_2_mb_of_ff_is_corrupt_body(name: str) -> None:
    """The body's first varint is refused after 10 bytes (reading it whole was quadratic: minutes)."""
    with pytest.raises(DecodeError) as info:
        default_codec().decode(MARKER + default_codec().current[name].fingerprint + TWO_MB_OF_FF)
    assert info.value.reason == "CORRUPT_BODY"
    assert "varint longer than 10 bytes" in info.value.detail


def test_an_old_writer_header_then_2_mb_of_ff_is_corrupt_body() -> None:
    """Schema resolution goes through fastavro, whose varints are linear: a DecodeError too."""
    old = Codec.entry_for(json.loads(HISTORY[0].read_text(encoding="utf-8")))
    assert _reason(MARKER + old.fingerprint + TWO_MB_OF_FF) == "CORRUPT_BODY"


def test_expect_mismatch_is_unexpected_schema() -> None:
    data = _valid("CommandResult")
    assert _reason(data, expect="ParticipantCommand") == "UNEXPECTED_SCHEMA"
    assert default_codec().decode(data, expect="CommandResult")[0] == "CommandResult"


def test_decode_error_carries_reason_and_detail() -> None:
    err = DecodeError("CORRUPT_BODY", "3 bytes left after the record")
    assert err.reason == "CORRUPT_BODY" and err.detail == "3 bytes left after the record"
    assert str(err) == "CORRUPT_BODY: 3 bytes left after the record"
    assert isinstance(err, Exception)


# --------------------------------------------------------------------------------------------- fuzz

REASONS = {
    "EMPTY_MESSAGE",
    "NOT_SINGLE_OBJECT",
    "UNKNOWN_SCHEMA",
    "UNEXPECTED_SCHEMA",
    "CORRUPT_BODY",
    "CONTROL_CHARACTER",
}


@pytest.mark.parametrize("char", ["\x00", "\t", "\n", "\x1b", "\x7f", "\x85", "\x9f"])
def test_control_characters_in_text_are_refused_by_the_decoder(char: str) -> None:
    codec = default_codec()
    for name in ("ParticipantCommand", "CourseProgress"):
        record = dict(SAMPLES[name][0])
        field = "identifier" if name == "ParticipantCommand" else "user_id"
        record[field] = f"u{char}1"
        with pytest.raises(DecodeError) as caught:
            codec.decode(codec.encode(name, record))
        assert caught.value.reason == "CONTROL_CHARACTER"
        assert f"{name}.{field} contains" in caught.value.detail and "U+00" in caught.value.detail
    record = dict(SAMPLES["ParticipantCommand"][0])
    record["identifier"] = "u\u00e9\u200b-ok"  # not control characters: accepted by the decoder
    assert codec.decode(codec.encode("ParticipantCommand", record))[1]["identifier"] == "u\u00e9\u200b-ok"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(7)

    def body_pos() -> int:  # mostly mutate the body
        return rng.randrange(HEADER_LEN, len(b))

    if kind == 0:  # truncate
        return bytes(b[: rng.randrange(len(b))])
    if kind == 1:  # flip one bit
        i = body_pos() if rng.random() < 0.9 else rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    elif kind == 2:  # random byte(s)
        for _ in range(rng.randint(1, 4)):
            b[body_pos()] = rng.randrange(256)
    elif kind == 3:  # insert
        i = body_pos()
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
    elif kind == 4:  # delete
        i = body_pos()
        del b[i : i + rng.randint(1, 3)]
    elif kind == 5:  # append
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 5)))
    else:  # swap in a long varint
        i = body_pos()
        b[i : i + 1] = _long(rng.randint(-(2**40), 2**40))
    return bytes(b)


def test_fuzzed_messages_only_ever_raise_decode_error(deadline: Callable[[float], None]) -> None:
    codec = default_codec()
    valid = [codec.encode(name, SAMPLES[name][0]) for name in SCHEMA_NAMES]
    rng = random.Random(20240531)
    outcomes = {"ok": 0, **dict.fromkeys(REASONS, 0)}
    for n in range(2000):
        data = _mutate(rng, rng.choice(valid))
        deadline(2.0)
        try:
            name, record = codec.decode(data)
        except DecodeError as err:
            assert err.reason in REASONS, (n, data.hex())
            outcomes[err.reason] += 1
        else:
            assert name in codec.current and isinstance(record, dict), (n, data.hex())
            outcomes["ok"] += 1
        finally:
            deadline(0)
    assert outcomes["CORRUPT_BODY"] > 500  # the mutations really reach the decoders


def test_negative_string_length_in_an_array_does_not_hang(deadline: Callable[[float], None]) -> None:
    codec = default_codec()
    good = codec.encode("TelemetryEvent", {**TELEMETRY, "tags": []})
    assert good.endswith(b"\x00")  # `tags`, the last field, is an empty array
    poison = good[:-1] + _long(1) + _long(-2)  # one block of one string whose length is -2
    deadline(1.0)
    with pytest.raises(DecodeError) as info:
        codec.decode(poison)
    assert info.value.reason == "CORRUPT_BODY"
