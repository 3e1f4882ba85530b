"""The single error type the protocol layer raises for bad input."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Frames or a message that do not follow the taskfate wire format.

    Every failure to decode untrusted input surfaces as this type, with a
    human-readable ``reason``, so a transport can catch one class, log it and
    drop the frame without ever losing its I/O thread to an unexpected
    ``IndexError`` or ``UnicodeDecodeError``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
