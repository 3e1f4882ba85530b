"""taskfate's lifecycle inside OpenGRIS Scaler's client.

A Scaler program switches to taskfate's futures by changing one import::

    from taskfate.client.scaler import Client

Everything that is Scaler's stays Scaler's: its scheduler, workers, object
storage, serialization, graph tasks, heartbeats and network backends. What
changes is who decides a future's fate. Scaler's client keeps each future's
lifecycle in flags spread over the future and its manager; here every
``TaskResult`` and ``TaskCancelConfirm`` the client agent receives is mapped,
once, onto ``taskfate.protocol`` messages and handed to a
:class:`taskfate.client.FutureManager`, which executes the declared lifecycle.
So ``cancel()``, ``clear()`` and ``disconnect()`` are bounded by the
lifecycle's confirm timeout, and a cancelled graph ends every member future
even when the scheduler never confirms some of its nodes.

Plug-in points
--------------
Scaler 2.9.0 has no public hook for a different future or future manager, so
this module plugs into the construction points its client already has. They
are listed once, in :data:`PLUG_IN_POINTS`, checked at import (an upgrade that
moves one fails here, loudly, rather than later and quietly) and pinned by a
test. Nothing else of Scaler's is replaced or patched. Besides the futures
and their manager, one piece of the client agent is ours: its task
bookkeeping (:class:`TaskManager`), which in stock Scaler forgets a task
on any cancel confirm, a refused one included, and then drops the task's
result.

What the boundary maps
----------------------
Scaler's ``TaskResult`` and ``TaskCancelConfirm`` become taskfate's messages
of the same names (``_RESULT_TYPES`` and ``_CONFIRM_TYPES`` pair their
enums); the lifecycle's outgoing ``TaskCancel`` becomes Scaler's; the client
agent stopping becomes ``FutureManager.connection_lost``. docs/scaler.md has
the table. Scaler's protocol has no cancel epoch: a mapped confirm carries
epoch 0, which the manager always takes, and the epoch of an outgoing
``TaskCancel`` is left behind, so the adapter keeps today's behaviour (a
late duplicate of an earlier answer is taken as the latest one's; see "The
epoch rule" in docs/lifecycle.md). A Scaler result does not carry its value: it names an object in
Scaler's object storage. The mapped ``TaskResult`` carries that object id as
its payload, and the future fetches the object through Scaler's own object
buffer when the value is first needed, as Scaler's future does.
"""

from __future__ import annotations

import concurrent.futures
import functools
import inspect
import logging
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, Final

try:
    import scaler.about as _scaler_about
    import scaler.client.client as _scaler_client
    from scaler.client.agent import mixins as _scaler_mixins
    from scaler.client.agent.client_agent import ClientAgent as _ClientAgent
    from scaler.client.agent.future_manager import ClientFutureManager as _StockFutureManager
    from scaler.client.agent.task_manager import ClientTaskManager as _StockTaskManager
    from scaler.client.future import ScalerFuture as _StockFuture
    from scaler.client.object_buffer import ObjectBuffer as _ObjectBuffer
    from scaler.protocol import capnp as _capnp
    from scaler.utility.exceptions import WorkerDiedError as _ScalerWorkerDiedError
    from scaler.utility.metadata.profile_result import ProfileResult, retrieve_profiling_result_from_task_result
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "taskfate.client.scaler needs OpenGRIS Scaler: pip install 'taskfate[scaler]' "
        f"(opengris-scaler==2.9.0); importing it failed: {exc}"
    ) from exc

from taskfate.client.errors import ResultDecodeError, TaskFailed
from taskfate.client.errors import WorkerDied as _TaskfateWorkerDied
from taskfate.client.future import Future as _TaskfateFuture
from taskfate.client.manager import DEFAULT_CANCEL_TIMEOUT, FutureManager
from taskfate.fsm import lifecycle as lc
from taskfate.fsm.declare import Lifecycle, declare
from taskfate.protocol import (
    CancelConfirmType,
    Message,
    TaskCancel,
    TaskCancelConfirm,
    TaskID,
    TaskResult,
    TaskResultType,
)

