"""Futures driven by the declared lifecycle, and the manager that routes to them.

This is the only layer that waits, runs threads or (with the transport) does
I/O. ``FutureManager`` is sans-I/O: give it a ``send`` callable and feed it
messages with ``on_message``. Every exception a user may catch is
importable from here (``taskfate.client.errors`` lists them).
"""

from taskfate.client.client import Client, CloudpickleSerializer
from taskfate.client.errors import (
    AuthenticationFailed,
    ConnectionLost,
    DependencyFailed,
    ProtocolError,
    ResultDecodeError,
    TaskFailed,
    WorkerDied,
)
from taskfate.client.future import Future, Step
from taskfate.client.manager import DEFAULT_CANCEL_TIMEOUT, FutureManager
from taskfate.client.serializer import PickleSerializer, Serializer

__all__ = [
    "AuthenticationFailed",
    "Client",
    "CloudpickleSerializer",
    "DEFAULT_CANCEL_TIMEOUT",
    "ConnectionLost",
    "DependencyFailed",
    "Future",
    "FutureManager",
    "PickleSerializer",
    "ProtocolError",
    "ResultDecodeError",
    "Serializer",
    "Step",
    "TaskFailed",
    "WorkerDied",
]
