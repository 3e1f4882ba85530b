"""The payload convention of the reference scheduler: calls and their errors.

The wire codec treats payloads as opaque bytes; this module says what the
reference client and scheduler put in them. A task payload is a
cloudpickled ``(fn, args, kwargs)``; for a graph node, positional and keyword
arguments may hold :class:`Dependency` placeholders, replaced by the results
of the task's ``dependencies`` (in order) before the call. A result payload is
the pickled return value (``SUCCESS``) or the pickled exception (``FAILED``).

Loading these payloads runs code: they are exchanged only between a client
and the scheduler and workers it trusts.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle


@dataclass(frozen=True)
class Dependency:
    """Stands for the result of the task's ``index``-th dependency."""

    index: int


class DependencyFailed(Exception):
    """A graph node could not run because a node it depends on failed or was
    cancelled. ``dependency`` is that node's task id (hex); ``key`` its graph
    key when the client knows it."""

    def __init__(self, dependency: str, reason: str, key: object = None) -> None:
        super().__init__(dependency, reason, key)
        self.dependency = dependency
        self.reason = reason
        self.key = key

    def __str__(self) -> str:
        node = f"{self.key!r} ({self.dependency})" if self.key is not None else self.dependency
        return f"dependency {node} {self.reason}"


def dump_call(fn: Callable[..., Any], args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None) -> bytes:
    """The payload for calling ``fn(*args, **kwargs)``; lambdas and local
    functions travel by value (cloudpickle)."""
    payload: bytes = cloudpickle.dumps((fn, tuple(args), dict(kwargs or {})), protocol=pickle.HIGHEST_PROTOCOL)
    return payload


def load_call(payload: bytes) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """The ``(fn, args, kwargs)`` in ``payload``; raises what unpickling raises,
    or ``TypeError`` when the payload is not a call."""
    call = pickle.loads(payload)
    if not (isinstance(call, tuple) and len(call) == 3 and callable(call[0])):
        raise TypeError(f"task payload is not a (fn, args, kwargs) call: {type(call).__name__}")
    fn, args, kwargs = call
    return fn, tuple(args), dict(kwargs)


def bind_dependencies(args: tuple[Any, ...], kwargs: dict[str, Any], results: Sequence[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``args``/``kwargs`` with every top-level :class:`Dependency` replaced."""

    def resolve(value: Any) -> Any:
        return results[value.index] if isinstance(value, Dependency) else value

    return tuple(resolve(a) for a in args), {k: resolve(v) for k, v in kwargs.items()}


def dump_value(value: Any) -> bytes:
    return cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)  # type: ignore[no-any-return]


def dump_error(error: BaseException) -> bytes:
    """The pickled exception; if it cannot be pickled, a ``RuntimeError``
    carrying its type and text, so a failure always reaches the client."""
    try:
        return dump_value(error)
    except Exception:
        return dump_value(RuntimeError(f"{type(error).__name__}: {error}"))
