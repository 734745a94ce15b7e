"""COPY text format, once: the processor's ledger and enrolments, imports and the store rebuild write with it.

Also the separator used to pass many ids as one delimited string (much cheaper than adapting a list per
element); it is a control character, which no producer path lets into an id.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

SEP = "\x1f"
_ESC = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_cell(value: object) -> str:
    """One COPY text-format cell: ``\\N`` for NULL, backslash/tab/newline/CR escaped, booleans as t/f."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return value.translate(_ESC)
        return value
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def copy_line(values: Iterable[object]) -> str:
    return "\t".join(copy_cell(v) for v in values) + "\n"


def copy_rows(cur: Any, target: str, rows: Iterable[Iterable[object]]) -> int:
    """COPY ``rows`` into ``target`` (``table (col, ...)``); returns the row count."""
    buf = io.StringIO()
    n = 0
    for row in rows:
        buf.write(copy_line(row))
        n += 1
    buf.seek(0)
    cur.copy_expert(f"COPY {target} FROM STDIN", buf)
    return n
