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

What one peer can cost the others is bounded here: no message is read past
the frames its tag allows (the rest of a longer one is discarded in slices,
so the loop keeps turning), each client may hold only so many unfinished
tasks and queued bytes, ready tasks are handed out round-robin across
clients, a worker runs the code of one client only (it is replaced before
it serves another), and a result is passed only to tasks of the same client
and group. docs/transport.md says what is and is not guaranteed.
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
from typing import Any, NamedTuple

import zmq

from taskfate.fsm.table import Executor
from taskfate.protocol import (
    DEFAULT_MAX_DEPENDENCIES,
    DEFAULT_MAX_FRAME_SIZE,
    MAX_FRAMES,
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
from taskfate.protocol.errors import MalformedInputLog
from taskfate.protocol.messages import TASK_ID_SIZE
from taskfate.scheduler import lifecycle as slc
from taskfate.scheduler import worker as worker_protocol

_log = logging.getLogger("taskfate.scheduler")

DEFAULT_ADDRESS = "tcp://127.0.0.1:5560"

#: Unfinished tasks one client may hold; more are refused with a failure.
DEFAULT_MAX_CLIENT_TASKS = 100_000
#: Bytes of payload one client may have waiting for a worker.
DEFAULT_MAX_CLIENT_BYTES = 1 << 30
#: Frames of one over-long message discarded per turn of the loop, so a
#: message of millions of frames delays the loop by slices, never freezes it.
_DISCARD_SLICE = 20_000
#: ZeroMQ drops a connection that sends a frame over this many times the
#: decoder's limit: a frame up to it is refused with a reason (and its task
#: failed), a larger one would only cost memory to hold.
_HARD_FRAME_FACTOR = 2
#: The environment variable that hands a worker its secret identity (argv
#: would show it to every local user).
WORKER_IDENTITY_ENV = "TASKFATE_WORKER_IDENTITY"


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


#: The most frames a worker's message has after its identity (DONE).
_WORKER_MAX_FRAMES = 4
#: What a worker may report: a worker never says its own death.
_WORKER_RESULT_CODES = {bytes((kind,)): kind for kind in (TaskResultType.SUCCESS, TaskResultType.FAILED)}


def load_secret_certificate(path: str | os.PathLike[str]) -> tuple[bytes, bytes]:
    """``(public, secret)`` from a ZeroMQ secret certificate file; a clear
    ``ValueError`` for a file that holds no secret key (a public
    certificate passed by mistake) or cannot be read."""
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(os.fspath(path))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read the CURVE certificate {os.fspath(path)!r}: {error}") from None
    if secret is None:
        raise ValueError(f"{os.fspath(path)!r} holds no secret key: pass the secret certificate (.key_secret)")
    return public, secret


def _epoch_of(argument: object) -> int:
    """The cancel epoch an event's argument carries: the epoch itself for
    the cancel events, 0 (not numbered) for any other argument."""
    return argument if type(argument) is int else 0


class SchedulerTask:
    """The scheduler's record of one task: the model its lifecycle drives.

    The methods below are the callbacks named in
    ``taskfate.scheduler.lifecycle``; they run on the scheduler thread.
    """

    __slots__ = ("task_id", "client", "group_id", "payload", "dependencies", "waiting_on", "dependants", "state", "worker", "server", "result")

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
        self.result: bytes | None = None  # a success's payload, for dependants

    def enqueue(self, _: object) -> None:
        self.server._enqueue(self)

    def start_on_worker(self, worker: bytes) -> None:
        self.worker = worker
        self.server._start(self, worker)

    def send_result(self, answer: tuple[TaskResultType, bytes]) -> None:
        result_type, payload = answer
        if result_type == TaskResultType.SUCCESS and self.group_id is not None:
            self.result = payload
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

    # The three answers echo the epoch of the TaskCancel they answer: the
    # cancel events' argument (Scheduler._cancel). Fired by anything else (a
    # cancelled dependency, a client gone) they speak on their own: epoch 0.

    def send_canceled(self, epoch: object) -> None:
        self.server._confirm(self.client, self.task_id, CancelConfirmType.CANCELED, _epoch_of(epoch))

    def send_cancel_failed(self, epoch: object) -> None:
        self.server._confirm(self.client, self.task_id, CancelConfirmType.CANCEL_FAILED, _epoch_of(epoch))

    def send_not_found(self, epoch: object) -> None:
        self.server._confirm(self.client, self.task_id, CancelConfirmType.CANCEL_NOT_FOUND, _epoch_of(epoch))

    def forget(self, _: object) -> None:
        self.server._forget(self)


@dataclass
class _Worker:
    identity: bytes  # secret: random, handed over in the environment
    name: str  # for logs: w0, w1, ...
    process: subprocess.Popen[bytes]
    exit_fd: int | None  # a pidfd, readable once the process exits (Linux)
    owner: bytes | None = None  # the one client whose code it may run
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
    queued_bytes: int = 0  # payloads not yet handed to a worker


class _Outcome(NamedTuple):
    """How a finished graph node ended, kept while its graph may still
    send dependants: only tasks of the same ``client`` and ``group_id``
    may use it."""

    client: bytes
    group_id: TaskID
    state: str
    result: bytes | None


class _Inbox:
    """Reads a ROUTER socket one message at a time, never taking more than
    ``max_frames`` frames of a message (after the identity) into Python.

    The rest of a longer message is discarded in slices of
    ``_DISCARD_SLICE`` frames per call, so a message of millions of frames
    costs the loop a few milliseconds per turn rather than seconds at once.
    """

    def __init__(self, socket: zmq.Socket[Any], max_frames: int) -> None:
        self.socket = socket
        self.max_frames = max_frames
        self.discarding = False

    def receive(self) -> tuple[list[bytes], bool] | None:
        """``(frames, complete)`` for the next message, or None when nothing
        is waiting or an over-long message is still being discarded
        (:attr:`discarding`); ``complete`` is False for a message cut short."""
        socket = self.socket
        if self.discarding:
            for _ in range(_DISCARD_SLICE):
                if not socket.getsockopt(zmq.RCVMORE):
                    self.discarding = False
                    break
                socket.recv(copy=False)
            else:
                return None
        try:
            frames: list[bytes] = [socket.recv(zmq.NOBLOCK)]
        except zmq.Again:
            return None
        limit = self.max_frames + 1
        while socket.getsockopt(zmq.RCVMORE):
            if len(frames) == limit:
                self.discarding = True
                return frames, False
            frames.append(socket.recv())
        return frames, True


class Scheduler:
    """A scheduler with ``workers`` worker processes, serving ``address``.

    Use as a context manager (starts on enter, stops on exit) or call
    :meth:`start` / :meth:`stop`; :meth:`serve_forever` runs it in the
    calling thread instead. ``address`` may end in ``:*`` for a free port;
    :attr:`address` then tells the one bound.

    CURVE: ``curve_certificate`` is the scheduler's secret certificate file
    (as ``zmq.auth.create_certificates`` writes it; or pass the raw
    ``curve_secret_key`` and ``curve_public_key``), and ``curve_clients`` a
    directory of the public certificates of the clients it admits, checked by
    pyzmq's authenticator on every connection. Either both or neither.

    ``isolate_clients`` (default on): a worker runs the tasks of one client
    only, and is replaced by a fresh process before it serves another.
    ``max_client_tasks`` and ``max_client_bytes`` bound what one client may
    hold (unfinished tasks; payload bytes waiting for a worker); a task over
    either is refused with a failure. ``max_dependencies`` bounds the
    dependencies one task may name.
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
        max_client_tasks: int = DEFAULT_MAX_CLIENT_TASKS,
        max_client_bytes: int = DEFAULT_MAX_CLIENT_BYTES,
        isolate_clients: bool = True,
        curve_certificate: str | os.PathLike[str] | None = None,
        curve_clients: str | os.PathLike[str] | None = None,
        curve_secret_key: bytes | None = None,
        curve_public_key: bytes | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("a scheduler needs at least one worker")
        if curve_certificate is not None:
            if curve_secret_key is not None or curve_public_key is not None:
                raise ValueError("pass curve_certificate or the raw CURVE keys, not both")
            curve_public_key, curve_secret_key = load_secret_certificate(curve_certificate)
        if (curve_secret_key is None) != (curve_public_key is None):
            raise ValueError("CURVE needs both the secret and the public key")
        if (curve_secret_key is None) != (curve_clients is None):
            raise ValueError(
                "CURVE needs both the scheduler's keys and curve_clients, the directory of admitted "
                "clients' public certificates: encryption without an allow-list would admit anyone"
            )
        if curve_clients is not None and not os.path.isdir(curve_clients):
            raise ValueError(f"curve_clients {os.fspath(curve_clients)!r} is not a directory")
        self.requested_address = address
        self.address = address
        self.n_workers = workers
        self.faults = faults or FaultPlan()
        self.heartbeat_interval = heartbeat_interval
        self.client_timeout = client_timeout
        self.max_frame_size = max_frame_size
        self.max_dependencies = max_dependencies
        self.max_client_tasks = max_client_tasks
        self.max_client_bytes = max_client_bytes
        self.isolate_clients = isolate_clients
        self.stats: collections.Counter[str] = collections.Counter()
        self._curve = (curve_secret_key, curve_public_key)
        self._curve_clients = None if curve_clients is None else os.fspath(curve_clients)
        self._authenticator: Any = None
        self._malformed = MalformedInputLog(_log, "dropped malformed frames")
        self._unexpected = MalformedInputLog(_log, "dropped a message clients do not send")
        self._refusals = MalformedInputLog(_log, "refused a task")
        self._worker_errors = MalformedInputLog(_log, "retired a worker that broke the worker protocol")
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
        # Finished graph nodes, by task id and by graph, until the graph has
        # had no live node for client_timeout seconds.
        self._finished: dict[TaskID, _Outcome] = {}
        self._group_finished: dict[TaskID, list[TaskID]] = {}
        self._group_due: dict[TaskID, float] = {}
        self._expiring: collections.deque[tuple[float, TaskID]] = collections.deque()
        self._clients: dict[bytes, _Client] = {}
        # Ready tasks, one queue per client, and the clients with ready
        # tasks in the order their turns come (each at most once).
        self._ready: dict[bytes, collections.deque[SchedulerTask]] = {}
        self._turns: collections.deque[bytes] = collections.deque()
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
        self._clients_socket.setsockopt(zmq.MAXMSGSIZE, min(self.max_frame_size * _HARD_FRAME_FACTOR, 2**62))
        secret, public = self._curve
        if secret is not None:
            from zmq.auth.thread import ThreadAuthenticator

            # pyzmq's ZAP handler, on its own thread in our context: every
            # CURVE handshake is checked against the certificates in the
            # directory (read once, here), before any message is delivered.
            self._authenticator = ThreadAuthenticator(self._context, log=logging.getLogger("taskfate.scheduler.auth"))
            self._authenticator.start()
            self._authenticator.configure_curve(domain="*", location=self._curve_clients)
            admitted = len(self._authenticator.certs.get("*", {}))
            if not admitted:
                _log.warning("no client certificates in %s: no client will be admitted", self._curve_clients)
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
        self._clients_inbox = _Inbox(self._clients_socket, MAX_FRAMES)
        self._workers_inbox = _Inbox(self._workers_socket, _WORKER_MAX_FRAMES)
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
                _log.warning("worker %s did not exit", worker.name)
            worker.close()
        self._workers.clear()
        self._clients_socket.close(0)
        self._workers_socket.close(0)
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
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
            if self._clients_inbox.discarding or self._workers_inbox.discarding:
                wait = 0.0  # the rest of an over-long message is still to go
            ready = dict(poller.poll(int(wait * 1000) + 1))
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass
            if self._clients_socket in ready or self._clients_inbox.discarding:
                self._drain_clients()
            if self._workers_socket in ready or self._workers_inbox.discarding:
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
        inbox = self._clients_inbox
        for _ in range(1000):  # stay fair to workers under a flood
            received = inbox.receive()
            if received is None:
                return
            (identity, *body), complete = received
            if not complete:
                self.stats["malformed"] += 1
                self._malformed.report(f"client {identity.hex()}", f"a message of more than {MAX_FRAMES} frames")
                continue
            try:
                message = decode(body, max_frame_size=self.max_frame_size, max_dependencies=self.max_dependencies)
            except ProtocolError as error:
                self.stats["malformed"] += 1
                self._malformed.report(f"client {identity.hex()}", error.reason)
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
            self._unexpected.report(f"client {identity.hex()}", kind.__name__)

    def _refuse_unreadable_task(self, identity: bytes, body: list[bytes], error: ProtocolError) -> None:
        """A Task frame set that names its task id but cannot be accepted
        (too large, say) is answered with a failure, so its future ends."""
        if len(body) >= 2 and body[0] == b"TK" and len(body[1]) == TASK_ID_SIZE:
            refusal = RuntimeError(f"the scheduler refused the task: {error.reason}")
            self._to_client(identity, TaskResult(TaskID(body[1]), TaskResultType.FAILED, dump_error(refusal)))

    def _refuse(self, identity: bytes, task: Task, reason: str) -> None:
        self.stats["refused"] += 1
        self._refusals.report(f"client {identity.hex()}", f"task {task.task_id.hex()}: {reason}")
        error = RuntimeError(f"the scheduler refused the task: {reason}")
        self._to_client(identity, TaskResult(task.task_id, TaskResultType.FAILED, dump_error(error)))

    def _submit(self, identity: bytes, client: _Client, task: Task) -> None:
        held = self._tasks.get(task.task_id)
        if held is not None or task.task_id in self._finished:
            # A task id is the client's own choice: a repeat changes nothing,
            # and someone else's id gets no answer that would say it exists.
            self.stats["duplicate_task"] += 1
            return
        if len(client.tasks) >= self.max_client_tasks:
            self._refuse(identity, task, f"this client already has {len(client.tasks)} unfinished tasks, the limit is {self.max_client_tasks}")
            return
        if client.queued_bytes + len(task.payload) > self.max_client_bytes:
            self._refuse(
                identity,
                task,
                f"this client's queued payloads would reach {client.queued_bytes + len(task.payload)} bytes, "
                f"over the limit of {self.max_client_bytes}",
            )
            return
        if task.dependencies and task.group_id is None:
            self._refuse(identity, task, "a task with dependencies must belong to a group (graph)")
            return
        parents: list[SchedulerTask] = []
        failed: TaskID | None = None
        canceled = False
        for dependency in task.dependencies:
            # Only a node of this client's own graph, live or finished, may
            # be named: anything else (another client's, another group's,
            # unknown, the task itself) gets the same answer, which says
            # nothing about whether that id exists.
            parent = self._tasks.get(dependency)
            if parent is not None and parent.client == identity and parent.group_id == task.group_id:
                parents.append(parent)
                continue
            outcome = self._finished.get(dependency) if parent is None else None
            if outcome is None or outcome.client != identity or outcome.group_id != task.group_id:
                self._refuse(identity, task, f"dependency {dependency.hex()} is not an earlier task of this client's group")
                return
            if outcome.state == slc.FAILED and failed is None:
                failed = dependency
            elif outcome.state == slc.CANCELED:
                canceled = True
        record = SchedulerTask(self, identity, task)
        self._tasks[task.task_id] = record
        client.tasks.add(task.task_id)
        client.queued_bytes += len(task.payload)
        if task.group_id is not None:
            self._groups.setdefault(task.group_id, set()).add(task.task_id)
        self.stats["tasks"] += 1
        for parent in parents:
            record.waiting_on.add(parent.task_id)
            parent.dependants.append(record)
        if failed is not None:
            self._fire(record, slc.DEPENDENCY_FAILED, failed)
        elif canceled:
            self._fire(record, slc.DEPENDENCY_CANCELED)
        elif not record.waiting_on:
            self._fire(record, slc.DEPENDENCIES_MET)

    def _cancel(self, identity: bytes, cancel: TaskCancel) -> None:
        event = slc.CANCEL_FORCE if cancel.force else slc.CANCEL_GENTLE
        # A client may cancel only its own tasks; anyone else's are, to it,
        # not found (and the answer goes to the one who asked).
        record = self._tasks.get(cancel.task_id)
        if record is not None and record.client == identity:
            self._fire(record, event, cancel.epoch)
            return
        members = self._groups.get(cancel.task_id)
        if members and record is None:
            owned = [m for m in members if self._tasks[m].client == identity]
            # Members cancelled along the way (as dependants) are skipped.
            for member_id in owned:
                member = self._tasks.get(member_id)
                if member is not None:
                    self._fire(member, event, cancel.epoch)
            if owned:
                return
        self._confirm(identity, cancel.task_id, CancelConfirmType.CANCEL_NOT_FOUND, cancel.epoch)

    def _client_gone(self, identity: bytes, why: str) -> None:
        client = self._clients.pop(identity, None)
        if client is None:
            return
        _log.info("client %s %s; freeing %d tasks", identity.hex(), why, len(client.tasks))
        for task_id in list(client.tasks):
            record = self._tasks.get(task_id)
            if record is not None:
                self._fire(record, slc.CLIENT_GONE)
        if self._ready.pop(identity, None) is not None:
            self._turns.remove(identity)

    def _heartbeat(self, now: float) -> None:
        while self._expiring and self._expiring[0][0] <= now:
            due, group_id = self._expiring.popleft()
            if group_id not in self._groups and self._group_due.get(group_id) == due:
                del self._group_due[group_id]
                for task_id in self._group_finished.pop(group_id, ()):
                    self._finished.pop(task_id, None)
        for report in (self._malformed, self._unexpected, self._refusals, self._worker_errors):
            report.flush()
        # A client is judged silent only once its input has been read: while
        # messages wait (a flood from someone else ahead of them), its
        # heartbeats may be among them.
        events: int = self._clients_socket.getsockopt(zmq.EVENTS)  # type: ignore[assignment]
        behind = self._clients_inbox.discarding or bool(events & zmq.POLLIN)
        for identity, client in list(self._clients.items()):
            if now - client.last_seen > self.client_timeout and not behind:
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
            client.queued_bytes -= len(record.payload)  # nothing if it had started
        record.payload = b""
        group_id = record.group_id
        if group_id is not None:
            # Kept for nodes still on their way (a graph arrives as a burst
            # of messages, not atomically), and only for them: the same
            # client and group.
            self._finished[record.task_id] = _Outcome(record.client, group_id, record.state, record.result)
            self._group_finished.setdefault(group_id, []).append(record.task_id)
            members = self._groups.get(group_id)
            if members is not None:
                members.discard(record.task_id)
                if not members:
                    # The graph's live part is over: its outcomes go once it
                    # has stayed over for client_timeout.
                    del self._groups[group_id]
                    due = time.monotonic() + self.client_timeout
                    self._group_due[group_id] = due
                    self._expiring.append((due, group_id))

    def _confirm(self, identity: bytes, task_id: TaskID, kind: CancelConfirmType, epoch: int) -> None:
        if self.faults.silent_cancels:
            self.stats["silenced_confirms"] += 1
            return
        self._to_client(identity, TaskCancelConfirm(task_id, kind, epoch))

    # -- Workers -------------------------------------------------------------------

    def _add_worker(self, owner: bytes | None = None) -> None:
        """Start a worker process. Its identity is random and reaches it
        through the environment, so another local process that connects to
        the worker socket cannot pass for it (nor learn its name from
        ``ps``); ``owner`` promises it to one client before it has run
        anything."""
        number = next(self._worker_ids)
        identity = os.urandom(16).hex().encode()
        process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                worker_protocol.LAUNCH,
                self._workers_address,
                str(os.getpid()),
                str(self.max_frame_size),
            ],
            stdin=subprocess.DEVNULL,
            env={**os.environ, WORKER_IDENTITY_ENV: identity.decode()},
        )
        try:
            exit_fd: int | None = os.pidfd_open(process.pid)
        except (AttributeError, OSError):
            exit_fd = None
        self._workers[identity] = _Worker(identity, f"w{number}", process, exit_fd, owner=owner)

    def _drain_workers(self) -> None:
        inbox = self._workers_inbox
        for _ in range(1000):
            received = inbox.receive()
            if received is None:
                return
            (identity, *body), complete = received
            worker = self._workers.get(identity)
            if worker is None:
                self.stats["worker_strangers"] += 1  # not a worker of ours: no answer
                continue
            if worker.killed:
                continue  # a worker we stopped: its last words do not count
            problem = self._on_worker_message(worker, body) if complete else "a message of too many frames"
            if problem is not None:
                self.stats["worker_malformed"] += 1
                self._worker_errors.report(f"worker {worker.name}", problem)
                record = worker.task
                self._kill_worker(identity)
                if record is not None:
                    record.worker = None
                    self._fire(record, slc.WORKER_LOST, f"worker {worker.name} broke the worker protocol: {problem}")

    def _on_worker_message(self, worker: _Worker, body: list[bytes]) -> str | None:
        """Act on one message from ``worker``; what is wrong with it, if
        anything (the caller then retires the worker: a worker that speaks
        garbage cannot be trusted with the next task either)."""
        kind = body[0] if body else b""
        if kind == worker_protocol.READY:
            if len(body) != 1:
                return "READY takes no frames"
            if worker.ready:
                return "READY twice"
            worker.ready = True
            self._idle.append(worker.identity)
            return None
        if kind != worker_protocol.DONE:
            return f"unknown message {kind[:16]!r}"
        if len(body) != 4:
            return f"DONE takes 3 frames, got {len(body) - 1}"
        task_id, code, payload = body[1], body[2], body[3]
        record = worker.task
        if record is None or task_id != record.task_id:
            return "DONE for a task it is not running"
        if code not in _WORKER_RESULT_CODES:
            return f"bad result type {code[:8]!r}"
        result_type = _WORKER_RESULT_CODES[code]
        worker.task = None
        record.worker = None
        self._idle.append(worker.identity)
        if len(payload) > self.max_frame_size:
            # The worker checks this itself; one that did not still must not
            # make the client refuse a frame and wait forever.
            result_type = TaskResultType.FAILED
            payload = dump_error(RuntimeError(f"result of {len(payload)} bytes is over the frame limit of {self.max_frame_size}"))
        event = slc.FINISH_SUCCESS if result_type == TaskResultType.SUCCESS else slc.FINISH_FAILURE
        self._fire(record, event, (result_type, payload))
        return None

    def _enqueue(self, record: SchedulerTask) -> None:
        queue = self._ready.get(record.client)
        if queue is None:
            queue = self._ready[record.client] = collections.deque()
            self._turns.append(record.client)
        queue.append(record)

    def _dispatch(self) -> None:
        """Hand ready tasks to idle workers, one per client in turn.

        A client whose turn comes while no idle worker may run its code
        (every idle one has served another client) skips the turn and may
        have an idle worker replaced by a fresh one promised to it: when that
        worker's owner has nothing else ready, or owns more workers than this
        client does. Clients with backlogs so come to share the pool evenly
        (and, when there are more of them than workers, take turns, each
        turn costing a process start) without taking workers from each
        other back and forth when their shares are even.
        """
        skipped: list[bytes] = []
        turns = self._turns
        while turns and self._idle:
            identity = turns.popleft()
            queue = self._ready[identity]
            while queue and queue[0].state != slc.QUEUED:
                queue.popleft()  # cancelled while queued
            if not queue:
                del self._ready[identity]
                continue
            worker = self._take_worker(identity)
            if worker is None:
                skipped.append(identity)
                self._recycle_for(identity)
                continue
            record = queue.popleft()
            if queue:
                turns.append(identity)
            else:
                del self._ready[identity]
            self._fire(record, slc.ASSIGN, worker.identity)
        turns.extendleft(reversed(skipped))  # their turn comes first next time

    def _take_worker(self, client: bytes) -> _Worker | None:
        """An idle worker that may run ``client``'s code, out of the idle list."""
        fallback: _Worker | None = None
        for identity in self._idle:
            worker = self._workers.get(identity)
            if worker is None or worker.killed:
                continue
            if not self.isolate_clients or worker.owner == client:
                fallback = worker
                break
            if worker.owner is None and fallback is None:
                fallback = worker
        if fallback is not None:
            self._idle.remove(fallback.identity)
        return fallback

    def _recycle_for(self, client: bytes) -> None:
        owned: collections.Counter[bytes | None] = collections.Counter(
            worker.owner for worker in self._workers.values() if not worker.killed
        )
        if any(not worker.ready and not worker.killed and worker.owner == client for worker in self._workers.values()):
            return  # one is already on its way
        for identity in self._idle:
            worker = self._workers.get(identity)
            if worker is None or worker.killed or worker.owner is None:
                continue
            if worker.owner not in self._ready or owned[worker.owner] > owned[client]:
                self.stats["recycled"] += 1
                self._kill_worker(identity, replacement_owner=client)
                return

    def _start(self, record: SchedulerTask, identity: bytes) -> None:
        worker = self._workers[identity]
        worker.task = record
        worker.owner = record.client
        dependency_results = [self._dependency_result(d) for d in record.dependencies]
        self._workers_socket.send_multipart([identity, worker_protocol.RUN, bytes(record.task_id), record.payload, *dependency_results])
        client = self._clients.get(record.client)
        if client is not None:
            client.queued_bytes -= len(record.payload)
        record.payload = b""  # the worker has it now
        # Tell the owner its task left the queue: informational, so faults
        # may delay, duplicate or reorder it like any other message.
        self._to_client(record.client, TaskStarted(record.task_id))

    def _dependency_result(self, task_id: TaskID) -> bytes:
        outcome = self._finished[task_id]
        assert outcome.result is not None  # only succeeded nodes release their dependants
        return outcome.result

    def _kill_worker(self, identity: bytes, replacement_owner: bytes | None = None) -> None:
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
        self._add_worker(replacement_owner)

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
        _log.warning("worker %s died (exit code %s)", worker.name, exit_code)
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
            self._fire(record, slc.WORKER_LOST, f"worker {worker.name} exited with code {exit_code}")

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