__all__ = [
    "PLUG_IN_POINTS",
    "SCALER_LIFECYCLES",
    "SCALER_VERSION",
    "Client",
    "Future",
    "PlugInError",
    "ScalerFutureManager",
    "TaskManager",
    "WorkerDied",
    "cancel_from_taskfate",
    "confirm_from_scaler",
    "result_from_scaler",
    "scaler_declaration",
    "scaler_lifecycle",
]

_log = logging.getLogger("taskfate.client.scaler")

#: The Scaler release whose construction points this module plugs into.
SCALER_VERSION: Final = "2.9.0"

#: Every place this module relies on inside Scaler's client, in one list.
#: ``check_plug_in_points`` verifies each at import; a test pins them.
PLUG_IN_POINTS: Final[tuple[tuple[str, str], ...]] = (
    (
        "scaler.client.client.Client.__initialize__",
        "assigns `self._future_manager = ClientFutureManager(self._serializer)` and hands "
        "`self._future_manager` to the agent bridge; our Client intercepts that assignment",
    ),
    (
        "scaler.client.client.Client._future_factory",
        "a functools.partial(ScalerFuture, serializer=, connector_agent=, object_buffer=) "
        "called with task=, is_delayed=, group_task_id=; our Client replaces it",
    ),
    (
        "scaler.client.agent.mixins.FutureManager",
        "the abstract interface the client and its agent call: add_future, cancel_all_futures, "
        "set_all_futures_with_exception, on_task_result, on_task_cancel_confirm",
    ),
    (
        "scaler.client.object_buffer.ObjectBuffer.fetch_object",
        "fetch_object(object_id, is_exception, delete_after_fetch) -> concurrent.futures.Future",
    ),
    (
        "scaler.client.client.Client._bridge",
        "assigned `create_default_bridge(...)` in `__initialize__` and started right after; our Client "
        "intercepts that assignment to reach the bridge's not yet started `_agent`",
    ),
    (
        "scaler.client.agent.client_agent.ClientAgent._ClientAgent__initialize",
        "builds `self._task_manager = ClientTaskManager()` and registers it, on the agent's thread; "
        "our Client wraps it on the agent instance to put a TaskManager in its place",
    ),
    (
        "scaler.client.agent.task_manager.ClientTaskManager",
        "keeps the ids it tracks in `_task_ids`, its collaborators in `_connector_external`, "
        "`_object_manager`, `_future_manager`; on_task_cancel_confirm(confirm) is a coroutine",
    ),
    (
        "scaler.protocol.capnp",
        "TaskResult(taskId, resultType, results, metadata), TaskCancelConfirm(taskId, "
        "cancelConfirmType), TaskCancel(taskId, flags=TaskCancelFlags(force)) and their enums",
    ),
)


class PlugInError(ImportError):
    """The installed Scaler no longer has a construction point this module
    plugs into; the message names it. Pin ``opengris-scaler==2.9.0``."""


def check_plug_in_points() -> None:
    """Raise :class:`PlugInError` naming the first construction point that moved.

    Cheap structural checks only (source text, signatures, enum members), so
    an upgraded Scaler fails on import instead of misrouting messages later.
    """
    try:
        source = inspect.getsource(_scaler_client.Client)
    except (OSError, TypeError) as exc:  # pragma: no cover - sources always ship in the wheel
        raise PlugInError(f"cannot read scaler.client.client.Client's source: {exc}") from exc
    expected_source = (
        ("__initialize__", "def __initialize__("),
        ("__initialize__", "self._future_manager = ClientFutureManager(self._serializer)"),
        ("__initialize__", "future_manager=self._future_manager"),
        ("_future_factory", "self._future_factory = functools.partial("),
        ("_future_factory", "ScalerFuture,"),
        ("_future_factory", "self._future_factory(task="),
    )
    for point, text in expected_source:
        if text not in source:
            raise PlugInError(f"Scaler's Client.{point} moved: {text!r} is no longer in its source")
    for text in ("self._bridge = create_default_bridge(", "self._bridge.start()"):
        if text not in source:
            raise PlugInError(f"Scaler's Client._bridge moved: {text!r} is no longer in its source")
    agent_source = inspect.getsource(_ClientAgent)
    for text in ("def __initialize(self):", "self._task_manager = ClientTaskManager()", "self.__initialize()"):
        if text not in agent_source:
            raise PlugInError(f"Scaler's ClientAgent.__initialize moved: {text!r} is no longer in its source")
    tracked = inspect.getsource(_StockTaskManager.__init__)
    for name in ("_task_ids", "_connector_external", "_object_manager", "_future_manager"):
        if f"self.{name}" not in tracked:
            raise PlugInError(f"Scaler's ClientTaskManager no longer keeps {name}")
    if not inspect.iscoroutinefunction(_StockTaskManager.on_task_cancel_confirm):
        raise PlugInError("Scaler's ClientTaskManager.on_task_cancel_confirm is no longer a coroutine")
    abstract = set(getattr(_scaler_mixins.FutureManager, "__abstractmethods__", ()))
    if abstract != _AGENT_CALLS:
        raise PlugInError(f"Scaler's FutureManager interface changed: {sorted(abstract)} != {sorted(_AGENT_CALLS)}")
    fetch = inspect.signature(_ObjectBuffer.fetch_object)
    if list(fetch.parameters) != ["self", "object_id", "is_exception", "delete_after_fetch"]:
        raise PlugInError(f"Scaler's ObjectBuffer.fetch_object changed: {fetch}")
    for enum, names in (
        (_capnp.TaskResultType, {"success", "failed", "failedWorkerDied"}),
        (_capnp.TaskCancelConfirmType, {"canceled", "cancelFailed", "cancelNotFound"}),
    ):
        if {member.name for member in enum} != names:
            raise PlugInError(f"Scaler's {enum.__name__} changed: {sorted(m.name for m in enum)}")


