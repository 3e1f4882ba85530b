"""Every error a user of taskfate.client may see is importable from it."""

from __future__ import annotations

import inspect

import pytest

import taskfate.client
import taskfate.client.errors
import taskfate.protocol.calls
import taskfate.protocol.errors
from taskfate.client import (
    AuthenticationFailed,
    ConnectionLost,
    DependencyFailed,
    Future,
    FutureManager,
    ProtocolError,
    ResultDecodeError,
    TaskFailed,
    WorkerDied,
)
from taskfate.protocol import TaskID, TaskResult, TaskResultType, decode
from taskfate.protocol.calls import dump_error

USER_ERRORS = (AuthenticationFailed, ConnectionLost, DependencyFailed, ProtocolError, ResultDecodeError, TaskFailed, WorkerDied)


def _exception_classes(module):
    return {obj for _, obj in inspect.getmembers(module, inspect.isclass) if issubclass(obj, BaseException) and obj.__module__ == module.__name__}


@pytest.mark.parametrize("error", USER_ERRORS, ids=lambda error: error.__name__)
def test_each_user_error_is_exported_by_taskfate_client(error):
    assert error.__name__ in taskfate.client.__all__
    assert getattr(taskfate.client, error.__name__) is error
    assert error.__name__ in taskfate.client.errors.__all__


def test_no_error_class_of_the_client_or_the_protocol_is_left_out():
    # A new exception class in one of these modules fails here until it is
    # exported from taskfate.client (and listed above).
    defined = set()
    for module in (taskfate.client.errors, taskfate.protocol.errors, taskfate.protocol.calls):
        defined |= _exception_classes(module)
    assert defined == set(USER_ERRORS)


def test_the_exported_errors_are_the_ones_raised():
    manager = FutureManager(lambda message: None)
    failed = manager.track(TaskID.new())
    manager.on_message(TaskResult(failed.task_id, TaskResultType.FAILED, dump_error(DependencyFailed("ab" * 16, "failed"))))
    with pytest.raises(DependencyFailed):
        failed.result(timeout=0)
    lost = manager.track(TaskID.new())
    manager.connection_lost()
    with pytest.raises(ConnectionLost):
        lost.result(timeout=0)
    with pytest.raises(ProtocolError):
        decode([b"??"])
    assert isinstance(failed, Future)
