"""A small streaming reader of `multipart/form-data` bodies: one file field to a temporary file.

Starlette's form parsing needs a package we do not ship; Sunbird's bulk API sends its CSV as a multipart
field `file`, so this reads the body as it arrives, keeps at most a chunk and a delimiter in memory, writes
the named field's bytes to ``out`` and skips every other part.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.message import Message
from typing import BinaryIO

MAX_HEADER_BYTES = 16 * 1024


class MultipartError(Exception):
    """The body is not the multipart form we need (a sentence for the 400)."""


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a `multipart/form-data` Content-Type; MultipartError otherwise."""
    msg = Message()
    msg["content-type"] = content_type or ""
    boundary = msg.get_param("boundary")
    if msg.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        raise MultipartError("Send the file as multipart/form-data with a field named file.")
    return boundary.encode("latin-1")


def _disposition(raw: bytes) -> tuple[str | None, str | None]:
    """(field name, file name) of a part's headers."""
    msg = Message()
    for line in raw.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            msg[name.strip()] = value.strip()
    field = msg.get_param("name", header="content-disposition")
    filename = msg.get_param("filename", header="content-disposition")
    return (field if isinstance(field, str) else None), (filename if isinstance(filename, str) else None)


class _Reader:
    """The parser's state: the bytes not yet consumed and where the wanted field goes."""

    def __init__(self, boundary: bytes, field: str, out: BinaryIO) -> None:
        self.delimiter = b"\r\n--" + boundary
        self.buf = b"\r\n"  # so that the first boundary reads like every other one
        self.field = field
        self.out = out
        self.state = "preamble"
        self.writing = False
        self.found: str | None = None
        self.seen = False

    def feed(self, chunk: bytes) -> None:
        self.buf += chunk
        while self._step():
            pass

    def _step(self) -> bool:
        """Consumes what it can of the buffer; False when it needs more bytes."""
        if self.state in ("preamble", "body"):
            at = self.buf.find(self.delimiter)
            if at < 0:
                keep = len(self.delimiter) + 1
                if self.writing and len(self.buf) > keep:
                    self.out.write(self.buf[:-keep])
                self.buf = self.buf[-keep:]
                return False
            if self.writing:
                self.out.write(self.buf[:at])
            self.buf, self.state, self.writing = self.buf[at + len(self.delimiter) :], "after", False
            return True
        if self.state == "after":
            if len(self.buf) < 2:
                return False
            self.state = "end" if self.buf[:2] == b"--" else "headers"
            self.buf = self.buf[2:] if self.state == "end" else self.buf.partition(b"\r\n")[2]
            return self.state != "end"
        if self.state == "headers":
            raw, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                if len(self.buf) > MAX_HEADER_BYTES:
                    raise MultipartError("A part of the form has over-long headers.")
                return False
            name, filename = _disposition(raw)
            self.writing = name == self.field and not self.seen
            if self.writing:
                self.seen, self.found = True, filename or ""
            self.buf, self.state = rest, "body"
            return True
        self.buf = b""  # the epilogue is ignored
        return False


async def read_file_field(chunks: AsyncIterator[bytes], content_type: str | None, field: str, out: BinaryIO) -> str:
    """Streams field ``field`` of the body into ``out``; its file name ("" when none) or MultipartError."""
    reader = _Reader(boundary_of(content_type), field, out)
    async for chunk in chunks:
        reader.feed(chunk)
    if reader.found is None:
        raise MultipartError(f"The form has no field named {field}.")
    if reader.state != "end":
        raise MultipartError("The multipart body ends before its closing boundary.")
    return reader.found