_AGENT_CALLS: Final = frozenset(
    {"add_future", "cancel_all_futures", "set_all_futures_with_exception", "on_task_result", "on_task_cancel_confirm"}
)

check_plug_in_points()
if _scaler_about.__version__ != SCALER_VERSION:  # pragma: no cover - the extra pins it
    warnings.warn(
        f"taskfate.client.scaler is built against opengris-scaler {SCALER_VERSION}; "
        f"{_scaler_about.__version__} is installed and passed the plug-in checks, but is untested",
        RuntimeWarning,
        stacklevel=2,
    )


# -- The boundary: Scaler's messages <-> taskfate's, mapped once ---------------

_RESULT_TYPES: Final[dict[Any, TaskResultType]] = {
    _capnp.TaskResultType.success: TaskResultType.SUCCESS,
    _capnp.TaskResultType.failed: TaskResultType.FAILED,
    _capnp.TaskResultType.failedWorkerDied: TaskResultType.WORKER_DIED,
}
_CONFIRM_TYPES: Final[dict[Any, CancelConfirmType]] = {
    _capnp.TaskCancelConfirmType.canceled: CancelConfirmType.CANCELED,
    _capnp.TaskCancelConfirmType.cancelFailed: CancelConfirmType.CANCEL_FAILED,
    _capnp.TaskCancelConfirmType.cancelNotFound: CancelConfirmType.CANCEL_NOT_FOUND,
}
_OBJECT_ID_SIZE: Final = 32


def result_from_scaler(result: Any) -> TaskResult:
    """A Scaler ``TaskResult`` as taskfate's: same task id and outcome; the
    payload is the result's object id (empty for a graph's umbrella task).

    Raises ``KeyError`` for a result type this mapping does not know (the
    plug-in check makes that impossible for 2.9.0) and ``ValueError`` for a
    task id that is not 16 bytes.
    """
    return TaskResult(TaskID(result.taskId), _RESULT_TYPES[result.resultType], b"".join(result.results))


def confirm_from_scaler(confirm: Any) -> TaskCancelConfirm:
    """A Scaler ``TaskCancelConfirm`` as taskfate's, unnumbered (epoch 0):
    Scaler's protocol has no epoch to carry over."""
    return TaskCancelConfirm(TaskID(confirm.taskId), _CONFIRM_TYPES[confirm.cancelConfirmType])


def cancel_from_taskfate(cancel: TaskCancel) -> Any:
    """taskfate's ``TaskCancel`` as the Scaler message the client agent sends
    on. Its epoch has no place there and is dropped."""
    return _capnp.TaskCancel(taskId=bytes(cancel.task_id), flags=_capnp.TaskCancel.TaskCancelFlags(force=cancel.force))


# -- Futures ---------------------------------------------------------------------


