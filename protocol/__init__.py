"""The wire vocabulary shared by a taskfate client and a scheduler.

This layer is pure: message types, their enums and the codec that turns them
into ZeroMQ multipart frames and back. It opens no socket and knows nothing of
the future lifecycle, so both sides of the conversation (and tests, and
fuzzers) can use it without pulling in I/O.

Decoding bytes from the network raises exactly one error type,
:class:`ProtocolError`, whatever is wrong with them.
"""

from taskfate.protocol.codec import DEFAULT_MAX_DEPENDENCIES, DEFAULT_MAX_FRAME_SIZE, MAX_FRAMES, decode, encode
from taskfate.protocol.errors import ProtocolError
from taskfate.protocol.messages import (
    MAX_EPOCH,
    CancelConfirmType,
    ClientDisconnect,
    Heartbeat,
    Message,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskID,
    TaskResult,
    TaskResultType,
    TaskStarted,
)

__all__ = [
    "DEFAULT_MAX_DEPENDENCIES",
    "DEFAULT_MAX_FRAME_SIZE",
    "MAX_EPOCH",
    "MAX_FRAMES",
    "CancelConfirmType",
    "ClientDisconnect",
    "Heartbeat",
    "Message",
    "ProtocolError",
    "Task",
    "TaskCancel",
    "TaskCancelConfirm",
    "TaskID",
    "TaskResult",
    "TaskResultType",
    "TaskStarted",
    "decode",
    "encode",
]
