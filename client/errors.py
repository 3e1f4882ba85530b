"""Errors a taskfate future can hold or raise.

Every exception class a user of ``taskfate.client`` may need to catch is
importable from it: the ones defined here, and two the lower layers define,
re-exported here: ``DependencyFailed`` (a graph node whose dependency failed
or was cancelled; the scheduler raises it, so it lives with the payload
convention in ``taskfate.protocol.calls``) and ``ProtocolError`` (frames that
do not decode, raised by ``taskfate.protocol.decode`` to a library that runs
its own transport). A cancelled future raises the standard library's
``concurrent.futures.CancelledError``, and a wait that runs out its
``TimeoutError``, as any ``concurrent.futures.Future`` does.
"""

from __future__ import annotations

from taskfate.protocol.calls import DependencyFailed
from taskfate.protocol.errors import ProtocolError

__all__ = [
    "AuthenticationFailed",
    "ConnectionLost",
    "DependencyFailed",
    "ProtocolError",
    "ResultDecodeError",
    "TaskFailed",
    "WorkerDied",
]


class TaskFailed(Exception):
    """The task ended in failure and its own exception could not be shown.

    Raised by ``result()`` when the scheduler reported a failure whose payload
    did not decode to an exception instance.
    """


class WorkerDied(TaskFailed):
    """The worker running the task died before the task ended."""


class ConnectionLost(ConnectionError):
    """The connection to the scheduler was lost while the task was live.

    Nothing more can arrive for the task, so its future fails with this
    rather than waiting for an answer that cannot come.
    """


class AuthenticationFailed(ConnectionLost):
    """The scheduler refused this client's connection at the handshake.

    With CURVE: the scheduler does not admit this client's public key (its
    certificate is not in the scheduler's ``--curve-clients`` directory),
    the client holds the wrong server key, or one side uses CURVE and the
    other does not. Every live future fails with it, and so does each later
    one while the refusals go on: nothing the client sends is delivered.
    """


class ResultDecodeError(Exception):
    """The task succeeded but its result payload could not be deserialized."""