class WorkerDied(_TaskfateWorkerDied, _ScalerWorkerDiedError):  # type: ignore[misc]
    """The worker running the task died. Both taskfate's ``WorkerDied`` and
    Scaler's ``WorkerDiedError``, so either ``except`` clause keeps working."""


_NO_VALUE: Any = object()


def scaler_declaration(policy: str = lc.DEFAULT_POLICY) -> dict[str, Any]:
    """The adapter's lifecycle: the stock one, with the submitted state tagged
    ``running``. Scaler's scheduler sends no started notice, and Scaler's own
    futures report ``running()`` True from submission on; so do these, until
    a cancel is asked or an answer ends them."""
    declared = lc.declaration(policy)
    for state in declared["states"]:
        if state["name"] == lc.PENDING:
            state["tags"] = ["running"]
    return declared


#: The adapter's lifecycles by late-result policy (its messages are mapped
#: onto taskfate's before they reach the manager, so the stock classifier
#: reads them).
SCALER_LIFECYCLES: Final[dict[str, Lifecycle]] = {
    policy: declare(scaler_declaration(policy), messages=lc.stock_messages, name=f"scaler-{policy}", late_result=policy)
    for policy in lc.POLICIES
}


def scaler_lifecycle(policy: str) -> Lifecycle:
    """The adapter's lifecycle for ``policy``; ``ValueError`` for an unknown one."""
    try:
        return SCALER_LIFECYCLES[policy]
    except KeyError:
        raise ValueError(f"unknown late_result policy {policy!r}; choose one of {lc.POLICIES}") from None


