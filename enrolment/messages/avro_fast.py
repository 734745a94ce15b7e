"""Schema-specialised Avro binary encoders/decoders, generated as Python source from a parsed schema.

Why: fastavro's per-call set-up costs ~15 µs per small record, which dominates a processor that
handles tens of thousands of commands a second.  Code generated for one schema has no dispatch
left and runs several times faster.  Only the binary body is produced/consumed here; the
single-object header is added by `enrolment.messages.codec`.  Output is byte-identical to fastavro (tested);
schema *resolution* (writer ≠ reader) still goes through fastavro.

Decoders read untrusted bytes: anything that is not a valid body raises `DecodeError` (reason CORRUPT_BODY),
and no input costs more than linear time (a varint stops at 10 bytes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from enrolment.messages.errors import DecodeError
from enrolment.messages.millis import from_ms, to_ms


class UnsupportedSchema(ValueError):
    """A schema construct the generator does not handle (refused when the codec is built, never at run time)."""


Encoder = Callable[[dict[str, Any]], bytes]
Decoder = Callable[[bytes, int], tuple[dict[str, Any], int]]

_SMALL = [bytes([(n << 1)]) for n in range(64)]  # zig-zag varints of 0..63


def _varint(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z & ~0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


# Line numbers, counts, lengths: one lookup. Grown on demand up to 65,536 entries (building all of them costs
# 60-170 ms, paid at every `participants` start when it was built at import; most commands encode few longs).
_TABLE_SIZE = 1 << 16
_TABLE = [_varint(n) for n in range(1024)]
_last: list[Any] = [None, b""]  # timestamps repeat (one per upload, one per batch): remember the last


_GROWING = threading.Lock()


def _grow(n: int) -> None:
    """Extends the table past ``n`` (doubling, at most to _TABLE_SIZE); one thread at a time, so that entry i
    is always the varint of i."""
    with _GROWING:
        start = len(_TABLE)
        end = min(_TABLE_SIZE, max(n + 1, 2 * start))
        if end > start:
            _TABLE.extend([_varint(i) for i in range(start, end)])


def _long(n: int) -> bytes:
    if 0 <= n < _TABLE_SIZE:
        try:
            return _TABLE[n]
        except IndexError:  # not built that far yet
            _grow(n)
            return _TABLE[n]
    if n == _last[0]:
        return _last[1]  # type: ignore[no-any-return]
    b = _varint(n)
    _last[0], _last[1] = n, b
    return b


def _read_long(b: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint of at most 10 bytes (64 bits): a longer run is refused, not read (it would be quadratic)."""
    c = b[pos]
    pos += 1
    n = c & 0x7F
    shift = 7
    while c & 0x80:
        if shift == 70:
            raise DecodeError("CORRUPT_BODY", f"varint longer than 10 bytes at byte {pos - 10}")
        c = b[pos]
        pos += 1
        n |= (c & 0x7F) << shift
        shift += 7
    if n >> 64:
        raise DecodeError("CORRUPT_BODY", f"varint beyond 64 bits at byte {pos - 10}")
    return (n >> 1) ^ -(n & 1), pos


