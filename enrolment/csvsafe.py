"""CSV cells safe to open in a spreadsheet: formulas neutralised (CSV injection), by one writer for every CSV.

A spreadsheet runs a cell as a formula when it starts with ``=``, ``+``, ``-`` or ``@`` (a leading tab or
carriage return is refused too, as OWASP advises). Look-alikes and hidden prefixes must not slip past, so
the decision is made on the text as a spreadsheet may see it:

- NFKC normalisation first: full-width ``＝＋－＠`` (U+FF1D, U+FF0B, U+FF0D, U+FF20), the small forms
  ``﹦﹢﹣﹫`` and super/subscript ``⁺⁼₊₌`` all become the ASCII characters; U+2212 MINUS SIGN, which NFKC
  keeps, is treated as ``-`` (number parsers accept it);
- then leading characters nobody sees are skipped: every format character (Unicode category Cf — the BOM
  U+FEFF, zero-width space U+200B, zero-width (non-)joiners, word joiner U+2060, soft hyphen, bidi marks and
  embeddings), every space separator (Zs — spaces, no-break spaces, U+3000; some spreadsheets trim them),
  line/paragraph separators (Zl, Zp) and control characters (Cc, e.g. a leading LF).

Only the decision uses the normalised text: the cell keeps its original text, prefixed with a quote.
"""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Iterable
from typing import TextIO

BOM = "\ufeff"
_DANGEROUS = frozenset("=+-@\u2212\t\r")
_INVISIBLE = frozenset({"Cf", "Zs", "Zl", "Zp", "Cc"})


def _visible_start(text: str) -> str:
    """The first character a spreadsheet would act on: after NFKC, skipping invisible ones (tab and CR count)."""
    for char in unicodedata.normalize("NFKC", text):
        if char in _DANGEROUS or unicodedata.category(char) not in _INVISIBLE:
            return char
    return ""


def is_formula(text: str) -> bool:
    """Would a spreadsheet treat ``text`` as a formula (or a control-led cell)?"""
    if text[:1].isascii() and text[:1].isalnum():
        return False  # the common case, decided without normalising
    return _visible_start(text) in _DANGEROUS


def cell(value: object) -> str:
    """The value as text, with a quote prefixed when a spreadsheet would read it as a formula."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if is_formula(text) else text


class Writer:
    """``csv.writer`` that passes every cell through :func:`cell`: the one way we write a CSV."""

    def __init__(self, out: TextIO, *, bom: bool = True) -> None:
        if bom:
            out.write(BOM)
        self._writer = csv.writer(out, lineterminator="\r\n")

    def writerow(self, values: Iterable[object]) -> None:
        self._writer.writerow([cell(v) for v in values])


def writer(out: TextIO, *, bom: bool = True) -> Writer:
    """A guarded CSV writer on ``out``: UTF-8 BOM first (spreadsheets then read UTF-8), CRLF line ends."""
    return Writer(out, bom=bom)