class Future(_TaskfateFuture):
    """A Scaler task's future, driven by taskfate's declared lifecycle.

    ``state``, ``history`` and ``discarded_results`` are taskfate's. The value
    of a finished task lives in Scaler's object storage; it is fetched once,
    when first needed (at once for futures Scaler marks as not delayed, such
    as ``map``'s, and before any done callback runs, as Scaler does), and
    ``result(timeout)`` bounds the fetch too.
    """

    __slots__ = ("_session", "_delayed", "_added", "_result_type", "_object_id", "_fetch", "_known", "_profile")

    def __init__(self, task_id: TaskID, manager: FutureManager, group_id: TaskID | None = None) -> None:
        super().__init__(task_id, manager, group_id)
        self._session: _Session | None = None
        self._delayed = True
        self._added = False
        self._result_type: TaskResultType | None = None
        self._object_id: bytes = b""
        self._fetch: concurrent.futures.Future[Any] | None = None
        self._known: Any = _NO_VALUE
        self._profile: ProfileResult | None = None

    # -- Scaler's surface ------------------------------------------------------------

    def profiling_info(self) -> ProfileResult:
        """The task's profile (with ``Client(profiling=True)``), as Scaler's future gives it."""
        if self._profile is None:
            raise ValueError(f"didn't receive profiling info for {self} yet")
        return self._profile

    def set_result(self, result: object, profiling_info: ProfileResult | None = None) -> None:
        """Scaler's client uses this for a graph key whose value is known
        locally (a data node); it ends the future ``done`` through the
        lifecycle. Any other use raises ``RuntimeError``: results come from
        the scheduler."""
        if self._added or self.state != self._manager.lifecycle.initial or self._session is None:
            super().set_result(result)  # raises: the scheduler owns this future's result
            return
        self._known = result
        self._profile = profiling_info
        self._session.lifecycle.on_message(TaskResult(self.task_id, TaskResultType.SUCCESS))

    # -- Reading the outcome -------------------------------------------------------------

    def result(self, timeout: float | None = None) -> Any:
        """The task's value. Blocks up to ``timeout`` seconds in all, waiting
        for the task and then for its value from object storage; raises as
        :meth:`taskfate.client.Future.result` does."""
        failed, value = self._read(timeout)
        if failed:
            raise value
        return value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The task's exception, None if it succeeded; blocks like ``result``."""
        failed, value = self._read(timeout)
        return value if failed else None

    def add_done_callback(self, fn: Callable[[_TaskfateFuture], object]) -> None:
        """As taskfate's, except that for a finished task the value is fetched
        before ``fn`` runs, so ``fn`` may call ``result()`` without blocking
        the client agent that delivers Scaler's messages."""
        super().add_done_callback(functools.partial(_after_fetch, fn))

    def _read(self, timeout: float | None) -> tuple[bool, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self.done():
            concurrent.futures.wait([self], timeout=timeout)
            if not self.done():
                raise concurrent.futures.TimeoutError()
        if self.cancelled():
            super().result(0)  # raises CancelledError naming the event
        if self._known is not _NO_VALUE:
            return False, self._known
        outcome = self._result_type
        if outcome is None:
            # Failed without a result: the connection to the scheduler ended.
            return True, super().exception(0)
        if outcome == TaskResultType.WORKER_DIED:
            return True, WorkerDied(f"worker died when processing task: {self.task_id.hex()}")
        if not self._object_id:
            # A graph's umbrella task carries no object: its outcome is the whole value.
            if outcome == TaskResultType.SUCCESS:
                return False, None
            return True, TaskFailed(f"graph {self.task_id.hex()} failed")
        fetch = self._start_fetch()
        if not fetch.done() and self._session is not None and self._session.on_agent_thread():
            raise RuntimeError(
                f"result of task {self.task_id.hex()} read on Scaler's client agent thread before its value "
                "was fetched; waiting there would block the fetch (read it from a done callback or another thread)"
            )
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            value = fetch.result(remaining)
        except concurrent.futures.TimeoutError:
            raise  # the caller's bound ran out; the fetch goes on
        except Exception as exc:
            # The object could not be fetched (storage unreachable, deleted): as Scaler, that is the error.
            return True, exc
        if outcome == TaskResultType.SUCCESS:
            return False, value
        return True, value if isinstance(value, BaseException) else ResultDecodeError(repr(value))

    def _start_fetch(self) -> concurrent.futures.Future[Any]:
        session = self._session
        assert session is not None, "a Scaler future is bound to its client when made"
        with session.lock:
            if self._fetch is None:
                if len(self._object_id) != _OBJECT_ID_SIZE:
                    failed: concurrent.futures.Future[Any] = concurrent.futures.Future()
                    failed.set_exception(
                        ResultDecodeError(
                            f"task {self.task_id.hex()}: expected one {_OBJECT_ID_SIZE}-byte result object id, "
                            f"got {len(self._object_id)} bytes"
                        )
                    )
                    self._fetch = failed
                else:
                    self._fetch = session.fetch(
                        self._object_id,
                        is_exception=self._result_type != TaskResultType.SUCCESS,
                        delete_after_fetch=self.group_id is None,
                    )
            return self._fetch

    def _needs_fetch(self) -> bool:
        return (
            self.outcome in ("result", "exception")
            and self._known is _NO_VALUE
            and self._result_type in (TaskResultType.SUCCESS, TaskResultType.FAILED)
            and bool(self._object_id)
            and self._session is not None
        )

    # -- Lifecycle callbacks (named in taskfate.fsm.lifecycle) ----------------------------

    def keep_result(self, message: TaskResult) -> None:
        super().keep_result(message)
        self._result_type = message.result_type
        self._object_id = message.payload
        if not self._delayed and self._needs_fetch_after_keep():
            self._start_fetch()

    def _needs_fetch_after_keep(self) -> bool:
        # Called before the state changes, so judge by the message alone.
        return self._known is _NO_VALUE and self._result_type != TaskResultType.WORKER_DIED and bool(self._object_id)


def _after_fetch(fn: Callable[[_TaskfateFuture], object], future: _TaskfateFuture) -> None:
    """Run ``fn(future)`` once the future's value is in hand (now if it needs none)."""
    if isinstance(future, Future) and future._needs_fetch():
        fetch = future._start_fetch()
        if not fetch.done():
            fetch.add_done_callback(lambda _: _run_logged(fn, future))
            return
    fn(future)


def _run_logged(fn: Callable[[_TaskfateFuture], object], future: _TaskfateFuture) -> None:
    try:
        fn(future)
    except Exception:
        _log.exception("done callback %r of %r raised", fn, future)


# -- The manager Scaler's client and agent talk to ------------------------------------


class _Session:
    """What a client's futures share: the object buffer to fetch values
    through, and which thread is Scaler's client agent."""

    __slots__ = ("lifecycle", "lock", "object_buffer", "agent_thread")

    def __init__(self, lifecycle: FutureManager) -> None:
        self.lifecycle = lifecycle
        self.lock = threading.Lock()
        self.object_buffer: Any = None
        self.agent_thread: int | None = None

    def fetch(self, object_id: bytes, *, is_exception: bool, delete_after_fetch: bool) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = self.object_buffer.fetch_object(
            object_id, is_exception=is_exception, delete_after_fetch=delete_after_fetch
        )
        return future

    def on_agent_thread(self) -> bool:
        return threading.get_ident() == self.agent_thread


class ScalerFutureManager(_scaler_mixins.FutureManager):  # type: ignore[misc]
    """Scaler's future-manager interface, answered by a taskfate ``FutureManager``.

    Scaler's client calls ``add_future`` and ``cancel_all_futures``; its
    client agent calls ``on_task_result``, ``on_task_cancel_confirm`` and
    ``set_all_futures_with_exception``. Each is translated here and nowhere
    else. ``lifecycle`` is the taskfate manager, for inspection
    (``stats``, ``late_results``, ``live_futures()``).
    """

    def __init__(
        self, send: Callable[[Any], object], *, late_result: str, cancel_timeout: float, object_buffer: Any = None, **manager_options: Any
    ) -> None:
        # manager_options (clock=, timer=) reach the FutureManager: a test, or
        # the fuzz kit, runs the confirm timeouts on a clock it moves.
        self._scaler_send = send
        self.lifecycle = FutureManager(
            self._send, lifecycle=scaler_lifecycle(late_result), cancel_timeout=cancel_timeout, future_class=Future, **manager_options
        )
        self._session = _Session(self.lifecycle)
        self._session.object_buffer = object_buffer

    # -- Called by our Client ----------------------------------------------------------

    def bind(self, object_buffer: Any) -> None:
        self._session.object_buffer = object_buffer

    def make_future(self, *, task: Any, is_delayed: bool, group_task_id: bytes | None) -> Future:
        """Stands where Scaler's ``_future_factory`` stood: the future is routable
        from the moment it exists, before its task can leave."""
        future = self.lifecycle.track(TaskID(task.taskId), None if group_task_id is None else TaskID(group_task_id))
        assert isinstance(future, Future)
        future._session = self._session
        future._delayed = is_delayed
        return future

    # -- Scaler's FutureManager interface -------------------------------------------------

    def add_future(self, future: Any) -> None:
        if not isinstance(future, Future) or future._session is not self._session:
            raise TypeError(f"{future!r} was not made by this client's future factory")
        future._added = True

    def cancel_all_futures(self) -> None:
        """Cancel every live future, waiting at most ``cancel_timeout`` in all
        (not at all on the client agent's thread, where waiting would block
        the answers)."""
        waiting = self.lifecycle.clear()
        if not waiting or self._session.on_agent_thread():
            return
        _log.info("waiting up to %ss for %d cancel(s) to be answered", self.lifecycle.cancel_timeout, len(waiting))
        # Wait for the answers, not for the futures to end: a refused cancel
        # is answered, and its future goes back to waiting for its result,
        # which may take as long as the task runs.
        awaiting = self.lifecycle.lifecycle.awaiting
        deadline = time.monotonic() + self.lifecycle.cancel_timeout
        for future in waiting:
            future._wait_while_in(awaiting, max(0.0, deadline - time.monotonic()))
        if any(future._fsm in awaiting for future in waiting):
            # Our wait was as long as the lifecycle's own bound: end whatever
            # the timer thread has not serviced yet.
            self.lifecycle.expire()

    def set_all_futures_with_exception(self, exception: BaseException) -> None:
        self._note_thread()
        self.lifecycle.connection_lost(exception)

    def is_live(self, task_id: bytes) -> bool:
        """Whether a message for ``task_id`` still reaches a live future (its
        own, or for a graph's id a live member's): what :class:`TaskManager`
        asks before it stops tracking a task."""
        return self.lifecycle.addresses_live(TaskID(task_id))

    def on_task_result(self, result: Any) -> None:
        self._note_thread()
        try:
            message = result_from_scaler(result)
        except (KeyError, ValueError):
            self.lifecycle.stats["unmapped"] += 1
            _log.error("Scaler result not understood, ignored: %r", result)
            return
        if result.metadata:
            future = self.lifecycle.get(message.task_id)
            if isinstance(future, Future):
                try:
                    future._profile = retrieve_profiling_result_from_task_result(result)
                except ValueError:
                    _log.warning("task %s: unreadable profiling metadata", message.task_id.hex())
        self.lifecycle.on_message(message)

    def on_task_cancel_confirm(self, cancel_confirm: Any) -> None:
        self._note_thread()
        try:
            message = confirm_from_scaler(cancel_confirm)
        except (KeyError, ValueError):
            self.lifecycle.stats["unmapped"] += 1
            _log.error("Scaler cancel confirm not understood, ignored: %r", cancel_confirm)
            return
        self.lifecycle.on_message(message)

    # -- Internals ---------------------------------------------------------------------------

    def _note_thread(self) -> None:
        ident = threading.get_ident()
        if self._session.agent_thread != ident:
            self._session.agent_thread = ident
            self.lifecycle.mark_service_thread(ident)

    def _send(self, message: Message) -> None:
        if type(message) is not TaskCancel:
            raise TypeError(f"only TaskCancel leaves through the lifecycle; Scaler sends its own tasks, not {message!r}")
        self._scaler_send(cancel_from_taskfate(message))


# -- The client agent's bookkeeping ----------------------------------------------------------


class TaskManager(_StockTaskManager):  # type: ignore[misc]
    """Scaler's client-agent task bookkeeping, tracking a task for as long
    as its future is live.

    The agent tracks which tasks are still out, and drops any result or
    confirm for a task it no longer tracks before a future sees it. Stock
    ``ClientTaskManager`` stops tracking a task on *every* cancel confirm.
    But a confirm does not always end the future: a refused cancel
    (``cancelFailed``) means the task runs on, and a confirm nobody asked
    for is ignored by the lifecycle. The task's result, when it came, was
    then dropped here, and the future waited forever; a later cancel of it
    was dropped too. This class hands every confirm and result for a
    tracked task to the future manager and stops tracking the task only
    once no live future is addressed by it (for a graph's id: once the
    umbrella and every member have ended). Submits and cancels are handled
    as Scaler handles them.

    It works with a :class:`ScalerFutureManager`, which can say whether a
    task's future is live (``is_live``).
    """

    @classmethod
    def replacing(cls, stock: Any) -> TaskManager:
        """A TaskManager taking over ``stock``'s collaborators and tracked ids."""
        made = cls()
        made.register(stock._connector_external, stock._object_manager, stock._future_manager)
        made._task_ids = stock._task_ids
        return made

    async def on_task_result(self, result: Any) -> None:
        # Every result reaches the object manager, tracked or not, as in
        # Scaler: the objects it names must be cleaned up either way.
        self._object_manager.on_task_result(result)
        if result.taskId in self._task_ids:
            self._future_manager.on_task_result(result)
            self._forget_once_ended(result.taskId)

    async def on_task_cancel_confirm(self, task_cancel_confirm: Any) -> None:
        if task_cancel_confirm.taskId in self._task_ids:
            self._future_manager.on_task_cancel_confirm(task_cancel_confirm)
            self._forget_once_ended(task_cancel_confirm.taskId)

    def _forget_once_ended(self, task_id: bytes) -> None:
        # A graph's id stays tracked while any member is live: a member's
        # cancel is sent under it, and the graph's answers arrive under it.
        if not self._future_manager.is_live(task_id):
            self._task_ids.discard(task_id)


def _adopt_task_manager(agent: Any) -> None:
    """Make ``agent`` (a not yet started ``ClientAgent``) run with a
    :class:`TaskManager`: its initializer, which builds the stock one on the
    agent's own thread, is wrapped on this instance only."""
    stock_initialize = agent._ClientAgent__initialize

    def initialize() -> None:
        stock_initialize()
        agent._task_manager = TaskManager.replacing(agent._task_manager)

    agent._ClientAgent__initialize = initialize


# -- The client ----------------------------------------------------------------------------


class Client(_scaler_client.Client):  # type: ignore[misc]
    """Scaler's ``Client``, whose futures are taskfate's.

    Takes Scaler's own constructor arguments, plus ``late_result`` (what a
    result racing a cancel does: ``"cancel"``, the default, ends the future
    cancelled and keeps the result in ``discarded_results``; ``"deliver"``
    lets the result win, as stock Scaler's tests expect) and
    ``cancel_timeout`` (seconds a cancel waits for the scheduler before the
    lifecycle ends the future anyway; it also bounds ``clear()``,
    ``disconnect()`` and ``shutdown()``).
    """

    def __init__(
        self,
        *args: Any,
        late_result: str = lc.DEFAULT_POLICY,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        scaler_lifecycle(late_result)  # a bad policy fails here, before any connection
        if not cancel_timeout > 0:
            raise ValueError("cancel_timeout must be a positive number of seconds")
        self._late_result = late_result
        self._cancel_timeout = float(cancel_timeout)
        super().__init__(*args, **kwargs)

    # Plug-in point 1: Scaler's __initialize__ assigns its own manager here and
    # hands the attribute to the agent bridge right after; the setter puts
    # ours in its place before the bridge reads it.
    @property
    def _future_manager(self) -> ScalerFutureManager | None:
        manager: ScalerFutureManager | None = self.__dict__.get("_taskfate_future_manager")
        return manager

    @_future_manager.setter
    def _future_manager(self, value: Any) -> None:
        if value is None or isinstance(value, ScalerFutureManager):
            self.__dict__["_taskfate_future_manager"] = value
        elif isinstance(value, _StockFutureManager):
            self.__dict__["_taskfate_future_manager"] = ScalerFutureManager(
                self._send_to_agent,
                late_result=getattr(self, "_late_result", lc.DEFAULT_POLICY),
                cancel_timeout=getattr(self, "_cancel_timeout", DEFAULT_CANCEL_TIMEOUT),
            )
        else:
            raise TypeError(f"unexpected future manager {value!r}")

    # Plug-in point 3: Scaler's __initialize__ makes the bridge, whose client
    # agent is not started yet, and starts it right after; the setter swaps
    # the agent's task bookkeeping for ours before it starts.
    @property
    def _bridge(self) -> Any:
        return self.__dict__.get("_taskfate_bridge")

    @_bridge.setter
    def _bridge(self, value: Any) -> None:
        agent = getattr(value, "_agent", None)
        if isinstance(agent, _ClientAgent) and not agent.is_alive():
            _adopt_task_manager(agent)
        elif value is not None:
            raise PlugInError(f"Scaler's client bridge {value!r} no longer holds an unstarted ClientAgent in _agent")
        self.__dict__["_taskfate_bridge"] = value

    def __initialize__(self, *args: Any, **kwargs: Any) -> None:
        super().__initialize__(*args, **kwargs)
        manager = self._future_manager
        if not isinstance(manager, ScalerFutureManager):
            raise PlugInError("Scaler's Client.__initialize__ no longer builds its future manager where taskfate plugs in")
        manager.bind(self._object_buffer)
        # Plug-in point 2: every future Scaler's client makes comes from here.
        stock: Any = getattr(self, "_future_factory")
        if not (isinstance(stock, functools.partial) and stock.func is _StockFuture):
            raise PlugInError(f"Scaler's Client._future_factory is no longer a partial of ScalerFuture: {stock!r}")
        self._future_factory = manager.make_future

    def _send_to_agent(self, message: Any) -> None:
        self._connector_agent.send(message)

    @property
    def lifecycle(self) -> FutureManager:
        """The taskfate manager owning this client's futures (``stats``,
        ``late_results``, ``live_futures()``)."""
        manager = self._future_manager
        if manager is None:
            raise RuntimeError("the client is not initialized")
        return manager.lifecycle

    def disconnect(self) -> None:
        """Scaler's disconnect, bounded: live futures are cancelled and waited
        for at most ``cancel_timeout`` seconds; whatever is still live after
        the client agent stops ends cancelled."""
        try:
            super().disconnect()
        finally:
            manager = self.__dict__.get("_taskfate_future_manager")
            if manager is not None:
                manager.lifecycle.close()

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()
        state["late_result"] = self._late_result
        state["cancel_timeout"] = self._cancel_timeout
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._late_result = state.get("late_result", lc.DEFAULT_POLICY)
        self._cancel_timeout = state.get("cancel_timeout", DEFAULT_CANCEL_TIMEOUT)
        super().__setstate__(state)
