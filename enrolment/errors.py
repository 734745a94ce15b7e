"""Errors a user can fix, and the exit codes every `participants` command shares.

Scripts branch on the exit code, so it means the same for every command: 0 ok · 1 broker or database
unreachable · 2 unusable input or arguments (nothing was published) · 3 some rows rejected (or differences
found) · 4 --timeout reached before the last result.
"""

from __future__ import annotations

EXIT_OK, EXIT_UNREACHABLE, EXIT_INPUT, EXIT_REJECTED, EXIT_TIMEOUT = 0, 1, 2, 3, 4


class UserError(Exception):
    """A problem the user can fix; printed as one sentence with its exit code."""

    def __init__(self, message: str, code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.code = code
