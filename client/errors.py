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


class ResultDecodeError(Exception):
    """The task succeeded but its result payload could not be deserialized."""
