"""Futures driven by the declared lifecycle, and the manager that routes to them.

This is the only layer that waits, runs threads or (with the transport) does
I/O. ``FutureManager`` is sans-I/O: give it a ``send`` callable and feed it
messages with ``on_message``.
"""

from taskfate.client.client import Client, CloudpickleSerializer
from taskfate.client.errors import ConnectionLost, ResultDecodeError, TaskFailed, WorkerDied
from taskfate.client.future import Future, Step
from taskfate.client.manager import DEFAULT_CANCEL_TIMEOUT, FutureManager
from taskfate.client.serializer import PickleSerializer, Serializer

__all__ = [
    "Client",
    "CloudpickleSerializer",
    "DEFAULT_CANCEL_TIMEOUT",
    "ConnectionLost",
    "Future",
    "FutureManager",
    "PickleSerializer",
    "ResultDecodeError",
    "Serializer",
    "Step",
    "TaskFailed",
    "WorkerDied",
]