class _Gen:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {
            "_long": _long,
            "_read_long": _read_long,
            "_ts": to_ms,
            "_from_ms": from_ms,
            "_SMALL": _SMALL,
            "DecodeError": DecodeError,
        }
        self.counter = 0
        self.named: dict[str, Any] = {}

    def var(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: Any) -> str:
        name = self.var("_c")
        self.consts[name] = value
        return name

    # -------------------------------------------------------------- encoding
    def enc(self, schema: Any, expr: str, ind: str) -> None:
        L = self.lines.append
        if isinstance(schema, str):
            schema = self.named.get(schema, schema)
        if isinstance(schema, list):  # union
            if len(schema) == 2 and "null" in schema:
                other = schema[1] if schema[0] == "null" else schema[0]
                null_idx = schema.index("null")
                v = self.var("v")
                L(f"{ind}{v} = {expr}")
                L(f"{ind}if {v} is None:")
                L(f"{ind}    a({_SMALL[null_idx]!r})")
                L(f"{ind}else:")
                L(f"{ind}    a({_SMALL[1 - null_idx]!r})")
                self.enc(other, v, ind + "    ")
                return
            raise UnsupportedSchema("only [null, T] unions are generated")
        t = schema if isinstance(schema, str) else schema["type"]
        if isinstance(schema, dict) and schema.get("logicalType") == "timestamp-millis":
            L(f"{ind}a(_long(_ts({expr})))")
            return
        if t == "string":
            v, n = self.var("s"), self.var("n")
            L(f"{ind}{v} = {expr}.encode()")
            L(f"{ind}{n} = len({v})")
            L(f"{ind}a(_SMALL[{n}] if {n} < 64 else _long({n}))")
            L(f"{ind}a({v})")
        elif t in ("int", "long"):
            n = self.var("n")
            L(f"{ind}{n} = {expr}")
            L(f"{ind}a(_SMALL[{n}] if 0 <= {n} < 64 else _long({n}))")
        elif t == "boolean":
            L(f"{ind}a(b'\\x01' if {expr} else b'\\x00')")
        elif t == "null":
            pass
        elif t == "enum":
            idx = self.const({s: _SMALL[i] if i < 64 else _long(i) for i, s in enumerate(schema["symbols"])})
            self.named[schema["name"]] = schema
            L(f"{ind}a({idx}[{expr}])")
        elif t == "record":
            self.named[schema["name"]] = schema
            r = self.var("r")
            L(f"{ind}{r} = {expr}")
            for f in schema["fields"]:
                if "default" in f:
                    self.enc(f["type"], f"{r}.get({f['name']!r}, {self.const(f['default'])})", ind)
                else:
                    self.enc(f["type"], f"{r}[{f['name']!r}]", ind)
        elif t == "array":
            v, item = self.var("v"), self.var("i")
            L(f"{ind}{v} = {expr}")
            L(f"{ind}if {v}:")
            L(f"{ind}    a(_long(len({v})))")
            L(f"{ind}    for {item} in {v}:")
            self.enc(schema["items"], item, ind + "        ")
            L(f"{ind}a(b'\\x00')")
        elif t == "map":
            v, k, item = self.var("v"), self.var("k"), self.var("i")
            L(f"{ind}{v} = {expr}")
            L(f"{ind}if {v}:")
            L(f"{ind}    a(_long(len({v})))")
            L(f"{ind}    for {k}, {item} in {v}.items():")
            self.enc("string", k, ind + "        ")
            self.enc(schema["values"], item, ind + "        ")
            L(f"{ind}a(b'\\x00')")
        else:
            raise UnsupportedSchema(f"type {t!r}")

    # -------------------------------------------------------------- decoding
    def read_long(self, target: str, ind: str) -> None:
        """Inline fast path for one-byte varints (almost every length and small int)."""
        L = self.lines.append
        L(f"{ind}{target} = b[p]")
        L(f"{ind}if {target} < 128:")
        L(f"{ind}    p += 1")
        L(f"{ind}    {target} = ({target} >> 1) ^ -({target} & 1)")
        L(f"{ind}else:")
        L(f"{ind}    {target}, p = _read_long(b, p)")

    def dec(self, schema: Any, target: str, ind: str) -> None:
        """Emits code that reads one value into `target` (an assignable expression), advancing `p`."""
        L = self.lines.append
        if isinstance(schema, str):
            schema = self.named.get(schema, schema)
        if isinstance(schema, list):
            if len(schema) == 2 and "null" in schema:
                other = schema[1] if schema[0] == "null" else schema[0]
                null_idx = schema.index("null")
                L(f"{ind}if b[p] == {null_idx * 2}:")
                L(f"{ind}    p += 1")
                L(f"{ind}    {target} = None")
                L(f"{ind}elif b[p] == {(1 - null_idx) * 2}:")
                L(f"{ind}    p += 1")
                self.dec(other, target, ind + "    ")
                L(f"{ind}else:")
                L(f"{ind}    raise DecodeError('CORRUPT_BODY', f'union branch byte {{b[p]}} at byte {{p}}')")
                return
            raise UnsupportedSchema("only [null, T] unions are generated")
        t = schema if isinstance(schema, str) else schema["type"]
        if isinstance(schema, dict) and schema.get("logicalType") == "timestamp-millis":
            n = self.var("n")
            L(f"{ind}{n}, p = _read_long(b, p)")
            L(f"{ind}{target} = _from_ms({n})")
            return
        if t == "string":
            n = self.var("n")
            self.read_long(n, ind)
            L(f"{ind}if {n} < 0 or p + {n} > len(b):")
            L(f"{ind}    raise DecodeError('CORRUPT_BODY', f'string length {{{n}}} out of range at byte {{p}}')")
            L(f"{ind}{target} = b[p:p + {n}].decode()")
            L(f"{ind}p += {n}")
        elif t in ("int", "long"):
            n = self.var("n")
            self.read_long(n, ind)
            L(f"{ind}{target} = {n}")
        elif t == "boolean":
            v = self.var("v")
            L(f"{ind}{v} = b[p]")
            L(f"{ind}if {v} > 1:")
            L(f"{ind}    raise DecodeError('CORRUPT_BODY', f'boolean byte {{{v}}} at byte {{p}}')")
            L(f"{ind}{target} = {v} == 1")
            L(f"{ind}p += 1")
        elif t == "null":
            L(f"{ind}{target} = None")
        elif t == "enum":
            self.named[schema["name"]] = schema
            syms = self.const(tuple(schema["symbols"]))
            n = self.var("n")
            self.read_long(n, ind)
            L(f"{ind}if not 0 <= {n} < {len(schema['symbols'])}:")
            L(f"{ind}    raise DecodeError('CORRUPT_BODY', f'enum index {{{n}}} out of range before byte {{p}}')")
            L(f"{ind}{target} = {syms}[{n}]")
        elif t == "record":
            self.named[schema["name"]] = schema
            r = self.var("r")
            L(f"{ind}{r} = {{}}")
            for f in schema["fields"]:
                self.dec(f["type"], f"{r}[{f['name']!r}]", ind)
            L(f"{ind}{target} = {r}")
        elif t in ("array", "map"):
            out, n, i = self.var("o"), self.var("n"), self.var("i")
            L(f"{ind}{out} = [] if {t == 'array'} else {{}}")
            L(f"{ind}while True:")
            L(f"{ind}    {n}, p = _read_long(b, p)")
            L(f"{ind}    if {n} == 0:")
            L(f"{ind}        break")
            L(f"{ind}    if {n} < 0:")
            L(f"{ind}        {n} = -{n}")
            L(f"{ind}        _, p = _read_long(b, p)")
            L(f"{ind}    for {i} in range({n}):")
            if t == "array":
                tmp = self.var("x")
                self.dec(schema["items"], tmp, ind + "        ")
                L(f"{ind}        {out}.append({tmp})")
            else:
                k, tmp = self.var("k"), self.var("x")
                self.dec("string", k, ind + "        ")
                self.dec(schema["values"], tmp, ind + "        ")
                L(f"{ind}        {out}[{k}] = {tmp}")
            L(f"{ind}{target} = {out}")
        else:
            raise UnsupportedSchema(f"type {t!r}")


