"""Message types of the task protocol.

Messages are immutable values: two messages are equal when their type and
fields are equal, so tests and fuzzers can compare what was sent with what was
expected. Payloads are opaque ``bytes`` at this layer; what they mean (a
pickled callable, a pickled result) is the business of the layers above.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Union

TASK_ID_SIZE = 16
#: The largest cancel epoch: the wire carries it in four bytes, unsigned.
MAX_EPOCH = 0xFFFF_FFFF


class TaskID(bytes):
    """A 16-byte task identifier.

    A ``bytes`` subclass so it hashes and compares as the raw frame it travels
    in, and costs nothing to put on the wire; the length is checked once, here.
    """

    __slots__ = ()

    def __new__(cls, value: bytes) -> TaskID:
        if len(value) != TASK_ID_SIZE:
            raise ValueError(f"a TaskID is {TASK_ID_SIZE} bytes, got {len(value)}")
        return super().__new__(cls, value)

    @classmethod
    def new(cls) -> TaskID:
        """A fresh random id; 128 random bits make collisions negligible."""
        return cls(os.urandom(TASK_ID_SIZE))

    def __repr__(self) -> str:
        return f"TaskID({self.hex()!r})"

    def __str__(self) -> str:
        return self.hex()


class CancelConfirmType(enum.IntEnum):
    """The scheduler's answer to a ``TaskCancel``."""

    CANCELED = 0
    CANCEL_FAILED = 1
    CANCEL_NOT_FOUND = 2


class TaskResultType(enum.IntEnum):
    """How a task ended on the scheduler's side."""

    SUCCESS = 0
    FAILED = 1
    WORKER_DIED = 2


@dataclass(frozen=True, slots=True)
class Task:
    """Client to scheduler: run this payload.

    ``group_id`` ties the tasks of one graph together: the scheduler can cancel
    them as a unit. ``dependencies`` names tasks of the same group whose
    results this task needs; the scheduler runs it only after they succeed.
    """

    task_id: TaskID
    payload: bytes
    group_id: TaskID | None = None
    dependencies: tuple[TaskID, ...] = ()


@dataclass(frozen=True, slots=True)
class TaskCancel:
    """Client to scheduler: stop this task (or group).

    With ``force`` a running task is interrupted; without it only a task that
    has not started can be cancelled, and a running one is answered with
    ``CANCEL_FAILED``.

    ``epoch`` numbers the requests for one task (or group) so that an
    answer can say which request it answers: a client counts 1, 2, 3 ... per
    target, and the scheduler copies the number into its confirm. Without
    it, a late duplicate of an earlier answer would be taken for the answer
    to the latest request. ``0`` means "not numbered" (0 to
    :data:`MAX_EPOCH`).
    """

    task_id: TaskID
    force: bool = True
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class TaskCancelConfirm:
    """Scheduler to client: the outcome of a ``TaskCancel`` (or of a clear).

    ``epoch`` is the answered ``TaskCancel``'s own; ``0`` when the scheduler
    speaks on its own (it cancelled a task nobody asked about) or the
    request was not numbered. A client drops a numbered answer to a request
    that is not its latest for the target (docs/lifecycle.md, "The epoch
    rule").
    """

    task_id: TaskID
    confirm_type: CancelConfirmType
    epoch: int = 0


@dataclass(frozen=True, slots=True)
class TaskResult:
    """Scheduler to client: the task ended; ``payload`` is its serialized value
    (``SUCCESS``), its serialized exception (``FAILED``) or a description of the
    loss (``WORKER_DIED``)."""

    task_id: TaskID
    result_type: TaskResultType
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """Scheduler to client: a worker has begun running this task.

    Informational: it changes nothing the scheduler will do, and a client
    that ignores it loses nothing. It lets a client tell a task that is
    still queued from one that is running (whose cancel needs ``force``),
    without asking.
    """

    task_id: TaskID


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Either direction: I am alive. Silence past a timeout means the peer is
    gone, which is how a client learns that its scheduler vanished."""


@dataclass(frozen=True, slots=True)
class ClientDisconnect:
    """Client to scheduler: I am leaving; free every task of mine."""


Message = Union[Task, TaskCancel, TaskCancelConfirm, TaskResult, TaskStarted, Heartbeat, ClientDisconnect]
