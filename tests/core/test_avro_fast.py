"""The generated Avro encoders/decoders (enrolment.messages.avro_fast) against fastavro, the reference.

Encoders must be byte-identical to fastavro.schemaless_writer and decoders must return what
fastavro.schemaless_reader returns, for every schema in schemas/ over many generated records.
"""

from __future__ import annotations

import io
import json
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import fastavro
import pytest

from enrolment.messages.avro_fast import UnsupportedSchema, _long, _read_long, compile_decoder, compile_encoder
from enrolment.messages.codec import SCHEMA_DIR, DecodeError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SCHEMA_PATHS = sorted(SCHEMA_DIR.glob("*.avsc"))
RECORDS_PER_SCHEMA = 400

# Varint edges: 1-byte/2-byte boundaries, 32-bit and 62-bit extremes.
INT_EDGES = [0, 1, -1, 63, -64, 64, -65, 127, 128, -128, 8191, 8192, -8193, 2**31 - 1, -(2**31)]
LONG_EDGES = [*INT_EDGES, 2**31, -(2**31) - 1, 2**53 + 1, -(2**53) - 1, 2**62 - 1, 2**62, -(2**62), -(2**62) - 1]
CHARS = "aZ09 _-:/.,'\"\\\t\n\x00\x7fé中文ñü€😀𝄞"
TZS = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), timezone(timedelta(minutes=-1))]
MIN_MS, MAX_MS = -62_135_596_800_000, 253_402_300_799_999  # 0001-01-01 .. 9999-12-31T23:59:59.999


def parsed(path: Path) -> Any:
    return fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))


