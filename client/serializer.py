"""Payload serializers: how result and task payloads become objects.

The protocol layer treats payloads as opaque bytes; the manager hands them to
a serializer only when a user reads a result. The default is pickle, which
executes code while loading: use it only with a scheduler you trust (the
peers of a taskfate client are its own scheduler and workers).
"""

from __future__ import annotations

import pickle
from typing import Any, Protocol


class Serializer(Protocol):
    """Anything with ``dumps`` and ``loads`` (``pickle``, ``cloudpickle``...)."""

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class PickleSerializer:
    """Standard pickle at the highest protocol. Trusted peers only."""

    def dumps(self, obj: Any) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)
