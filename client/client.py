"""A taskfate client over ZeroMQ: one I/O thread, one DEALER socket.

ZeroMQ sockets are not thread-safe, so exactly one thread (the client's I/O
thread) touches the socket. Other threads hand it outgoing messages through a
deque and a wake-up pipe; it hands incoming messages to the
``FutureManager``, which runs the declared lifecycle. The same thread sends
heartbeats, notices a silent scheduler, and services the manager's confirm
timeouts, so a client costs one thread however many futures it holds.

Done callbacks of futures ended by the scheduler run on the I/O thread: a
callback that blocks (say, on another future's ``result()``) stalls every
future of the client. ``cancel()`` called there, or from any callback, never
waits.

A ``Client`` is a ``concurrent.futures.Executor``: code written for one
(``submit``, ``map``, ``shutdown``) runs against a scheduler unchanged.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import math
import os
import pickle
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, ParamSpec, TypeVar

import zmq
from zmq.utils.monitor import recv_monitor_message

from taskfate.client.errors import AuthenticationFailed, ConnectionLost
from taskfate.client.future import Future
from taskfate.client.manager import DEFAULT_CANCEL_TIMEOUT, FutureManager
from taskfate.fsm import lifecycle as lc
from taskfate.fsm.table import Lifecycle, get_lifecycle
from taskfate.protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    ClientDisconnect,
    Heartbeat,
    Message,
    ProtocolError,
    Task,
    TaskCancel,
    TaskID,
    TaskResult,
    TaskResultType,
    decode,
    encode,
)
from taskfate.protocol.calls import Dependency, DependencyFailed, dump_call, dump_value
from taskfate.protocol.errors import MalformedInputLog

_log = logging.getLogger("taskfate.client")

P = ParamSpec("P")
T = TypeVar("T")
#: A graph's keys, whatever hashable type the caller uses.
K = TypeVar("K", bound=Hashable)

#: Seconds of scheduler silence after which live futures fail.
DEFAULT_HEARTBEAT_TIMEOUT = 5.0
#: Seconds close() waits for the I/O thread to flush and stop.
CLOSE_TIMEOUT = 2.0
#: Of those, how long the I/O thread keeps trying to send what was queued
#: before close (the ClientDisconnect last): a scheduler that refuses the
#: connection, or is gone, would otherwise keep it trying forever.
CLOSE_FLUSH_TIMEOUT = 1.0

#: Monitor events that end a handshake in refusal, with what each means.
_HANDSHAKE_FAILURES: dict[int, str] = {
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "refused this client's credentials",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "broke off the handshake",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "broke off the handshake",
}
#: A handshake that fails with no detail is a reset connection as often as
#: a wrong server key (a listener going away as we connect, say): only so
#: many in a row, with no success between, count as a refusal.
_UNEXPLAINED_FAILURES_FOR_REFUSAL = 3


def _read_certificate(path: str | os.PathLike[str], whose: str) -> tuple[bytes, bytes | None]:
    """``(public, secret or None)`` from a ZeroMQ certificate file, with a
    ``ValueError`` that names the file."""
    import zmq.auth

    try:
        public, secret = zmq.auth.load_certificate(os.fspath(path))
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {whose} CURVE certificate {os.fspath(path)!r}: {error}") from None
    return public, secret


def _curve_keys(server_key: bytes | str | os.PathLike[str], certificate: str | os.PathLike[str] | None) -> tuple[bytes, bytes, bytes]:
    """``(server public, own public, own secret)``: ``server_key`` is the
    scheduler's z85 public key (bytes) or its certificate file; without
    ``certificate`` (this client's secret certificate file) a throwaway
    keypair, which encrypts but which no allow-list admits."""
    if not isinstance(server_key, bytes):
        server_key = _read_certificate(server_key, "the scheduler's")[0]
    if certificate is None:
        public, secret = zmq.curve_keypair()
        return server_key, public, secret
    public, own_secret = _read_certificate(certificate, "this client's")
    if own_secret is None:
        raise ValueError(f"{os.fspath(certificate)!r} holds no secret key: pass this client's secret certificate (.key_secret)")
    return server_key, public, own_secret


class CloudpickleSerializer:
    """Values travel as cloudpickle; loading is plain pickle (cloudpickle's
    output is ordinary pickle data). Trusted peers only: loading runs code."""

    def dumps(self, obj: Any) -> bytes:
        return dump_value(obj)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


class ClientFuture(Future[T]):
    """A future of a :class:`Client`; graph futures name failed dependencies
    by their graph key rather than by task id."""

    __slots__ = ()
    _graph_keys: Mapping[str, Hashable] | None = None

    def _failure(self) -> BaseException:
        error = super()._failure()
        keys = self._graph_keys
        if keys is not None and isinstance(error, DependencyFailed) and error.key is None:
            error.key = keys.get(error.dependency)
        return error


def _constant(value: Any) -> Any:
    return value


class Client(concurrent.futures.Executor):
    """Submit callables to a taskfate scheduler and get lifecycle-driven futures.

    A ``concurrent.futures.Executor``: ``submit``, ``map`` and ``shutdown``
    mean what the standard library's mean. Leaving a ``with`` block calls
    :meth:`close`, which ends every unfinished future cancelled within
    seconds, rather than the standard library's ``shutdown(wait=True)``,
    which waits for them all: call :meth:`shutdown` inside the block to wait.

    ``heartbeat_timeout``: seconds of silence from the scheduler after which
    every live future fails with ``ConnectionLost``. ``cancel_timeout``: the
    lifecycle's bound on waiting for a cancel's answer. ``late_result``: the
    policy for a result racing a cancel, ``"cancel"`` or ``"deliver"`` (a
    :data:`taskfate.fsm.Policy`; see docs/lifecycle.md); the client
    runs that policy's lifecycle with a ``running`` state, entered when the
    scheduler reports that a worker started the task (``TaskStarted``), so
    ``running()`` tells the truth. A :class:`~taskfate.fsm.Lifecycle` may be
    passed instead, to run a declaration of one's own.
    ``curve_server_key`` (the scheduler's CURVE public key, or its public
    certificate file) and ``curve_certificate`` (this client's secret
    certificate file, as ``zmq.auth.create_certificates`` writes it): the
    connection is encrypted, the client knows it speaks to the holder of the
    server key, and the scheduler admits the client only if its public
    certificate is in the scheduler's allow-list. A refused client's futures
    fail with ``AuthenticationFailed``. ``curve_server_key`` alone gives
    the client a throwaway keypair, which the reference scheduler refuses.
    """

    def __init__(
        self,
        address: str,
        *,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        heartbeat_interval: float | None = None,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
        late_result: lc.Policy | Lifecycle = lc.DEFAULT_POLICY,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        curve_server_key: bytes | str | os.PathLike[str] | None = None,
        curve_certificate: str | os.PathLike[str] | None = None,
    ) -> None:
        if not heartbeat_timeout > 0:
            raise ValueError("heartbeat_timeout must be a positive number of seconds")
        if heartbeat_interval is None:
            # Well inside our own timeout, and inside the scheduler's patience
            # with silent clients (10 s by default) however long ours is.
            heartbeat_interval = min(heartbeat_timeout / 5, 1.0)
        if not 0 < heartbeat_interval < heartbeat_timeout:
            raise ValueError("heartbeat_interval must be positive and shorter than heartbeat_timeout")
        self.address = address
        self.heartbeat_timeout = heartbeat_timeout
        self.heartbeat_interval = heartbeat_interval
        self.max_frame_size = max_frame_size
        self.stats: collections.Counter[str] = collections.Counter()
        if curve_certificate is not None and curve_server_key is None:
            raise ValueError("curve_certificate needs curve_server_key, the scheduler's public key")
        curve = None if curve_server_key is None else _curve_keys(curve_server_key, curve_certificate)
        self._malformed = MalformedInputLog(_log, "dropped malformed frames")
        self._refusals = MalformedInputLog(_log, "connection refused")
        # Task ids of futures failed by ConnectionLost: cancelled on the
        # scheduler as soon as one is heard again, which frees their workers
        # if it is the same scheduler come back (a new one answers "not found").
        self._orphans: set[TaskID] = set()
        # Whether the current connection finished its handshake (only then
        # can a drop have lost anything: before it, queued messages wait in
        # ZeroMQ for the next connection), and handshakes failed in a row.
        self._handshaken = False
        self._unexplained_failures = 0
        # Why the scheduler last refused us, until a handshake succeeds: a
        # future submitted after the refusal fails with it too, instead of
        # waiting for the next retry's refusal or for the silence timeout.
        self._refused: str | None = None
        self._manager = FutureManager(
            self._enqueue,
            serializer=CloudpickleSerializer(),
            lifecycle=late_result if isinstance(late_result, Lifecycle) else get_lifecycle(late_result, started=True),
            cancel_timeout=cancel_timeout,
            timer=False,
            future_class=ClientFuture,
        )
        self._outgoing: collections.deque[list[bytes]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_pending = False
        self._stopping = False
        self._closed = False
        # Why submit refuses, once it does (after close or shutdown): one
        # attribute read per submit.
        self._refusal: str | None = None
        # Set by shutdown(wait=False): the I/O thread closes the client once
        # no future is live.
        self._close_when_idle = False
        self._close_lock = threading.Lock()
        self._release_on_exit = False
        self._context: zmq.Context[Any] = zmq.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDHWM, 0)
        self._socket.setsockopt(zmq.RCVHWM, 0)
        # A fixed identity: if ZeroMQ reconnects, the scheduler still knows
        # whose tasks these are (and a restarted one knows it does not).
        self._socket.setsockopt(zmq.ROUTING_ID, os.urandom(16))
        # Oversized frames are refused by the decoder, which names the task
        # and fails its future; zmq's own MAXMSGSIZE would instead drop the
        # whole connection and lose every future with it.
        self._curve = curve is not None
        if curve is not None:
            self._socket.curve_serverkey, self._socket.curve_publickey, self._socket.curve_secretkey = curve
        # The monitor is attached before connect: the handshake may finish
        # before the I/O thread first runs (it does on a loaded machine), and
        # a monitor attached after it never hears HANDSHAKE_SUCCEEDED, so the
        # drop of that connection would be ignored as harmless.
        events = zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
        for event in _HANDSHAKE_FAILURES:
            events |= event
        self._monitor: zmq.Socket[Any] = self._socket.get_monitor_socket(events)
        self._socket.connect(address)
        self._thread = threading.Thread(target=self._run, name="taskfate-client-io", daemon=True)
        self._thread.start()
        self._manager.mark_service_thread(self._thread.ident)

    # -- Public surface -------------------------------------------------------------

    @property
    def manager(self) -> FutureManager:
        """The sans-I/O manager holding this client's futures."""
        return self._manager

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn(*args, **kwargs)`` on a worker; its future, whose
        ``result()`` is what ``fn`` returns."""
        self._check_open()
        return self._manager.submit(Task(TaskID.new(), dump_call(fn, args, kwargs)))

    def map(
        self,
        fn: Callable[..., T],
        *iterables: Iterable[Any],
        timeout: float | None = None,
        chunksize: int = 1,
        buffersize: int | None = None,
    ) -> Iterator[T]:
        """As ``concurrent.futures.Executor.map``: ``fn`` over the iterables'
        items, the results in order; ``timeout`` counts from this call.

        Every call is submitted up front, or with ``buffersize`` (as in
        Python 3.14) at most that many ahead of the result being read, so the
        iterables may be endless. Leaving the iterator early, or a call that
        raises or times out, asks the scheduler to cancel what is left
        (without waiting). ``chunksize`` is accepted and ignored, as by
        ``ThreadPoolExecutor``: each call is one task.
        """
        if buffersize is not None:
            if not isinstance(buffersize, int):
                raise TypeError("buffersize must be an integer or None")
            if buffersize < 1:
                raise ValueError("buffersize must be None or > 0")
        deadline = None if timeout is None else time.monotonic() + timeout
        calls = zip(*iterables)
        futures = collections.deque(self.submit(fn, *args) for args in (calls if buffersize is None else itertools.islice(calls, buffersize)))

        def results() -> Iterator[T]:
            try:
                while futures:
                    if buffersize is not None:
                        args = next(calls, None)
                        if args is not None:
                            futures.append(self.submit(fn, *args))
                    # Removed only once its result is in: a timeout or an
                    # error here cancels it with the rest.
                    if deadline is None:
                        value = futures[0].result()
                    else:
                        value = futures[0].result(max(0.0, deadline - time.monotonic()))
                    futures.popleft()
                    yield value
            finally:
                for future in futures:
                    future.cancel(timeout=0)

        return results()

    def submit_graph(self, graph: Mapping[K, Any], keys: Iterable[K]) -> dict[K, Future[Any]]:
        """Submit a task graph; futures for ``keys``.

        ``graph`` maps a key to a value or to a task tuple ``(fn, *args)``;
        an argument that is a key of the graph stands for that node's result.
        Every node becomes one task of a shared group: cancelling any returned
        future cancels the whole graph, and a node that fails or is cancelled
        ends its dependants (a dependant fails with ``DependencyFailed``
        naming the node by its key). The futures are ``Future[Any]``: what
        each node returns is not in the graph's type.
        """
        self._check_open()
        wanted = list(keys)
        for key in wanted:
            if key not in graph:
                raise KeyError(f"{key!r} is not a key of the graph")
        order = _topological_order(graph)
        group_id = TaskID.new()
        ids = {key: TaskID.new() for key in order}
        names = {ids[key].hex(): key for key in order}
        tasks = []
        for key in order:
            spec = graph[key]
            dependencies: list[TaskID] = []
            if _is_task(spec):
                fn, raw_args = spec[0], spec[1:]
                args = []
                for arg in raw_args:
                    if _is_key(arg, graph):
                        args.append(Dependency(len(dependencies)))
                        dependencies.append(ids[arg])
                    else:
                        args.append(arg)
                payload = dump_call(fn, args)
            else:
                payload = dump_call(_constant, (spec,))
            tasks.append(Task(ids[key], payload, group_id, tuple(dependencies)))
        futures: dict[K, Future[Any]] = {}
        for key, task in zip(order, tasks):
            future = self._manager.track(task.task_id, group_id)
            future._graph_keys = names  # type: ignore[attr-defined]
            futures[key] = future
        for task in tasks:
            self._enqueue(task)
        return {key: futures[key] for key in wanted}

    def clear(self) -> None:
        """Cancel every unfinished future and wait (bounded by the cancel
        timeout) until each has ended.

        Every pending future gets a forced ``TaskCancel``. A future whose own
        gentle cancel was in flight and is refused comes back to pending and
        is asked again, forcefully, so it ends cancelled too (unless, under
        ``late_result="deliver"``, its result wins). From a done callback or
        the I/O thread it only sends the requests: waiting there would block
        the answers.
        """
        manager = self._manager
        manager.clear()
        if not manager.may_block():
            return
        deadline = time.monotonic() + manager.cancel_timeout + 1.0
        while True:
            live = manager.live_futures()
            remaining = deadline - time.monotonic()
            if not live or remaining <= 0:
                break
            concurrent.futures.wait(live, timeout=min(remaining, 0.05), return_when=concurrent.futures.FIRST_COMPLETED)
            manager.clear()  # refused gentle cancels are live again: force them
        manager.expire()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """As ``concurrent.futures.Executor.shutdown``: refuse new tasks, and
        close the client once every unfinished future has ended.

        ``cancel_futures=True`` first asks the scheduler to cancel every
        future that is not running, gently: a task a worker has started in
        the meantime is refused and runs on, as the standard library leaves
        running futures alone. Each of those cancels ends its future within
        ``cancel_timeout`` (the lifecycle's bound on a cancel's answer).

        With ``wait=True`` this returns once every future has ended (a
        running task's when it finishes, however long that takes) and the
        client is closed. With ``wait=False`` it returns at once, and the
        I/O thread closes the client when the last future ends. From a done
        callback or the I/O thread it never waits, as if ``wait=False``.
        Calling it again, or after :meth:`close`, is harmless; :meth:`close`
        still ends everything at once.
        """
        with self._close_lock:
            if self._closed:
                return
            if self._refusal is None:
                self._refusal = "cannot schedule new futures after shutdown"
        manager = self._manager
        if cancel_futures:
            for future in manager.live_futures():
                if not future.running():
                    future.cancel(timeout=0, force=False)
        if wait and manager.may_block():
            # Futures a submit racing this call added are waited for too.
            while live := manager.live_futures():
                concurrent.futures.wait(live)
            self.close()
        else:
            self._close_when_idle = True
            self._wake()

    def close(self) -> None:
        """End every unfinished future cancelled, tell the scheduler, stop.

        Returns within about ``CLOSE_TIMEOUT`` seconds even when the scheduler
        is gone. Idempotent.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            if self._refusal is None:  # after shutdown, submit keeps saying so
                self._refusal = "the client is closed"
        self._manager.close()
        self._enqueue(ClientDisconnect())
        self._stopping = True
        self._wake()
        if threading.current_thread() is self._thread:
            self._release_on_exit = True  # closed from a done callback: the loop cleans up as it ends
            return
        self._thread.join(CLOSE_TIMEOUT)
        if not self._thread.is_alive():
            self._release()
        else:
            _log.warning("client I/O thread did not stop within %ss", CLOSE_TIMEOUT)

    def _release(self) -> None:
        """Free the context and the wake-up pipe once the I/O thread is done."""
        self._context.term()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def __exit__(self, *exc: object) -> None:
        """Leaving a ``with`` block closes the client: see the class's doc."""
        self.close()

    # -- Outgoing --------------------------------------------------------------------

    def _check_open(self) -> None:
        refusal = self._refusal
        if refusal is not None:
            raise RuntimeError(refusal)

    def _enqueue(self, message: Message) -> None:
        """The manager's ``send``: callable from any thread."""
        if self._stopping:
            raise RuntimeError("the client is closed")
        frames = encode(message)
        for frame in frames:
            if len(frame) > self.max_frame_size:
                raise ValueError(f"a frame of {len(frame)} bytes is over max_frame_size={self.max_frame_size}")
        self._outgoing.append(frames)
        if not self._wake_pending:
            self._wake()

    def _wake(self) -> None:
        self._wake_pending = True
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full or closed: the I/O thread is awake anyway

    # -- The I/O thread ------------------------------------------------------------------

    def _run(self) -> None:
        socket = self._socket
        # A dropped TCP connection means the scheduler went away (or was
        # restarted and forgot us); ZeroMQ would reconnect silently. The
        # monitor was made in __init__ and is used only here from now on.
        monitor = self._monitor
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        blocked = False
        now = time.monotonic()
        last_heard = now
        next_heartbeat = now
        flush_deadline: float | None = None
        try:
            while True:
                now = time.monotonic()
                silence_check = last_heard + self.heartbeat_timeout
                if silence_check <= now:  # already silent: look again each beat
                    silence_check = next_heartbeat
                wake_at = min(next_heartbeat, silence_check)
                deadline = self._manager.next_deadline()
                if deadline is not None:
                    wake_at = min(wake_at, deadline)
                if self._outgoing:
                    poll_ms = 10 if blocked else 0  # back off while the socket refuses more
                else:
                    poll_ms = max(0, math.ceil((wake_at - now) * 1000))
                ready = dict(poller.poll(poll_ms))
                if self._wake_r in ready:
                    # Drain first, then clear the flag: a sender that sets the
                    # flag after this point also writes a byte we will see.
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                    self._wake_pending = False
                if socket in ready:
                    if self._receive(socket):
                        last_heard = time.monotonic()
                        if self._orphans:
                            self._cancel_orphans()
                if monitor in ready:
                    self._on_monitor_event(monitor)
                blocked = not self._flush(socket)
                now = time.monotonic()
                if self._stopping:
                    # Flush what close queued, but only for so long: a
                    # scheduler that is gone or refuses us never takes it.
                    if flush_deadline is None:
                        flush_deadline = now + CLOSE_FLUSH_TIMEOUT
                    if not self._outgoing:
                        return
                    if now >= flush_deadline:
                        self.stats["unsent_at_close"] += len(self._outgoing)
                        _log.info("closing with %d messages the scheduler at %s did not take", len(self._outgoing), self.address)
                        self._outgoing.clear()
                        return
                    continue  # no heartbeats, no timeouts: only the flush
                if now >= next_heartbeat:
                    next_heartbeat = now + self.heartbeat_interval
                    self._outgoing.append(encode(Heartbeat()))
                if now - last_heard > self.heartbeat_timeout and len(self._manager):
                    self.stats["connection_lost"] += 1
                    _log.warning("scheduler at %s silent for %.1fs; failing live futures", self.address, now - last_heard)
                    self._lose(ConnectionLost(f"scheduler at {self.address} silent for more than {self.heartbeat_timeout}s"))
                self._malformed.flush()
                self._refusals.flush()
                if self._refused is not None and len(self._manager):
                    self._lose(AuthenticationFailed(self._refused))
                self._manager.expire()
                if self._close_when_idle and not len(self._manager):
                    self.close()  # on this thread: the loop's next turn flushes and stops
        except Exception:
            _log.exception("client I/O thread crashed; failing live futures")
            self._manager.connection_lost(ConnectionLost("the client's I/O thread crashed"))
        finally:
            socket.disable_monitor()
            monitor.close(0)
            socket.close(linger=100 if self._stopping else 0)
            if self._release_on_exit:
                self._release()

    def _receive(self, socket: zmq.Socket[Any]) -> bool:
        heard = False
        for _ in range(10_000):  # bounded so outgoing traffic is not starved
            try:
                frames = socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            heard = True
            try:
                message = decode(frames, max_frame_size=self.max_frame_size)
            except ProtocolError as error:
                self.stats["malformed"] += 1
                self._malformed.report(f"the scheduler at {self.address}", error.reason)
                self._fail_unreadable_result(frames, error)
                continue
            if type(message) is not Heartbeat:
                self._manager.on_message(message)
        return heard

    def _fail_unreadable_result(self, frames: list[bytes], error: ProtocolError) -> None:
        """A result we cannot accept (too large, say) still ends its future:
        it fails with the reason instead of waiting forever."""
        if len(frames) >= 2 and frames[0] == b"TR" and len(frames[1]) == 16:
            failure = RuntimeError(f"the task's result could not be received: {error.reason}")
            self._manager.on_message(TaskResult(TaskID(frames[1]), TaskResultType.FAILED, dump_value(failure)))

    def _on_monitor_event(self, monitor: zmq.Socket[Any]) -> None:
        try:
            event = recv_monitor_message(monitor, zmq.NOBLOCK)
        except zmq.Again:
            return
        if self._stopping:
            return
        kind = event["event"]
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._handshaken = True
            self._unexplained_failures = 0
            self._refused = None
        elif kind in _HANDSHAKE_FAILURES:
            # The handshake failure comes first, the disconnect after it:
            # the futures fail with the reason, not a bare "dropped".
            self.stats["handshake_failed"] += 1
            if kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                self._unexplained_failures += 1
                if self._unexplained_failures < _UNEXPLAINED_FAILURES_FOR_REFUSAL:
                    return
            if self._curve:
                hint = (
                    "is this client's public certificate in the scheduler's --curve-clients directory?"
                    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    else "is curve_server_key the scheduler's public key, and does the scheduler use CURVE?"
                )
            else:
                hint = "the scheduler may require CURVE (curve_server_key, curve_certificate)"
            reason = f"the scheduler at {self.address} {_HANDSHAKE_FAILURES[kind]} (status {event['value']}): {hint}"
            self._refusals.report(self.address, reason)
            self._refused = reason
            if len(self._manager):
                self._lose(AuthenticationFailed(reason))
        elif kind == zmq.EVENT_DISCONNECTED:
            handshaken, self._handshaken = self._handshaken, False
            if handshaken and len(self._manager):
                self.stats["connection_lost"] += 1
                _log.warning("connection to the scheduler at %s dropped; failing live futures", self.address)
                self._lose(ConnectionLost(f"the connection to the scheduler at {self.address} dropped"))

    def _lose(self, error: ConnectionLost) -> None:
        """Fail every live future with ``error``, remembering their tasks so
        that a scheduler heard from again is asked to cancel them."""
        self._orphans.update(future.task_id for future in self._manager.live_futures())
        self._manager.connection_lost(error)

    def _cancel_orphans(self) -> None:
        """A scheduler answers again: cancel every task whose future was
        failed by a lost connection. The scheduler that ran them (back from
        a stall or a network cut) stops them and frees their workers; one
        that restarted answers "not found". The confirms reach no future."""
        self.stats["orphans_cancelled"] += len(self._orphans)
        for task_id in self._orphans:
            self._outgoing.append(encode(TaskCancel(task_id, True)))
        self._orphans.clear()

    def _flush(self, socket: zmq.Socket[Any]) -> bool:
        """Send what is queued; False when the socket refused more for now."""
        outgoing = self._outgoing
        while outgoing:
            frames = outgoing[0]
            try:
                socket.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again:
                return False  # retried on the next turn of the loop
            outgoing.popleft()
        return True


def _is_task(spec: Any) -> bool:
    return isinstance(spec, tuple) and len(spec) > 0 and callable(spec[0])


def _is_key(value: Any, graph: Mapping[Any, Any]) -> bool:
    try:
        return value in graph
    except TypeError:  # unhashable arguments are plain values
        return False


def _topological_order(graph: Mapping[K, Any]) -> list[K]:
    """Keys with every node after the nodes it depends on; ``ValueError`` on a cycle."""
    order: list[K] = []
    state: dict[K, int] = {}  # 1: visiting, 2: done
    for root in graph:
        if state.get(root) == 2:
            continue
        stack: list[tuple[K, Iterator[K]]] = [(root, iter(_dependencies(graph, root)))]
        state[root] = 1
        while stack:
            key, children = stack[-1]
            for child in children:
                mark = state.get(child)
                if mark == 1:
                    raise ValueError(f"the graph has a cycle through {child!r}")
                if mark is None:
                    state[child] = 1
                    stack.append((child, iter(_dependencies(graph, child))))
                    break
            else:
                stack.pop()
                state[key] = 2
                order.append(key)
    return order


def _dependencies(graph: Mapping[K, Any], key: K) -> list[K]:
    spec = graph[key]
    if not _is_task(spec):
        return []
    return [arg for arg in spec[1:] if _is_key(arg, graph)]
