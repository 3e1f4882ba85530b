"""Wire codec: messages to ZeroMQ multipart frames and back.

Layout (one bytes object per frame; the first frame is a two-byte tag)::

    Task               [b"TK", task_id, group_id or b"", payload, dependency ids]
    TaskCancel         [b"TC", task_id, flags]          flags: 1 byte, bit 0 = force
    TaskCancelConfirm  [b"CC", task_id, confirm_type]   1 byte
    TaskResult         [b"TR", task_id, result_type, payload]
    TaskStarted        [b"TS", task_id]
    Heartbeat          [b"HB"]
    ClientDisconnect   [b"DC"]

Task ids are exactly 16 bytes; the dependency frame is their concatenation.
Nothing here unpickles: payloads stay opaque bytes, so decoding hostile input
can cost at most a copy of frames that passed the size limit.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from taskfate.protocol.errors import ProtocolError
from taskfate.protocol.messages import (
    TASK_ID_SIZE,
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

#: Frames larger than this are refused by :func:`decode` unless the caller
#: passes another limit. Large enough for real payloads, small enough that a
#: garbage peer cannot make a client buffer gigabytes per message.
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024

#: Dependencies one ``Task`` may name, unless the caller passes another
#: limit. The dependency frame is the only count a frame carries, and each
#: id costs an object: without a bound, a frame just under the size limit
#: holds four million ids and takes seconds and hundreds of megabytes to
#: decode. The length of the frame is checked against this before any id
#: is built, so the worst acceptable ``Task`` decodes in about a millisecond
#: on a slow machine (``bench/messages.py`` prints the figure). A scheduler
#: that needs wider fan-in raises it (``Scheduler(max_dependencies=...)``).
DEFAULT_MAX_DEPENDENCIES = 1024

#: No message has more frames than a ``Task``; a frame list is refused on
#: its length before any frame is looked at beyond the first.
MAX_FRAMES = 5

_TASK = b"TK"
_CANCEL = b"TC"
_CONFIRM = b"CC"
_RESULT = b"TR"
_STARTED = b"TS"
_HEARTBEAT = b"HB"
_DISCONNECT = b"DC"

# Enum members indexed by wire value: a tuple index is the cheapest check that
# also rejects values out of range.
_CONFIRM_TYPES = tuple(CancelConfirmType)
_RESULT_TYPES = tuple(TaskResultType)
_BYTE = tuple(bytes((i,)) for i in range(256))
# The same members by their one-byte frame, for the fast paths: one lookup
# checks the frame's length and range and finds the member.
_RESULT_BY_CODE = {_BYTE[i]: member for i, member in enumerate(_RESULT_TYPES)}
_CONFIRM_BY_CODE = {_BYTE[i]: member for i, member in enumerate(_CONFIRM_TYPES)}


def _draft_class(cls: type[Any]) -> type[Any]:
    """A plain twin of the frozen message class ``cls``: the same slots, no
    ``__init__`` and no frozen ``__setattr__``.

    A frozen dataclass can only be filled through its generated ``__init__``
    or through its slot descriptors' ``__set__``, and both cost several
    calls per field. A draft is filled with plain attribute stores and then
    given the real class (``draft.__class__ = cls``, which Python allows
    between classes of the same layout): the result is an ordinary
    ``cls`` instance, equal to and indistinguishable from a constructed one.
    Used where messages are made in bulk: decoding results and confirms,
    and the ``TaskCancel`` a cancel sends. ``_check_drafts`` proves each
    twin at import.
    """
    namespace: dict[str, Any] = {"__module__": __name__, "__qualname__": f"{cls.__qualname__}Draft"}
    if "__slots__" in cls.__dict__:
        namespace["__slots__"] = cls.__slots__
    return type(f"{cls.__name__}Draft", (), namespace)


_ResultDraft = _draft_class(TaskResult)
_ConfirmDraft = _draft_class(TaskCancelConfirm)
_CancelDraft = _draft_class(TaskCancel)


def _new_result(task_id: TaskID, result_type: TaskResultType, payload: bytes) -> TaskResult:
    """``TaskResult(task_id, result_type, payload)``, for arguments the codec
    has already checked, without the dataclass ``__init__``. ``decode``'s
    fast path writes this body in place (its hottest loop): keep the two
    alike; ``tests/test_codec_fast_path.py`` compares what both build."""
    message = _ResultDraft()
    message.task_id = task_id
    message.result_type = result_type
    message.payload = payload
    message.__class__ = TaskResult
    return message  # type: ignore[no-any-return]


def _new_confirm(task_id: TaskID, confirm_type: CancelConfirmType) -> TaskCancelConfirm:
    """``TaskCancelConfirm(task_id, confirm_type)``, as ``_new_result`` (and
    written in place by ``decode`` the same way)."""
    message = _ConfirmDraft()
    message.task_id = task_id
    message.confirm_type = confirm_type
    message.__class__ = TaskCancelConfirm
    return message  # type: ignore[no-any-return]


def _new_cancel(task_id: TaskID, force: bool) -> TaskCancel:
    """``TaskCancel(task_id, force)``, as ``_new_result``: every cancel the
    client sends is built here (``FutureManager.send_cancel``)."""
    message = _CancelDraft()
    message.task_id = task_id
    message.force = force
    message.__class__ = TaskCancel
    return message  # type: ignore[no-any-return]


def draft_fits(build: Callable[..., Any], cls: type[Any], fields: tuple[str, ...], arguments: tuple[Any, ...]) -> bool:
    """Whether ``build(*arguments)``, which fills ``fields`` of a draft of
    ``cls``, makes exactly what ``cls(*arguments)`` makes. Never raises: a
    class that changed shape (a new field the builder leaves unset, another
    layout) is simply not a fit."""
    try:
        if tuple(field.name for field in dataclasses.fields(cls)) != fields:
            return False
        built = build(*arguments)
        reference = cls(*arguments)
        return type(built) is cls and built == reference and repr(built) == repr(reference) and hash(built) == hash(reference)
    except Exception:
        return False


def _check_drafts() -> bool:
    """Whether every draft builds exactly what its class's constructor
    builds. If ``messages.py`` ever changes a class so that its twin no
    longer fits, the builders fall back to the constructors: slower, never
    wrong."""
    task_id = TaskID(bytes(range(TASK_ID_SIZE)))
    return (
        draft_fits(_new_result, TaskResult, ("task_id", "result_type", "payload"), (task_id, TaskResultType.FAILED, b"payload"))
        and draft_fits(_new_confirm, TaskCancelConfirm, ("task_id", "confirm_type"), (task_id, CancelConfirmType.CANCEL_FAILED))
        and draft_fits(_new_cancel, TaskCancel, ("task_id", "force"), (task_id, False))
    )


DRAFTS_FIT = _check_drafts()
if not DRAFTS_FIT:  # pragma: no cover - only if messages.py changes shape
    _new_result = TaskResult
    _new_confirm = TaskCancelConfirm
    _new_cancel = TaskCancel
# The codec checks the length before building a TaskID, so it skips the
# Python-level check in TaskID.__new__.
_new_bytes = bytes.__new__


def encode(message: Message) -> list[bytes]:
    """Frames for ``message``; raises ``TypeError`` for a non-message.

    Encoding is for our own, well-typed values, so a wrong argument is a
    programming error and reported as one rather than as a ``ProtocolError``.
    """
    kind = type(message)
    if kind is TaskResult:
        assert isinstance(message, TaskResult)
        return [_RESULT, bytes(message.task_id), _BYTE[message.result_type], bytes(message.payload)]
    if kind is TaskCancelConfirm:
        assert isinstance(message, TaskCancelConfirm)
        return [_CONFIRM, bytes(message.task_id), _BYTE[message.confirm_type]]
    if kind is Task:
        assert isinstance(message, Task)
        return [
            _TASK,
            bytes(message.task_id),
            b"" if message.group_id is None else bytes(message.group_id),
            bytes(message.payload),
            b"".join(message.dependencies),
        ]
    if kind is TaskCancel:
        assert isinstance(message, TaskCancel)
        return [_CANCEL, bytes(message.task_id), _BYTE[1 if message.force else 0]]
    if kind is TaskStarted:
        assert isinstance(message, TaskStarted)
        return [_STARTED, bytes(message.task_id)]
    if kind is Heartbeat:
        return [_HEARTBEAT]
    if kind is ClientDisconnect:
        return [_DISCONNECT]
    raise TypeError(f"not a taskfate message: {message!r}")


def decode(
    frames: Sequence[Any],
    *,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    max_dependencies: int = DEFAULT_MAX_DEPENDENCIES,
) -> Message:
    """The message carried by ``frames``.

    Accepts any bytes-like frames (``bytes``, ``bytearray``, ``memoryview``,
    ``zmq.Frame``). Raises :class:`ProtocolError`, and nothing else, when the
    input is not a well-formed message: unknown tag, wrong number of frames, a
    task id that is not 16 bytes, an enum value out of range, a frame over
    ``max_frame_size`` bytes, a ``Task`` naming more than ``max_dependencies``
    dependencies, or a non-bytes frame.

    The cost is bounded whatever the input: the frame count is checked
    against the tag's before the other frames are read, and the dependency
    frame's length before any id is built. What remains is at most one copy
    of each frame that is not already ``bytes`` (none for pyzmq's lists).
    """
    kind = type(frames)
    if kind is list or kind is tuple:  # the common case, checked cheaply
        count = len(frames)
        # Fast paths for what a client receives in bulk, results and cancel
        # confirms, as pyzmq hands them over (a list of bytes). Anything
        # that does not match exactly takes the general path below, which
        # checks it again and says what is wrong. The message is built as
        # _new_result / _new_confirm build it, written out here to save the
        # call: this is the I/O thread's hottest loop.
        if count == 4 and max_frame_size >= TASK_ID_SIZE:
            tag, tid, code, payload = frames
            if (
                type(tag) is bytes
                and tag == _RESULT
                and type(tid) is bytes
                and len(tid) == TASK_ID_SIZE
                and type(code) is bytes
                and (result_type := _RESULT_BY_CODE.get(code)) is not None
                and type(payload) is bytes
                and len(payload) <= max_frame_size
            ):
                if not DRAFTS_FIT:  # pragma: no cover - see _check_drafts
                    return TaskResult(_new_bytes(TaskID, tid), result_type, payload)
                result = _ResultDraft()
                result.task_id = _new_bytes(TaskID, tid)
                result.result_type = result_type
                result.payload = payload
                result.__class__ = TaskResult
                return result  # type: ignore[no-any-return]
        elif count == 3 and max_frame_size >= TASK_ID_SIZE:
            tag, tid, code = frames
            if (
                type(tag) is bytes
                and tag == _CONFIRM
                and type(tid) is bytes
                and len(tid) == TASK_ID_SIZE
                and type(code) is bytes
                and (confirm_type := _CONFIRM_BY_CODE.get(code)) is not None
            ):
                if not DRAFTS_FIT:  # pragma: no cover - see _check_drafts
                    return TaskCancelConfirm(_new_bytes(TaskID, tid), confirm_type)
                confirm = _ConfirmDraft()
                confirm.task_id = _new_bytes(TaskID, tid)
                confirm.confirm_type = confirm_type
                confirm.__class__ = TaskCancelConfirm
                return confirm  # type: ignore[no-any-return]
    else:
        if not isinstance(frames, Sequence) or isinstance(frames, (str, bytes, bytearray, memoryview)):
            raise ProtocolError(f"frames must be a sequence of frames, got {type(frames).__name__}")
        try:
            count = len(frames)
        except (TypeError, ValueError, OverflowError) as error:  # a hostile __len__
            raise ProtocolError(f"frames have no usable length: {error}") from None
    if count == 0:
        raise ProtocolError("no frames")
    # The tag alone says how many frames follow: nothing else is read (or
    # copied) before the count agrees, so a list of a million frames costs
    # no more than a list of six.
    tag = _as_bytes(frames[0], 0, max_frame_size)
    entry = _DECODERS.get(tag)
    if entry is None:
        raise ProtocolError(f"unknown message tag {tag[:16]!r}")
    name, expected, decoder = entry
    if count != expected:
        raise ProtocolError(f"{name} takes {expected} frames, got {count}")
    parts = [tag]
    for index in range(1, count):
        parts.append(_as_bytes(frames[index], index, max_frame_size))
    if decoder is _decode_task:
        return _decode_task(parts, max_dependencies)
    return decoder(parts)


def _as_bytes(frame: Any, index: int, limit: int) -> bytes:
    if type(frame) is not bytes:
        # Only the buffer protocol counts as bytes-like: bytes(5) would
        # silently make five zero bytes out of an int.
        try:
            frame = memoryview(frame).tobytes()
        except TypeError:
            raise ProtocolError(f"frame {index} is {type(frame).__name__}, not bytes") from None
        except (ValueError, BufferError) as error:  # a released or unusable buffer
            raise ProtocolError(f"frame {index} cannot be read: {error}") from None
    if len(frame) > limit:
        raise ProtocolError(f"frame {index} is {len(frame)} bytes, over the limit of {limit}")
    return frame  # type: ignore[no-any-return]


def _task_id(raw: bytes, what: str) -> TaskID:
    if len(raw) != TASK_ID_SIZE:
        raise ProtocolError(f"{what} must be {TASK_ID_SIZE} bytes, got {len(raw)}")
    return TaskID(raw)


def _enum_byte(raw: bytes, members: tuple[Any, ...], what: str) -> Any:
    if len(raw) != 1 or raw[0] >= len(members):
        raise ProtocolError(f"bad {what} {raw[:8]!r}")
    return members[raw[0]]


def _decode_task(parts: list[bytes], max_dependencies: int = DEFAULT_MAX_DEPENDENCIES) -> Task:
    _, tid, gid, payload, deps = parts
    if len(deps) % TASK_ID_SIZE:
        raise ProtocolError(f"dependency frame is {len(deps)} bytes, not a multiple of {TASK_ID_SIZE}")
    if len(deps) > max_dependencies * TASK_ID_SIZE:
        raise ProtocolError(
            f"the task names {len(deps) // TASK_ID_SIZE} dependencies, over the limit of {max_dependencies}"
        )
    task_id = _task_id(tid, "task id")
    group_id = None if not gid else _task_id(gid, "group id")
    # The lengths are right by construction: skip TaskID's own check.
    dependencies = tuple(_new_bytes(TaskID, deps[i : i + TASK_ID_SIZE]) for i in range(0, len(deps), TASK_ID_SIZE))
    return Task(task_id, payload, group_id, dependencies)


def _decode_cancel(parts: list[bytes]) -> TaskCancel:
    flags = parts[2]
    if len(flags) != 1 or flags[0] > 1:
        raise ProtocolError(f"bad cancel flags {flags[:8]!r}")
    return TaskCancel(_task_id(parts[1], "task id"), flags[0] == 1)


def _decode_confirm(parts: list[bytes]) -> TaskCancelConfirm:
    return TaskCancelConfirm(
        _task_id(parts[1], "task id"), _enum_byte(parts[2], _CONFIRM_TYPES, "confirm type")
    )


def _decode_result(parts: list[bytes]) -> TaskResult:
    return TaskResult(
        _task_id(parts[1], "task id"), _enum_byte(parts[2], _RESULT_TYPES, "result type"), parts[3]
    )


# tag -> (message name, frame count, decoder)
_DECODERS: dict[bytes, tuple[str, int, Callable[[list[bytes]], Message]]] = {
    _TASK: ("Task", 5, _decode_task),
    _CANCEL: ("TaskCancel", 3, _decode_cancel),
    _CONFIRM: ("TaskCancelConfirm", 3, _decode_confirm),
    _RESULT: ("TaskResult", 4, _decode_result),
    _STARTED: ("TaskStarted", 2, lambda parts: TaskStarted(_task_id(parts[1], "task id"))),
    _HEARTBEAT: ("Heartbeat", 1, lambda parts: Heartbeat()),
    _DISCONNECT: ("ClientDisconnect", 1, lambda parts: ClientDisconnect()),
}
