"""A worker process of the reference scheduler.

Runs one call at a time. It speaks a private three-message protocol with its
scheduler over a DEALER socket (these frames never leave the scheduler's
host): it announces ``READY`` once, receives ``RUN task_id payload
dependency-results...`` and answers ``DONE task_id result_type payload``.

A call that cannot be unpickled, raises, or returns something unpicklable
fails that task and leaves the worker running. The worker exits when its
scheduler's process goes away, so a killed scheduler leaves no orphans.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
from typing import Any

import zmq

from taskfate.protocol import TaskResultType
from taskfate.protocol.calls import bind_dependencies, dump_error, dump_value, load_call

READY = b"READY"
RUN = b"RUN"
DONE = b"DONE"

_log = logging.getLogger("taskfate.scheduler.worker")

#: How often a worker checks that its scheduler is still alive (ms).
_PARENT_CHECK_MS = 500


def execute(payload: bytes, dependency_results: list[bytes], max_result_size: int | None = None) -> tuple[TaskResultType, bytes]:
    """Run the call in ``payload``; the result type and the payload to send.

    A value whose pickle is over ``max_result_size`` bytes fails the task
    instead: a frame that large would be refused on its way to the client,
    and the future would wait for a result that never arrives.
    """
    try:
        fn, args, kwargs = load_call(payload)
        results = [pickle.loads(raw) for raw in dependency_results]
        args, kwargs = bind_dependencies(args, kwargs, results)
    except BaseException as error:  # a task must never take its worker down
        return TaskResultType.FAILED, dump_error(RuntimeError(f"task could not be loaded: {error!r}"))
    try:
        value = fn(*args, **kwargs)
    except BaseException as error:
        return TaskResultType.FAILED, dump_error(error)
    try:
        out = dump_value(value)
    except BaseException as error:
        return TaskResultType.FAILED, dump_error(RuntimeError(f"result could not be pickled: {error!r}"))
    if max_result_size is not None and len(out) > max_result_size:
        return TaskResultType.FAILED, dump_error(
            RuntimeError(f"result of {len(out)} bytes is over the frame limit of {max_result_size}")
        )
    return TaskResultType.SUCCESS, out


def _exit_with_parent(parent_pid: int) -> None:
    """Watchdog thread: end this process once the scheduler's is gone, even
    in the middle of a long task."""
    while True:
        time.sleep(_PARENT_CHECK_MS / 1000)
        if os.getppid() != parent_pid:
            os._exit(1)


def main(address: str, identity: bytes, parent_pid: int, max_result_size: int | None = None) -> None:
    """Serve one scheduler until it goes away. A worker runs as its own
    interpreter (``python -c LAUNCH ...``), so a user's script
    is never re-imported in it."""
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="parent-watchdog", daemon=True).start()
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, identity)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    socket.send_multipart([READY])
    try:
        while True:
            if not socket.poll(_PARENT_CHECK_MS):
                continue
            frames: Any = socket.recv_multipart()
            if frames[0] != RUN or len(frames) < 3:
                continue
            task_id, payload, dependency_results = frames[1], frames[2], frames[3:]
            result_type, out = execute(payload, dependency_results, max_result_size)
            socket.send_multipart([DONE, task_id, bytes((result_type,)), out])
    except KeyboardInterrupt:
        pass
    finally:
        socket.close(0)
        context.term()


#: What the scheduler runs to start a worker: the arguments follow it.
#: The worker's identity comes in the environment (and is removed from it
#: before any task runs): the command line is visible to every local user.
LAUNCH = (
    "import os, sys; from taskfate.scheduler.worker import main; "
    "main(sys.argv[1], os.environ.pop('TASKFATE_WORKER_IDENTITY').encode(), int(sys.argv[2]), int(sys.argv[3]))"
)
