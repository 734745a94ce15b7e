"""CSV cells safe to open in a spreadsheet: formulas neutralised (CSV injection)."""

from __future__ import annotations

BOM = "\ufeff"
_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> str:
    """Prefixes a quote to text a spreadsheet would read as a formula."""
    if value is None:
        return ""
    text = str(value)
    if text.startswith(_DANGEROUS):
        return "'" + text
    return text
