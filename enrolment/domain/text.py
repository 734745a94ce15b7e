"""The one rule for text that enters the pipeline: no control characters (pure, no I/O).

Ids and text fields of every producer path (uploads, the upload API, UI edits, the Sunbird API, progress
publishing, users/batches imports) and of every decoded input message are refused when they hold a C0 or C1
control character (U+0000..U+001F, U+007F..U+009F; NUL, tab and line breaks included): PostgreSQL cannot
store NUL at all, and the others break CSV reports, logs and terminals. The refusal carries one reason code,
``CONTROL_CHARACTER``, and a sentence naming the field and the character.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

CONTROL_CHARACTER = "CONTROL_CHARACTER"

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_NAMES = {0: "NUL", 9: "a tab", 10: "a line feed", 13: "a carriage return", 27: "ESC", 127: "DEL"}


class ControlCharacter(ValueError):
    """A field holds a control character: its name, the reason code and a sentence."""

    reason = CONTROL_CHARACTER

    def __init__(self, field: str, sentence: str) -> None:
        super().__init__(sentence)
        self.field = field
        self.sentence = sentence


def control_character(value: str) -> str | None:
    """The first control character of ``value``, if any (the fast path is one C-level scan)."""
    if value.isprintable():
        return None  # every control character is unprintable
    found = _CONTROL.search(value)
    return None if found is None else found.group()


def describe(char: str) -> str:
    """'NUL (U+0000)', 'a tab (U+0009)', 'a control character (U+0085)'."""
    code = ord(char)
    return f"{_NAMES.get(code, 'a control character')} (U+{code:04X})"


def control_sentence(field: str, value: str) -> str | None:
    """None when ``value`` is clean; otherwise the sentence that refuses it."""
    char = control_character(value)
    if char is None:
        return None
    return f"The {field} contains {describe(char)}; ids and text fields cannot contain control characters."


def refuse_control(fields: Mapping[str, str | None] | Iterable[tuple[str, str | None]]) -> None:
    """Raises ControlCharacter for the first field (name -> value; None is skipped) holding a control character."""
    items = fields.items() if isinstance(fields, Mapping) else fields
    for name, value in items:
        if value is None:
            continue
        sentence = control_sentence(name, value)
        if sentence is not None:
            raise ControlCharacter(name, sentence)


def printable(value: str) -> str:
    """``value`` with each control character written as an escape (\\u0000), safe to store and show."""
    if control_character(value) is None:
        return value
    return _CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
