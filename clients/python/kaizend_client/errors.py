"""The root of every error kaizend raises on purpose, and the two a producer meets.

kaizend's own error hierarchy (``kaizend.core.errors``) grows from :class:`KaizendError`
here, so ``except KaizendError`` catches the client's errors and the daemon's alike.
"""

from __future__ import annotations


class KaizendError(Exception):
    """Root of every error kaizend raises on purpose."""


class InvalidEvent(KaizendError, ValueError):
    """An event that kaizend would not store as it is; ``field`` names the (first) culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"field '{field}': {message}")
        self.field = field
