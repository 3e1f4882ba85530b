"""The reference scheduler: sockets, workers, and the declared task lifecycle.

One thread owns every socket and every task record. It turns client
messages, worker answers, worker deaths and clocks into triggers of
``taskfate.scheduler.lifecycle`` and implements that declaration's callbacks.
What it decides itself is routing: a cancel for a task it holds no record of
(never seen, already finished and forgotten, or another client's) is answered
"not found", and a message it cannot accept at all (malformed, oversized, a
dependency it cannot honour) is answered with a failure when it names a task.

Clients speak the taskfate protocol to a ROUTER socket. Workers are spawned
processes speaking the private protocol of ``taskfate.scheduler.worker`` to a
second ROUTER bound on loopback. A worker that dies is noticed through its
process sentinel (polled beside the sockets) and replaced.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import os
import random
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from taskfate.fsm.table import Executor
from taskfate.protocol import (
    DEFAULT_MAX_DEPENDENCIES,
    DEFAULT_MAX_FRAME_SIZE,
    CancelConfirmType,
    ClientDisconnect,
    Heartbeat,
    Message,
    ProtocolError,
    Task,
    TaskCancel,
    TaskCancelConfirm,
    TaskID,
    TaskResult,
    TaskResultType,
    TaskStarted,
    decode,
    encode,
)
from taskfate.protocol.calls import DependencyFailed, dump_error
from taskfate.protocol.messages import TASK_ID_SIZE
from taskfate.scheduler import lifecycle as slc
from taskfate.scheduler import worker as worker_protocol

_log = logging.getLogger("taskfate.scheduler")

DEFAULT_ADDRESS = "tcp://127.0.0.1:5560"


@dataclass
class FaultPlan:
    """Seeded misbehaviour of the scheduler's outgoing client messages.

    Off by default. Tests turn it on to produce orderings that are rare in
    practice. Probabilities apply per message: ``delay`` holds a message up
    to ``max_delay`` seconds (so later messages overtake it), ``duplicate``
    sends it twice, ``reorder`` holds it until after the next message,
    ``drop_confirm`` / ``drop_result`` lose a cancel confirm / a result, and
    ``silent_cancels`` never answers a ``TaskCancel`` at all (the cancel is
    still carried out).
    """

    seed: int = 0
    delay: float = 0.0
    max_delay: float = 0.02
    duplicate: float = 0.0
    reorder: float = 0.0
    drop_confirm: float = 0.0
    drop_result: float = 0.0
    silent_cancels: bool = False

    _FIELDS = ("seed", "delay", "max_delay", "duplicate", "reorder", "drop_confirm", "drop_result")

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """From ``"seed=1,delay=0.2,duplicate=0.05,silent_cancels"``."""
        plan = cls()
        for part in filter(None, (p.strip() for p in spec.split(","))):
            name, _, value = part.partition("=")
            name = name.strip().replace("-", "_")
            if name == "silent_cancels" and not value:
                plan.silent_cancels = True
            elif name in cls._FIELDS and re.fullmatch(r"[0-9.]+", value.strip()):
                setattr(plan, name, int(value) if name == "seed" else float(value))
            else:
                raise ValueError(f"bad fault {part!r}; known: {', '.join(cls._FIELDS)}, silent_cancels")
        return plan

    @property
    def active(self) -> bool:
        return self.silent_cancels or any(
            getattr(self, name) for name in ("delay", "duplicate", "reorder", "drop_confirm", "drop_result")
        )


class SchedulerTask:
    """The scheduler's record of one task: the model its lifecycle drives.

    The methods below are the callbacks named in
    ``taskfate.scheduler.lifecycle``; they run on the scheduler thread.
    """

    __slots__ = ("task_id", "client", "group_id", "payload", "dependencies", "waiting_on", "dependants", "state", "worker", "server")

    def __init__(self, server: Scheduler, client: bytes, task: Task) -> None:
        self.server = server
        self.task_id = task.task_id
        self.client = client
        self.group_id = task.group_id
        self.payload = task.payload
        self.dependencies = task.dependencies
        self.waiting_on: set[TaskID] = set()
        self.dependants: list[SchedulerTask] = []
        self.state = slc.INITIAL
        self.worker: bytes | None = None

    def enqueue(self, _: object) -> None:
        self.server._ready.append(self)

    def start_on_worker(self, worker: bytes) -> None:
        self.worker = worker
        self.server._start(self, worker)

    def send_result(self, answer: tuple[TaskResultType, bytes]) -> None:
        result_type, payload = answer
        if result_type == TaskResultType.SUCCESS and self.group_id is not None:
            self.server._keep_result(self.group_id, self.task_id, payload)
        self.server._to_client(self.client, TaskResult(self.task_id, result_type, payload))

    def send_worker_died(self, detail: str) -> None:
        self.server._to_client(self.client, TaskResult(self.task_id, TaskResultType.WORKER_DIED, detail.encode()))

    def send_dependency_failure(self, dependency: TaskID) -> None:
        error = DependencyFailed(dependency.hex(), "failed")
        self.server._to_client(self.client, TaskResult(self.task_id, TaskResultType.FAILED, dump_error(error)))

    def release_dependants(self, _: object) -> None:
        for dependant in self.dependants:
            dependant.waiting_on.discard(self.task_id)
            if not dependant.waiting_on:
                self.server._fire(dependant, slc.DEPENDENCIES_MET)

    def fail_dependants(self, _: object) -> None:
        for dependant in self.dependants:
            self.server._fire(dependant, slc.DEPENDENCY_FAILED, self.task_id)

    def cancel_dependants(self, _: object) -> None:
        for dependant in self.dependants:
            self.server._fire(dependant, slc.DEPENDENCY_CANCELED)

    def stop_worker(self, _: object) -> None:
        if self.worker is not None:
            self.server._kill_worker(self.worker)
            self.worker = None

    def send_canceled(self, _: object) -> None:
        self.server._confirm(self.client, self.task_id, CancelConfirmType.CANCELED)

    def send_cancel_failed(self, _: object) -> None:
        self.server._confirm(self.client, self.task_id, CancelConfirmType.CANCEL_FAILED)

    def send_not_found(self, _: object) -> None:
        self.server._confirm(self.client, self.task_id, CancelConfirmType.CANCEL_NOT_FOUND)

    def forget(self, _: object) -> None:
        self.server._forget(self)


@dataclass
class _Worker:
    identity: bytes
    process: subprocess.Popen[bytes]
    exit_fd: int | None  # a pidfd, readable once the process exits (Linux)
    ready: bool = False
    task: SchedulerTask | None = None
    killed: bool = False

    def close(self) -> None:
        if self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None


@dataclass
class _Client:
    last_seen: float
    tasks: set[TaskID] = field(default_factory=set)


class Scheduler:
    """A scheduler with ``workers`` worker processes, serving ``address``.

    Use as a context manager (starts on enter, stops on exit) or call
    :meth:`start` / :meth:`stop`; :meth:`serve_forever` runs it in the
    calling thread instead. ``address`` may end in ``:*`` for a free port;
    :attr:`address` then tells the one bound. Binding beyond loopback should
    come with CURVE keys (``curve_secret_key`` / ``curve_public_key``, from
    ``zmq.curve_keypair()``).
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        workers: int = 2,
        faults: FaultPlan | None = None,
        heartbeat_interval: float = 0.5,
        client_timeout: float = 10.0,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_dependencies: int = DEFAULT_MAX_DEPENDENCIES,
        curve_secret_key: bytes | None = None,
        curve_public_key: bytes | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("a scheduler needs at least one worker")
        self.requested_address = address
        self.address = address
        self.n_workers = workers
        self.faults = faults or FaultPlan()
        self.heartbeat_interval = heartbeat_interval
        self.client_timeout = client_timeout
        self.max_frame_size = max_frame_size
        self.max_dependencies = max_dependencies
        self.stats: collections.Counter[str] = collections.Counter()
        self._curve = (curve_secret_key, curve_public_key)
        self._executor = Executor(slc.compiled(), SchedulerTask)
        self._context: zmq.Context[Any] | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stopping = False
        self._start_error: BaseException | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        # Everything below belongs to the scheduler thread.
        self._tasks: dict[TaskID, SchedulerTask] = {}
        self._groups: dict[TaskID, set[TaskID]] = {}
        self._results: dict[TaskID, bytes] = {}
        self._group_results: dict[TaskID, list[TaskID]] = {}
        self._expiring: collections.deque[tuple[float, TaskID]] = collections.deque()
        self._clients: dict[bytes, _Client] = {}
        self._ready: collections.deque[SchedulerTask] = collections.deque()
        self._workers: dict[bytes, _Worker] = {}
        self._idle: collections.deque[bytes] = collections.deque()
        self._worker_ids = itertools.count()
        self._rng = random.Random(self.faults.seed)
        self._held: list[tuple[float, int, bytes, list[bytes]]] = []
        self._held_sequence = itertools.count()
        self._reorder_slot: tuple[bytes, list[bytes]] | None = None
        self._startup_failures = 0
        self._respawns: collections.deque[float] = collections.deque()

    # -- Running -------------------------------------------------------------

    def __enter__(self) -> Scheduler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 30.0) -> None:
        """Bind, spawn the workers and serve in a background thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="taskfate-scheduler", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("scheduler did not start in time")
        if self._start_error is not None:
            raise self._start_error

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, stop the workers, close the sockets."""
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` (or KeyboardInterrupt)."""
        try:
            self._setup()
        except BaseException as error:
            self._start_error = error
            self._started.set()
            raise
        self._started.set()
        try:
            self._loop()
        finally:
            self._teardown()

    def _setup(self) -> None:
        self._context = zmq.Context()
        self._clients_socket = self._context.socket(zmq.ROUTER)
        self._clients_socket.setsockopt(zmq.LINGER, 0)
        self._clients_socket.setsockopt(zmq.ROUTER_MANDATORY, 0)
        secret, public = self._curve
        if secret is not None:
            self._clients_socket.curve_secretkey = secret
            self._clients_socket.curve_publickey = public
            self._clients_socket.curve_server = True
        if self.requested_address.endswith(":*") or self.requested_address.endswith(":0"):
            base = self.requested_address.rsplit(":", 1)[0]
            port = self._clients_socket.bind_to_random_port(base)
            self.address = f"{base}:{port}"
        else:
            self._clients_socket.bind(self.requested_address)
            self.address = self.requested_address
        self._workers_socket = self._context.socket(zmq.ROUTER)
        self._workers_socket.setsockopt(zmq.LINGER, 0)
        port = self._workers_socket.bind_to_random_port("tcp://127.0.0.1")
        self._workers_address = f"tcp://127.0.0.1:{port}"
        for _ in range(self.n_workers):
            self._add_worker()
        _log.info("scheduler serving %s with %d workers", self.address, self.n_workers)

    def _teardown(self) -> None:
        for worker in list(self._workers.values()):
            if worker.process.poll() is None:
                worker.process.kill()
        for worker in list(self._workers.values()):
            try:
                worker.process.wait(5)
            except subprocess.TimeoutExpired:
                _log.warning("worker %s did not exit", worker.identity.decode())
            worker.close()
        self._workers.clear()
        self._clients_socket.close(0)
        self._workers_socket.close(0)
        if self._context is not None:
            self._context.term()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _loop(self) -> None:
        next_heartbeat = time.monotonic()
        while not self._stopping:
            poller = zmq.Poller()
            poller.register(self._clients_socket, zmq.POLLIN)
            poller.register(self._workers_socket, zmq.POLLIN)
            poller.register(self._wake_r, zmq.POLLIN)
            sentinels = {}
            for worker in self._workers.values():
                if worker.exit_fd is not None:
                    sentinels[worker.exit_fd] = worker
                    poller.register(worker.exit_fd, zmq.POLLIN)
            now = time.monotonic()
            wait = max(0.0, next_heartbeat - now)
            if len(sentinels) < len(self._workers):
                wait = min(wait, 0.1)  # no pidfd here: look at exit codes often
            if self._held:
                wait = min(wait, max(0.0, self._held[0][0] - now))
            if self._respawns:
                wait = min(wait, max(0.0, self._respawns[0] - now))
            ready = dict(poller.poll(int(wait * 1000) + 1))
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass
            if self._clients_socket in ready:
                self._drain_clients()
            if self._workers_socket in ready:
                self._drain_workers()
            for worker in list(self._workers.values()):
                if worker.exit_fd in ready or (worker.exit_fd is None and worker.process.poll() is not None):
                    self._worker_exited(worker)
            while self._respawns and self._respawns[0] <= time.monotonic() and not self._stopping:
                self._respawns.popleft()
                self._add_worker()
            self._dispatch()
            self._release_held()
            now = time.monotonic()
            if now >= next_heartbeat:
                next_heartbeat = now + self.heartbeat_interval
                self._heartbeat(now)

    # -- Clients ---------------------------------------------------------------

    def _drain_clients(self) -> None:
        socket = self._clients_socket
        for _ in range(1000):  # stay fair to workers under a flood
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, body = frames[0], frames[1:]
            try:
                message = decode(body, max_frame_size=self.max_frame_size, max_dependencies=self.max_dependencies)
            except ProtocolError as error:
                self.stats["malformed"] += 1
                _log.warning("dropped malformed frames from client %s: %s", identity.hex(), error.reason)
                self._refuse_unreadable_task(identity, body, error)
                continue
            try:
                self._on_client_message(identity, message)
            except Exception:
                # One message must never take the scheduler down with it.
                self.stats["handler_errors"] += 1
                _log.exception("handling %s from client %s failed", type(message).__name__, identity.hex())

    def _on_client_message(self, identity: bytes, message: Message) -> None:
        client = self._clients.get(identity)
        if client is None:
            client = self._clients[identity] = _Client(time.monotonic())
        client.last_seen = time.monotonic()
        kind = type(message)
        if kind is Task:
            assert isinstance(message, Task)
            self._submit(identity, client, message)
        elif kind is TaskCancel:
            assert isinstance(message, TaskCancel)
            self._cancel(identity, message)
        elif kind is Heartbeat:
            pass
        elif kind is ClientDisconnect:
            self._client_gone(identity, "disconnected")
        else:
            self.stats["unexpected"] += 1
            _log.warning("client %s sent %s, which clients do not send", identity.hex(), kind.__name__)

    def _refuse_unreadable_task(self, identity: bytes, body: list[bytes], error: ProtocolError) -> None:
        """A Task frame set that names its task id but cannot be accepted
        (too large, say) is answered with a failure, so its future ends."""
        if len(body) >= 2 and body[0] == b"TK" and len(body[1]) == TASK_ID_SIZE:
            refusal = RuntimeError(f"the scheduler refused the task: {error.reason}")
            self._to_client(identity, TaskResult(TaskID(body[1]), TaskResultType.FAILED, dump_error(refusal)))

    def _refuse(self, identity: bytes, task: Task, reason: str) -> None:
        self.stats["refused"] += 1
        _log.warning("refused task %s from client %s: %s", task.task_id.hex(), identity.hex(), reason)
        error = RuntimeError(f"the scheduler refused the task: {reason}")
        self._to_client(identity, TaskResult(task.task_id, TaskResultType.FAILED, dump_error(error)))

    def _submit(self, identity: bytes, client: _Client, task: Task) -> None:
        held = self._tasks.get(task.task_id)
        if held is not None:
            self.stats["duplicate_task"] += 1
            if held.client != identity:
                _log.warning("client %s reused task id %s held by another client; ignored", identity.hex(), task.task_id.hex())
            return
        if task.dependencies and task.group_id is None:
            self._refuse(identity, task, "a task with dependencies must belong to a group (graph)")
            return
        foreign = [d for d in task.dependencies if d in self._tasks and self._tasks[d].group_id != task.group_id]
        if foreign or task.task_id in task.dependencies:
            self._refuse(identity, task, "dependencies must be other tasks of the same group")
            return
        record = SchedulerTask(self, identity, task)
        self._tasks[task.task_id] = record
        client.tasks.add(task.task_id)
        if task.group_id is not None:
            self._groups.setdefault(task.group_id, set()).add(task.task_id)
        self.stats["tasks"] += 1
        missing = None
        for dependency in task.dependencies:
            parent = self._tasks.get(dependency)
            if parent is not None:
                record.waiting_on.add(dependency)
                parent.dependants.append(record)
            elif dependency not in self._results:
                missing = dependency
        if missing is not None:
            self._fire(record, slc.DEPENDENCY_FAILED, missing)
        elif not record.waiting_on:
            self._fire(record, slc.DEPENDENCIES_MET)

    def _cancel(self, identity: bytes, cancel: TaskCancel) -> None:
        event = slc.CANCEL_FORCE if cancel.force else slc.CANCEL_GENTLE
        # A client may cancel only its own tasks; anyone else's are, to it,
        # not found (and the answer goes to the one who asked).
        record = self._tasks.get(cancel.task_id)
        if record is not None and record.client == identity:
            self._fire(record, event)
            return
        members = self._groups.get(cancel.task_id)
        if members and record is None:
            owned = [m for m in members if self._tasks[m].client == identity]
            # Members cancelled along the way (as dependants) are skipped.
            for member_id in owned:
                member = self._tasks.get(member_id)
                if member is not None:
                    self._fire(member, event)
            if owned:
                return
        self._confirm(identity, cancel.task_id, CancelConfirmType.CANCEL_NOT_FOUND)

    def _client_gone(self, identity: bytes, why: str) -> None:
        client = self._clients.pop(identity, None)
        if client is None:
            return
        _log.info("client %s %s; freeing %d tasks", identity.hex(), why, len(client.tasks))
        for task_id in list(client.tasks):
            record = self._tasks.get(task_id)
            if record is not None:
                self._fire(record, slc.CLIENT_GONE)

    def _heartbeat(self, now: float) -> None:
        while self._expiring and self._expiring[0][0] <= now:
            _, group_id = self._expiring.popleft()
            if group_id not in self._groups:
                for task_id in self._group_results.pop(group_id, ()):
                    self._results.pop(task_id, None)
        for identity, client in list(self._clients.items()):
            if now - client.last_seen > self.client_timeout:
                self._client_gone(identity, f"silent for {self.client_timeout}s")
            else:
                self._to_client(identity, Heartbeat(), faults=False)

    # -- Lifecycle plumbing ------------------------------------------------------

    def _fire(self, record: SchedulerTask, event: str, argument: Any = None) -> None:
        if not self._executor.fire(record, event, argument):
            self.stats["ignored"] += 1

    def _forget(self, record: SchedulerTask) -> None:
        self._tasks.pop(record.task_id, None)
        client = self._clients.get(record.client)
        if client is not None:
            client.tasks.discard(record.task_id)
        if record.group_id is not None:
            members = self._groups.get(record.group_id)
            if members is not None:
                members.discard(record.task_id)
                if not members:
                    # The graph's live part is over. Its results stay a while
                    # for nodes still on their way (a graph arrives as a burst
                    # of messages, not atomically), then go.
                    del self._groups[record.group_id]
                    if record.group_id in self._group_results:
                        self._expiring.append((time.monotonic() + self.client_timeout, record.group_id))

    def _keep_result(self, group_id: TaskID, task_id: TaskID, payload: bytes) -> None:
        self._results[task_id] = payload
        self._group_results.setdefault(group_id, []).append(task_id)

    def _confirm(self, identity: bytes, task_id: TaskID, kind: CancelConfirmType) -> None:
        if self.faults.silent_cancels:
            self.stats["silenced_confirms"] += 1
            return
        self._to_client(identity, TaskCancelConfirm(task_id, kind))

    # -- Workers -------------------------------------------------------------------

    def _add_worker(self) -> None:
        identity = b"w%d" % next(self._worker_ids)
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                worker_protocol.LAUNCH,
                self._workers_address,
                identity.decode(),
                str(os.getpid()),
                str(self.max_frame_size),
            ],
            stdin=subprocess.DEVNULL,
        )
        try:
            exit_fd: int | None = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            exit_fd = None
        self._workers[identity] = _Worker(identity, process, exit_fd)

    def _drain_workers(self) -> None:
        socket = self._workers_socket
        while True:
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, kind = frames[0], frames[1]
            worker = self._workers.get(identity)
            if worker is None or worker.killed:
                continue  # a worker we stopped: its last words do not count
            if kind == worker_protocol.READY:
                worker.ready = True
                self._idle.append(identity)
            elif kind == worker_protocol.DONE and len(frames) == 5:
                task_id, result_type, payload = frames[2], frames[3], frames[4]
                record = worker.task
                worker.task = None
                self._idle.append(identity)
                if record is None or record.task_id != task_id:
                    continue
                record.worker = None
                kind_ = TaskResultType(result_type[0])
                event = slc.FINISH_SUCCESS if kind_ == TaskResultType.SUCCESS else slc.FINISH_FAILURE
                self._fire(record, event, (kind_, payload))

    def _dispatch(self) -> None:
        while self._ready and self._idle:
            record = self._ready.popleft()
            if record.state != slc.QUEUED:
                continue  # cancelled while queued
            identity = self._idle.popleft()
            worker = self._workers.get(identity)
            if worker is None or worker.killed:
                self._ready.appendleft(record)
                continue
            self._fire(record, slc.ASSIGN, identity)

    def _start(self, record: SchedulerTask, identity: bytes) -> None:
        worker = self._workers[identity]
        worker.task = record
        dependency_results = [self._results[d] for d in record.dependencies]
        self._workers_socket.send_multipart([identity, worker_protocol.RUN, bytes(record.task_id), record.payload, *dependency_results])
        # Tell the owner its task left the queue: informational, so faults
        # may delay, duplicate or reorder it like any other message.
        self._to_client(record.client, TaskStarted(record.task_id))

    def _kill_worker(self, identity: bytes) -> None:
        worker = self._workers.get(identity)
        if worker is None or worker.killed:
            return
        worker.killed = True
        worker.task = None
        try:
            self._idle.remove(identity)
        except ValueError:
            pass
        worker.process.kill()
        self._add_worker()

    def _worker_exited(self, worker: _Worker) -> None:
        if self._workers.get(worker.identity) is not worker:
            return
        del self._workers[worker.identity]
        try:
            self._idle.remove(worker.identity)
        except ValueError:
            pass
        exit_code = worker.process.wait()
        worker.close()
        if worker.killed:
            return
        self.stats["worker_deaths"] += 1
        record = worker.task
        _log.warning("worker %s died (exit code %s)", worker.identity.decode(), exit_code)
        if not self._stopping:
            if worker.ready:
                self._startup_failures = 0
                self._add_worker()
            else:
                # It died before it could say READY: starting another at once
                # would spin. Back off, up to five seconds between attempts.
                self._startup_failures += 1
                delay = min(0.05 * 2**self._startup_failures, 5.0)
                _log.error("worker failed to start (%d in a row); next attempt in %.2fs", self._startup_failures, delay)
                self._respawns.append(time.monotonic() + delay)
        if record is not None:
            record.worker = None
            self._fire(record, slc.WORKER_LOST, f"worker {worker.identity.decode()} exited with code {exit_code}")

    # -- Outgoing, with optional faults ---------------------------------------------

    def _to_client(self, identity: bytes, message: Message, faults: bool = True) -> None:
        frames = [identity, *encode(message)]
        plan = self.faults
        if not faults or not plan.active:
            self._send(frames)
            return
        rng = self._rng
        if isinstance(message, TaskCancelConfirm) and rng.random() < plan.drop_confirm:
            self.stats["dropped"] += 1
            return
        if isinstance(message, TaskResult) and rng.random() < plan.drop_result:
            self.stats["dropped"] += 1
            return
        copies = 2 if rng.random() < plan.duplicate else 1
        self.stats["duplicated"] += copies - 1
        for _ in range(copies):
            if rng.random() < plan.delay:
                due = time.monotonic() + rng.random() * plan.max_delay
                heapq.heappush(self._held, (due, next(self._held_sequence), identity, frames))
                self.stats["delayed"] += 1
            elif rng.random() < plan.reorder and self._reorder_slot is None:
                self._reorder_slot = (identity, frames)
                self.stats["reordered"] += 1
            else:
                self._send(frames)
                if self._reorder_slot is not None:
                    held, self._reorder_slot = self._reorder_slot, None
                    self._send(list(held[1]))

    def _release_held(self) -> None:
        now = time.monotonic()
        while self._held and self._held[0][0] <= now:
            _, _, _, frames = heapq.heappop(self._held)
            self._send(frames)
        if self._reorder_slot is not None and not self._held:
            # Nothing came after it in this turn of the loop: let it go.
            held, self._reorder_slot = self._reorder_slot, None
            self._send(list(held[1]))

    def _send(self, frames: list[bytes]) -> None:
        try:
            self._clients_socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as error:
            self.stats["send_failed"] += 1
            _log.debug("could not send to client %s: %s", frames[0].hex(), error)
