"""A sans-I/O harness: a manager with a fake clock and a recording ``send``."""

from __future__ import annotations

import pickle
from typing import Any

from taskfate.client import Future, FutureManager
from taskfate.fsm import Lifecycle
from taskfate.protocol import (
    CancelConfirmType,
    Message,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskID,
    TaskResult,
    TaskResultType,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, policy: str | Lifecycle = "cancel", cancel_timeout: float = 5.0, **kwargs: Any) -> None:
        self.sent: list[Message] = []
        self.clock = FakeClock()
        self.manager = FutureManager(
            self.sent.append, late_result=policy, cancel_timeout=cancel_timeout, clock=self.clock, timer=False, **kwargs
        )

    def submit(self, group_id: TaskID | None = None) -> Future:
        return self.manager.submit(Task(TaskID.new(), b"payload", group_id))

    def cancels(self) -> list[TaskCancel]:
        return [message for message in self.sent if isinstance(message, TaskCancel)]

    def result(self, future: Future, value: object = 42, kind: TaskResultType = TaskResultType.SUCCESS) -> TaskResult:
        payload = value if isinstance(value, bytes) and kind == TaskResultType.WORKER_DIED else pickle.dumps(value)
        message = TaskResult(future.task_id, kind, payload)
        self.manager.on_message(message)
        return message

    def confirm(self, target: Future | TaskID, kind: CancelConfirmType) -> None:
        task_id = target.task_id if isinstance(target, Future) else target
        self.manager.on_message(TaskCancelConfirm(task_id, kind))

    def advance(self, seconds: float) -> int:
        self.clock.now += seconds
        return self.manager.expire()
