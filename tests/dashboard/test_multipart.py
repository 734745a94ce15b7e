"""The streaming multipart reader: the file field whatever the chunking, other fields skipped, errors as sentences."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest

from dashboard.web.multipart import MultipartError, read_file_field

CT = "multipart/form-data; boundary=XyZ"
BODY = (
    b'preamble\r\n--XyZ\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
    b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="b.csv"\r\nContent-Type: text/csv\r\n\r\n'
    b'batchId,userIds\r\nb1,"u1,u2"\r\n--XyA-not-the-boundary\r\n'
    b"\r\n--XyZ--\r\nepilogue"
)
FILE = b'batchId,userIds\r\nb1,"u1,u2"\r\n--XyA-not-the-boundary\r\n'


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def read(data: bytes, size: int, content_type: str = CT) -> tuple[str, bytes]:
    out = io.BytesIO()
    name = asyncio.run(read_file_field(chunks(data, size), content_type, "file", out))
    return name, out.getvalue()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10_000])
def test_the_file_field_whatever_the_chunks(size: int) -> None:
    assert read(BODY, size) == ("b.csv", FILE)


@pytest.mark.parametrize(
    ("body", "content_type", "says"),
    [
        (BODY, "application/json", "multipart/form-data"),
        (BODY.replace(b'name="file"', b'name="other"'), CT, "no field named file"),
        (BODY[:-15], CT, "ends before"),
    ],
)
def test_refusals(body: bytes, content_type: str, says: str) -> None:
    with pytest.raises(MultipartError, match=says):
        read(body, 5, content_type)