def fa_encode(schema: Any, record: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


def fa_decode(schema: Any, data: bytes) -> tuple[Any, int]:
    buf = io.BytesIO(data)
    value = fastavro.schemaless_reader(buf, schema)
    return value, buf.tell()


# ------------------------------------------------------------------------------------ record generator


def _collect_named(schema: Any, named: dict[str, Any]) -> None:
    if isinstance(schema, list):
        for s in schema:
            _collect_named(s, named)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            named[schema["name"]] = schema
        for f in schema.get("fields", ()):
            _collect_named(f["type"], named)
        for key in ("items", "values"):
            if key in schema:
                _collect_named(schema[key], named)


def expected_back(schema: Any, value: Any, named: dict[str, Any]) -> Any:
    """What decoding should return for `value` (an oracle independent of fastavro)."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        if value is None:
            return None
        (other,) = [s for s in schema if s != "null"]
        return expected_back(other, value, named)
    if isinstance(schema, dict) and schema.get("logicalType") == "timestamp-millis":
        if isinstance(value, datetime):
            return value.replace(microsecond=value.microsecond // 1000 * 1000).astimezone(UTC)
        return EPOCH + timedelta(milliseconds=value)
    t = schema if isinstance(schema, str) else schema["type"]
    if t == "array":
        return [expected_back(schema["items"], v, named) for v in value]
    if t == "map":
        return {k: expected_back(schema["values"], v, named) for k, v in value.items()}
    if t == "record":
        return {
            f["name"]: expected_back(f["type"], value[f["name"]] if f["name"] in value else f["default"], named)
            for f in schema["fields"]
        }
    return value


class Gen:
    """Random values for a parsed schema (named types resolved as they are met, like the schema parser)."""

    def __init__(self, rng: random.Random, schema: Any) -> None:
        self.rng = rng
        self.named: dict[str, Any] = {}
        _collect_named(schema, self.named)

    def string(self) -> str:
        r = self.rng
        roll = r.random()
        if roll < 0.15:
            return ""
        if roll < 0.2:
            return "".join(r.choice(CHARS) for _ in range(r.randint(64, 300)))  # multi-byte length varint
        return "".join(r.choice(CHARS) for _ in range(r.randint(1, 12)))

    def size(self) -> int:
        """Mostly small collections; now and then one whose count needs a two-byte varint."""
        return 70 if self.rng.random() < 0.03 else self.rng.choice([0, 0, 1, 2, 3, 5])

    def integer(self, bits: int) -> int:
        r = self.rng
        edges = INT_EDGES if bits == 32 else LONG_EDGES
        if r.random() < 0.3:
            return r.choice(edges)
        top = 2 ** r.randint(1, bits - 1)
        return r.randrange(-top, top)

    def timestamp(self) -> int | datetime:
        r = self.rng
        roll = r.random()
        if roll < 0.3:
            return r.choice([0, 1, -1, 999, -1000, 1_717_171_717_171, MIN_MS, MAX_MS])
        if roll < 0.5:
            return r.randint(MIN_MS, MAX_MS)
        # An aware datetime (any offset, microsecond precision; encoding truncates to millis).
        us = r.randint(-2_208_988_800_000_000, 7_258_118_400_000_000)  # 1900 .. 2200
        return (EPOCH + timedelta(microseconds=us)).astimezone(r.choice(TZS))

    def value(self, schema: Any) -> Any:
        r = self.rng
        if isinstance(schema, str) and schema in self.named:
            schema = self.named[schema]
        if isinstance(schema, list):
            if "null" in schema and r.random() < 0.35:
                return None
            return self.value(r.choice([s for s in schema if s != "null"]))
        if isinstance(schema, dict) and schema.get("logicalType") == "timestamp-millis":
            return self.timestamp()
        t = schema if isinstance(schema, str) else schema["type"]
        if t == "string":
            return self.string()
        if t == "int":
            return self.integer(32)
        if t == "long":
            return self.integer(63)
        if t == "boolean":
            return r.random() < 0.5
        if t == "null":
            return None
        if t == "enum":
            self.named[schema["name"]] = schema
            return r.choice(schema["symbols"])
        if t == "array":
            return [self.value(schema["items"]) for _ in range(self.size())]
        if t == "map":
            return {self.string(): self.value(schema["values"]) for _ in range(self.size())}
        if t == "record":
            self.named[schema["name"]] = schema
            out = {}
            for f in schema["fields"]:
                if "default" in f and r.random() < 0.15:
                    continue  # leave it to the default
                out[f["name"]] = self.value(f["type"])
            return out
        raise AssertionError(f"generator does not know {t!r}")


# ------------------------------------------------------------------------------------------ the tests


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=[p.stem for p in SCHEMA_PATHS])
def test_generated_codecs_match_fastavro_on_random_records(path: Path) -> None:
    schema = parsed(path)
    encode, decode = compile_encoder(schema), compile_decoder(schema)
    rng = random.Random(path.stem)
    prefix = b"\xc3\x01prefix!!"
    for n in range(RECORDS_PER_SCHEMA):
        record = Gen(rng, schema).value(schema)
        data = encode(record)
        assert data == fa_encode(schema, record), (n, record)
        expected, end = fa_decode(schema, data)
        assert end == len(data)
        got = decode(data, 0)
        assert got == (expected, len(data)), (n, record)
        # Decoding starts at the given position and reports where the record ends.
        assert decode(prefix + data, len(prefix)) == (expected, len(prefix) + len(data))
        assert decode(data + b"\x00trailing", 0) == (expected, len(data))


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=[p.stem for p in SCHEMA_PATHS])
def test_decoded_values_are_what_was_encoded(path: Path) -> None:
    """Independent of fastavro: defaults fill omitted fields, timestamps come back as aware UTC datetimes."""
    schema = parsed(path)
    encode, decode = compile_encoder(schema), compile_decoder(schema)
    rng = random.Random("values" + path.stem)
    named: dict[str, Any] = {}
    _collect_named(schema, named)
    for n in range(200):
        record = Gen(rng, schema).value(schema)
        got, _ = decode(encode(record), 0)
        assert got == expected_back(schema, record, named), (n, record)
        for value in got.values():
            if isinstance(value, datetime):
                assert value.tzinfo is not None and value.utcoffset() == timedelta(0)


LONG_SCHEMA = fastavro.parse_schema({"type": "record", "name": "L", "fields": [{"name": "v", "type": "long"}]})


@pytest.mark.parametrize("n", [*LONG_EDGES, 2**63 - 1, -(2**63)])
def test_varint_edges(n: int) -> None:
    data = _long(n)
    assert compile_encoder(LONG_SCHEMA)({"v": n}) == data == fa_encode(LONG_SCHEMA, {"v": n})
    assert _read_long(data, 0) == (n, len(data))
    assert compile_decoder(LONG_SCHEMA)(data, 0) == ({"v": n}, len(data))


def test_varint_round_trip_over_many_magnitudes() -> None:
    rng = random.Random(7)
    decode = compile_decoder(LONG_SCHEMA)
    for _ in range(5000):
        top = 2 ** rng.randint(1, 62)
        n = rng.randrange(-top, top + 1)
        data = _long(n)
        assert data == fa_encode(LONG_SCHEMA, {"v": n})
        assert decode(data, 0) == ({"v": n}, len(data))


TS_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "T",
        "fields": [
            {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {"name": "maybe", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}]},
        ],
    }
)


@pytest.mark.parametrize(
    "value",
    [
        0,
        -1,
        1_717_171_717_171,
        datetime(2024, 5, 31, 16, 8, 37, 171_999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1901, 1, 1, 0, 0, 0, 1, tzinfo=timezone(timedelta(hours=-3))),
        datetime(2100, 2, 28, 23, 0, 0, 500, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_timestamp_millis_matches_fastavro(value: int | datetime) -> None:
    record = {"at": value, "maybe": value}
    data = compile_encoder(TS_SCHEMA)(record)
    assert data == fa_encode(TS_SCHEMA, record)
    got, _ = compile_decoder(TS_SCHEMA)(data, 0)
    assert got == fa_decode(TS_SCHEMA, data)[0]
    assert got["at"].tzinfo is not None and got["at"].utcoffset() == timedelta(0)
    assert got["maybe"] == got["at"]


def test_naive_datetimes_are_taken_as_utc() -> None:
    encode = compile_encoder(TS_SCHEMA)
    naive = datetime(2024, 5, 31, 16, 8, 37, 171_000)
    assert encode({"at": naive, "maybe": None}) == encode({"at": naive.replace(tzinfo=UTC), "maybe": None})


SYNTHETIC = {
    "type": "record",
    "name": "Everything",
    "namespace": "org.test",
    "fields": [
        {"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": [f"C{i}" for i in range(70)]}},
        {"name": "other_colour", "type": "org.test.Colour"},
        {"name": "null_last", "type": ["string", "null"]},
        {"name": "flags", "type": {"type": "array", "items": "boolean"}},
        {
            "name": "nested",
            "type": {
                "type": "map",
                "values": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Inner",
                        "fields": [{"name": "n", "type": ["null", "long"]}, {"name": "s", "type": "string"}],
                    },
                },
            },
        },
        {"name": "inner_again", "type": ["null", "org.test.Inner"], "default": None},
        {"name": "when", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": None},
    ],
}


def test_synthetic_schema_with_named_references_and_nesting_matches_fastavro() -> None:
    schema = fastavro.parse_schema(SYNTHETIC)
    encode, decode = compile_encoder(schema), compile_decoder(schema)
    rng = random.Random(11)
    for n in range(300):
        record = Gen(rng, schema).value(schema)
        data = encode(record)
        assert data == fa_encode(schema, record), (n, record)
        assert decode(data, 0) == (fa_decode(schema, data)[0], len(data)), (n, record)


def test_negative_block_counts_written_by_other_encoders_are_read() -> None:
    """Avro lets a writer give a negative block count followed by the block's byte size."""
    schema = fastavro.parse_schema(
        {"type": "record", "name": "A", "fields": [{"name": "xs", "type": {"type": "array", "items": "int"}}]}
    )
    items = _long(5) + _long(-7)
    data = _long(-2) + _long(len(items)) + items + _long(1) + _long(300) + _long(0)
    assert compile_decoder(schema)(data, 0) == ({"xs": [5, -7, 300]}, len(data))
    assert fa_decode(schema, data) == ({"xs": [5, -7, 300]}, len(data))


def test_unsupported_unions_are_refused_at_compile_time() -> None:
    schema = fastavro.parse_schema(
        {"type": "record", "name": "U", "fields": [{"name": "u", "type": ["null", "string", "int"]}]}
    )
    with pytest.raises(UnsupportedSchema):
        compile_encoder(schema)
    with pytest.raises(UnsupportedSchema):
        compile_decoder(schema)


# ------------------------------------------------------------------------------------ corrupt bodies

COURSE_PROGRESS = parsed(SCHEMA_DIR / "CourseProgress.avsc")
TWO_MB_OF_FF = b"\xff" * (2 * 1024 * 1024)


def _our_decoder_rejects(schema: Any, data: bytes) -> DecodeError:
    """Our decoders refuse bad bytes with the codec's DecodeError, and nothing else."""
    with pytest.raises(DecodeError) as info:
        compile_decoder(schema)(data, 0)
    assert info.value.reason == "CORRUPT_BODY"
    return info.value


def test_negative_string_length_is_rejected_like_fastavro() -> None:
    body = b"\x01\x00\x00"
    with pytest.raises(EOFError):  # fastavro: "Expected -1 bytes, read 2"
        fa_decode(COURSE_PROGRESS, body)
    assert "string length -1" in _our_decoder_rejects(COURSE_PROGRESS, body).detail


def test_union_branch_index_out_of_range_is_rejected_like_fastavro() -> None:
    good = compile_encoder(COURSE_PROGRESS)(
        {"batch_id": "a", "user_id": "b", "progress": 1, "completed_at": 0, "updated_at": 0}
    )
    assert good == b"\x02a\x02b\x02\x02\x00\x00"
    body = good[:5] + b"\x04" + good[6:]  # completed_at: branch 2 instead of 1
    with pytest.raises(IndexError):  # fastavro indexes its list of branches
        fa_decode(COURSE_PROGRESS, body)
    assert "union branch" in _our_decoder_rejects(COURSE_PROGRESS, body).detail


def test_a_body_that_ends_early_is_rejected_like_fastavro() -> None:
    good = compile_encoder(COURSE_PROGRESS)(
        {"batch_id": "a", "user_id": "b", "progress": 1, "completed_at": 0, "updated_at": 0}
    )
    for cut in range(len(good)):
        with pytest.raises(EOFError):
            fa_decode(COURSE_PROGRESS, good[:cut])
        _our_decoder_rejects(COURSE_PROGRESS, good[:cut])


def test_invalid_utf8_is_rejected_like_fastavro() -> None:
    body = b"\x04\xff\xfe\x02b\x02\x00\x00"
    with pytest.raises(UnicodeDecodeError):
        fa_decode(COURSE_PROGRESS, body)
    assert "UnicodeDecodeError" in _our_decoder_rejects(COURSE_PROGRESS, body).detail


def test_a_timestamp_beyond_the_datetime_range_is_rejected_like_fastavro() -> None:
    body = _long(2**62)
    with pytest.raises(OverflowError):
        fa_decode(TS_SCHEMA, body)
    assert "OverflowError" in _our_decoder_rejects(TS_SCHEMA, body).detail


@pytest.mark.parametrize(
    "data",
    [b"\x80" * 10 + b"\x01", b"\xff" * 10 + b"\x00", b"\x80" * 10, b"\xff" * 64],
    ids=["11-bytes", "11-bytes-all-set", "10-continuations", "64-bytes"],
)
def test_a_varint_longer_than_10_bytes_is_refused(data: bytes) -> None:
    """fastavro reads on (b"\\x80" * 10 + b"\\x01" is 32 to it); 64 bits never need more than 10 bytes."""
    assert "varint longer than 10 bytes at byte 0" in _our_decoder_rejects(LONG_SCHEMA, data).detail
    with pytest.raises(DecodeError):
        _read_long(data, 0)


def test_a_10_byte_varint_beyond_64_bits_is_refused() -> None:
    biggest = b"\xfe" + b"\xff" * 8 + b"\x01"  # 2**63 - 1, the largest long
    assert compile_decoder(LONG_SCHEMA)(biggest, 0) == ({"v": 2**63 - 1}, 10)
    for last in (b"\x02", b"\x7f"):
        assert "beyond 64 bits" in _our_decoder_rejects(LONG_SCHEMA, biggest[:9] + last).detail


BOOL_SCHEMA = fastavro.parse_schema({"type": "record", "name": "B", "fields": [{"name": "v", "type": "boolean"}]})


def test_boolean_bytes_other_than_0_and_1_are_refused() -> None:
    decode = compile_decoder(BOOL_SCHEMA)
    assert decode(b"\x00", 0) == ({"v": False}, 1)
    assert decode(b"\x01", 0) == ({"v": True}, 1)
    assert fa_decode(BOOL_SCHEMA, b"\x05") == ({"v": True}, 1)  # fastavro is lenient here; we are not
    for byte in (2, 5, 0x80, 0xFF):
        assert f"boolean byte {byte}" in _our_decoder_rejects(BOOL_SCHEMA, bytes([byte])).detail


ENUM_SCHEMA = fastavro.parse_schema(
    {
        "type": "record",
        "name": "E",
        "fields": [
            {"name": "small", "type": {"type": "enum", "name": "Small", "symbols": ["A", "B", "C"]}},
            {"name": "big", "type": {"type": "enum", "name": "Big", "symbols": [f"S{i}" for i in range(70)]}},
        ],
    }
)


def test_enum_indexes_out_of_range_are_refused() -> None:
    decode = compile_decoder(ENUM_SCHEMA)
    assert decode(_long(2) + _long(69), 0) == ({"small": "C", "big": "S69"}, 3)  # 69 takes two bytes
    assert fa_decode(ENUM_SCHEMA, _long(-1) + _long(0)) == ({"small": "C", "big": "S0"}, 2)  # fastavro wraps
    for small, big, refused in [(-1, 0, -1), (3, 0, 3), (-100, 0, -100), (0, -1, -1), (0, 70, 70), (0, 2**40, 2**40)]:
        error = _our_decoder_rejects(ENUM_SCHEMA, _long(small) + _long(big))
        assert f"enum index {refused} out of range" in error.detail


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=[p.stem for p in SCHEMA_PATHS])
def test_2_mb_of_ff_is_refused_after_10_bytes(path: Path) -> None:
    """Every schema starts with a varint; reading 2 MB of continuation bytes as one number was quadratic."""
    schema = parsed(path)
    assert "varint longer than 10 bytes at byte 0" in _our_decoder_rejects(schema, TWO_MB_OF_FF).detail
    with pytest.raises(DecodeError) as info:
        compile_decoder(schema)(b"\xc3\x01prefix!!" + TWO_MB_OF_FF, 10)
    assert "at byte 10" in info.value.detail


