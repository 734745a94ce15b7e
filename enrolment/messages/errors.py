"""The one decoding error, raised by the codec and by the generated decoders beneath it."""

from __future__ import annotations


class DecodeError(Exception):
    """Bytes that cannot be decoded; ``reason`` is a stable code for dead-letter headers."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
