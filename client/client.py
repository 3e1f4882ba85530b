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
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import math
import os
import pickle
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from taskfate.client.errors import ConnectionLost
from taskfate.client.future import Future
from taskfate.client.manager import DEFAULT_CANCEL_TIMEOUT, FutureManager
from taskfate.fsm import lifecycle as lc
from taskfate.fsm.table import Lifecycle
from taskfate.protocol import (
    DEFAULT_MAX_FRAME_SIZE,
    ClientDisconnect,
    Heartbeat,
    Message,
    ProtocolError,
    Task,
    TaskID,
    TaskResult,
    TaskResultType,
    decode,
    encode,
)
from taskfate.protocol.calls import Dependency, DependencyFailed, dump_call, dump_value

_log = logging.getLogger("taskfate.client")

#: Seconds of scheduler silence after which live futures fail.
DEFAULT_HEARTBEAT_TIMEOUT = 5.0
#: Seconds close() waits for the I/O thread to flush and stop.
CLOSE_TIMEOUT = 2.0


class CloudpickleSerializer:
    """Values travel as cloudpickle; loading is plain pickle (cloudpickle's
    output is ordinary pickle data). Trusted peers only: loading runs code."""

    def dumps(self, obj: Any) -> bytes:
        return dump_value(obj)

    def loads(self, data: bytes) -> Any:
        return pickle.loads(data)


class ClientFuture(Future):
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


class Client:
    """Submit callables to a taskfate scheduler and get lifecycle-driven futures.

    ``heartbeat_timeout``: seconds of silence from the scheduler after which
    every live future fails with ``ConnectionLost``. ``cancel_timeout``: the
    lifecycle's bound on waiting for a cancel's answer. ``late_result``: the
    policy for a result racing a cancel (see docs/lifecycle.md).
    ``curve_server_key``: the scheduler's CURVE public key, to encrypt and
    authenticate beyond loopback.
    """

    def __init__(
        self,
        address: str,
        *,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        heartbeat_interval: float | None = None,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
        late_result: str | Lifecycle = lc.DEFAULT_POLICY,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        curve_server_key: bytes | None = None,
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
        self._manager = FutureManager(
            self._enqueue,
            serializer=CloudpickleSerializer(),
            late_result=late_result,
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
        if curve_server_key is not None:
            public, secret = zmq.curve_keypair()
            self._socket.curve_serverkey = curve_server_key
            self._socket.curve_publickey = public
            self._socket.curve_secretkey = secret
        self._socket.connect(address)
        self._thread = threading.Thread(target=self._run, name="taskfate-client-io", daemon=True)
        self._thread.start()
        self._manager.mark_service_thread(self._thread.ident)

    # -- Public surface -------------------------------------------------------------

    @property
    def manager(self) -> FutureManager:
        """The sans-I/O manager holding this client's futures."""
        return self._manager

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on a worker; its future."""
        self._check_open()
        return self._manager.submit(Task(TaskID.new(), dump_call(fn, args, kwargs)))

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any], timeout: float | None = None) -> Iterator[Any]:
        """As ``concurrent.futures.Executor.map``: results in order; every
        call is submitted up front; leaving the iterator early asks the
        scheduler to cancel what is left (without waiting)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        futures = [self.submit(fn, *args) for args in zip(*iterables)]

        def results() -> Iterator[Any]:
            try:
                futures.reverse()
                while futures:
                    # Popped only once its result is in: a timeout or an error
                    # here cancels it with the rest.
                    if deadline is None:
                        value = futures[-1].result()
                    else:
                        value = futures[-1].result(max(0.0, deadline - time.monotonic()))
                    futures.pop()
                    yield value
            finally:
                for future in futures:
                    future.cancel(timeout=0)

        return results()

    def submit_graph(self, graph: Mapping[Hashable, Any], keys: Iterable[Hashable]) -> dict[Hashable, Future]:
        """Submit a task graph; futures for ``keys``.

        ``graph`` maps a key to a value or to a task tuple ``(fn, *args)``;
        an argument that is a key of the graph stands for that node's result.
        Every node becomes one task of a shared group: cancelling any returned
        future cancels the whole graph, and a node that fails or is cancelled
        ends its dependants (a dependant fails with ``DependencyFailed``
        naming the node by its key).
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
        futures: dict[Hashable, Future] = {}
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
        if not manager._may_block():
            return
        deadline = time.monotonic() + manager.cancel_timeout + 1.0
        while True:
            live = manager.live_futures()
            remaining = deadline - time.monotonic()
            if not live or remaining <= 0:
                break
            concurrent.futures.wait(live, timeout=min(remaining, 0.05), return_when=concurrent.futures.FIRST_COMPLETED)
            manager.clear()  # refused gentle cancels are back in pending: force them
        manager.expire()

    def close(self) -> None:
        """End every unfinished future cancelled, tell the scheduler, stop.

        Returns within about ``CLOSE_TIMEOUT`` seconds even when the scheduler
        is gone. Idempotent.
        """
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
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

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Outgoing --------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the client is closed")

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
        # restarted and forgot us); ZeroMQ would reconnect silently.
        monitor = socket.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(monitor, zmq.POLLIN)
        blocked = False
        now = time.monotonic()
        last_heard = now
        next_heartbeat = now
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
                if monitor in ready:
                    self._on_disconnect(monitor)
                blocked = not self._flush(socket)
                if self._stopping and not self._outgoing:
                    return
                now = time.monotonic()
                if now >= next_heartbeat:
                    next_heartbeat = now + self.heartbeat_interval
                    self._outgoing.append(encode(Heartbeat()))
                if now - last_heard > self.heartbeat_timeout and len(self._manager):
                    self.stats["connection_lost"] += 1
                    _log.warning("scheduler at %s silent for %.1fs; failing live futures", self.address, now - last_heard)
                    self._manager.connection_lost(
                        ConnectionLost(f"scheduler at {self.address} silent for more than {self.heartbeat_timeout}s")
                    )
                self._manager.expire()
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
                _log.warning("dropped malformed frames from the scheduler: %s", error.reason)
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

    def _on_disconnect(self, monitor: zmq.Socket[Any]) -> None:
        try:
            event = recv_monitor_message(monitor, zmq.NOBLOCK)
        except zmq.Again:
            return
        if event["event"] == zmq.EVENT_DISCONNECTED and not self._stopping and len(self._manager):
            self.stats["connection_lost"] += 1
            _log.warning("connection to the scheduler at %s dropped; failing live futures", self.address)
            self._manager.connection_lost(ConnectionLost(f"the connection to the scheduler at {self.address} dropped"))

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


def _is_key(value: Any, graph: Mapping[Hashable, Any]) -> bool:
    try:
        return value in graph
    except TypeError:  # unhashable arguments are plain values
        return False


def _topological_order(graph: Mapping[Hashable, Any]) -> list[Hashable]:
    """Keys with every node after the nodes it depends on; ``ValueError`` on a cycle."""
    order: list[Hashable] = []
    state: dict[Hashable, int] = {}  # 1: visiting, 2: done
    for root in graph:
        if state.get(root) == 2:
            continue
        stack: list[tuple[Hashable, Iterator[Any]]] = [(root, iter(_dependencies(graph, root)))]
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


def _dependencies(graph: Mapping[Hashable, Any], key: Hashable) -> list[Hashable]:
    spec = graph[key]
    if not _is_task(spec):
        return []
    return [arg for arg in spec[1:] if _is_key(arg, graph)]