def _mutations(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    kind = rng.randrange(5)
    i = rng.randrange(len(b) + 1)
    if kind == 0:
        del b[i:]
    elif kind == 1 and b:
        b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
    elif kind == 2:
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3)))
    elif kind == 3:
        b[i:i] = b"\xff" * rng.randint(9, 40)
    else:
        b[i : i + 1] = _long(rng.randint(-(2**63), 2**63 - 1))
    return bytes(b)


@pytest.mark.parametrize("path", SCHEMA_PATHS, ids=[p.stem for p in SCHEMA_PATHS])
def test_fuzzed_bodies_decode_or_raise_decode_error_only(path: Path) -> None:
    """Straight at the generated decoder (the codec would wrap any other exception and hide it)."""
    schema = parsed(path)
    encode, decode = compile_encoder(schema), compile_decoder(schema)
    rng = random.Random("fuzz" + path.stem)
    refused = 0
    for n in range(300):
        data = _mutations(rng, encode(Gen(rng, schema).value(schema)))
        try:
            value, end = decode(data, 0)
        except DecodeError as error:
            assert error.reason == "CORRUPT_BODY", (n, data.hex())
            refused += 1
        else:
            assert isinstance(value, dict) and 0 < end <= len(data), (n, data.hex())
    assert refused > 100  # the mutations really reach the checks


def test_the_varint_table_grows_on_demand_and_matches_the_plain_encoding() -> None:
    from enrolment.messages import avro_fast

    for n in [0, 63, 64, 1023, 1024, 1025, 4096, 10_001, 65_535, 65_536, 1 << 40, -1, -65_536]:
        assert avro_fast._long(n) == avro_fast._varint(n)
    assert all(avro_fast._TABLE[i] == avro_fast._varint(i) for i in range(len(avro_fast._TABLE)))
