"""Errors a taskfate future can hold or raise."""

from __future__ import annotations


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
