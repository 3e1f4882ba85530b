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


def execute(payload: bytes, dependency_results: list[bytes]) -> tuple[TaskResultType, bytes]:
    """Run the call in ``payload``; the result type and the payload to send."""
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
        return TaskResultType.SUCCESS, dump_value(value)
    except BaseException as error:
        return TaskResultType.FAILED, dump_error(RuntimeError(f"result could not be pickled: {error!r}"))


def main(address: str, identity: bytes, parent_pid: int) -> None:
    """Serve one scheduler until it goes away. A worker runs as its own
    interpreter (``python -c LAUNCH ...``), so a user's script
    is never re-imported in it."""
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.IDENTITY, identity)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    socket.send_multipart([READY])
    try:
        while True:
            if not socket.poll(_PARENT_CHECK_MS):
                if os.getppid() != parent_pid:
                    return
                continue
            frames: Any = socket.recv_multipart()
            if frames[0] != RUN or len(frames) < 3:
                continue
            task_id, payload, dependency_results = frames[1], frames[2], frames[3:]
            result_type, out = execute(payload, dependency_results)
            socket.send_multipart([DONE, task_id, bytes((result_type,)), out])
    except KeyboardInterrupt:
        pass
    finally:
        socket.close(0)
        context.term()



#: What the scheduler runs to start a worker: the arguments follow it.
LAUNCH = (
    "import sys; from taskfate.scheduler.worker import main; "
    "main(sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]))"
)