def compile_encoder(parsed: Any) -> Encoder:
    g = _Gen()
    g.lines.append("def encode(rec):")
    g.lines.append("    buf = []")
    g.lines.append("    a = buf.append")
    g.enc(parsed, "rec", "    ")
    g.lines.append("    return b''.join(buf)")
    ns = dict(g.consts)
    exec("\n".join(g.lines), ns)  # code generated from a trusted schema file
    fn: Encoder = ns["encode"]
    return fn


def compile_decoder(parsed: Any) -> Decoder:
    """Every failure on bad bytes is a DecodeError; the try costs nothing on the way through (Python 3.11+)."""
    g = _Gen()
    g.lines.append("def decode(b, p):")
    g.lines.append("    try:")
    g.dec(parsed, "result", "        ")
    g.lines.append("    except IndexError:")
    g.lines.append(
        "        raise DecodeError('CORRUPT_BODY', f'the body ends inside a value (at byte {len(b)})') from None"
    )
    g.lines.append("    except (UnicodeDecodeError, OverflowError) as exc:")
    g.lines.append("        raise DecodeError('CORRUPT_BODY', f'{type(exc).__name__}: {exc}') from None")
    g.lines.append("    return result, p")
    ns = dict(g.consts)
    exec("\n".join(g.lines), ns)
    fn: Decoder = ns["decode"]
    return fn
