"""The fuzz kit on a third-party client: OpenGRIS Scaler 2.9.0's own classes.

``ScalerMachine`` points taskfate's ``ClientMachine`` at stock Scaler's
client-side classes, in-process, with no cluster: ``ScalerFuture`` (the
future), ``ClientFutureManager`` (routes results and confirms to futures)
and ``ClientTaskManager`` (the client agent's bookkeeping of which tasks it
still tracks). The machine speaks Scaler's own messages (``scaler.protocol
.capnp``), keeps result values behind object ids in a stand-in object store
as Scaler's object storage does, and submits graphs whole, one ``GraphTask``
with an umbrella future, as Scaler's ``Client.get`` does.

``TaskfateScalerMachine`` is the same adapter pointed at taskfate's own
Scaler adapter (``taskfate.client.scaler``): its future manager, its futures
and its client-agent task bookkeeping in place of Scaler's.

The reference is the stock lifecycle, which tags no state ``running``, so
``running()`` is not held: Scaler's futures say True while a cancel is
asked and the adapter's say False (``docs/scaler.md`` gives both), and a
reference that tagged it would report that choice at the first cancel of
every ordering, ahead of every hang.

There is no ``close`` hook: Scaler's ``disconnect()`` begins with the very
cancel-and-wait that ``clear()`` is, which the clear rule holds to the
lifecycle's bound, and ends by stopping the client agent, which the
connection-lost rule covers.

``docs/fuzzing.md`` walks through this file and lists what it finds in stock
Scaler; ``tests/test_fuzz_scaler.py`` runs it. The adapter is the code
between the two ``adapter`` marker comments.
"""

from __future__ import annotations

# -- adapter begins
import functools
from types import SimpleNamespace as Stub
from typing import Any

from scaler.client.agent.future_manager import ClientFutureManager
from scaler.client.agent.task_manager import ClientTaskManager
from scaler.client.future import ScalerFuture
from scaler.protocol.capnp import GraphTask, Task, TaskCancel, TaskCancelConfirm, TaskCancelConfirmType as C, TaskResult, TaskResultType as R

from taskfate.client.scaler import ScalerFutureManager, TaskManager
from taskfate.fsm import declare, lifecycle as lc
from taskfate.fsm.fuzz import CANCEL_SENT, GRAPH_SENT, TASK_SENT, ClientMachine, Sent, as_coroutine, classify_by, drive

RESULTS = {lc.RESULT_SUCCESS: R.success, lc.RESULT_FAILED: R.failed, lc.RESULT_WORKER_DIED: R.failedWorkerDied}  # Scaler's enums
CONFIRMS = {lc.CONFIRM_CANCELED: C.canceled, lc.CONFIRM_CANCEL_FAILED: C.cancelFailed, lc.CONFIRM_NOT_FOUND: C.cancelNotFound}
SENT = {TaskCancel: CANCEL_SENT, GraphTask: GRAPH_SENT, Task: TASK_SENT}  # its outgoing messages, as the kit counts them
AGENT = {Task: "on_new_task", GraphTask: "on_new_graph_task", TaskCancel: "on_cancel_task", TaskResult: "on_task_result"}  # agent handlers
task = functools.partial(Task, source=b"", metadata=b"", funcObjectId=b"", functionArgs=[], capabilities=[])


class ScalerMachine(ClientMachine):
    messages = classify_by((TaskResult, "resultType", RESULTS), (TaskCancelConfirm, "cancelConfirmType", CONFIRMS), task_id="taskId")
    lifecycle = declare(lc.declaration("deliver"), messages=messages, name="scaler")  # a result racing a cancel wins; no running tag
    blocking = True  # Scaler's cancel(), clear() and disconnect() block; its futures have no timer

    def make_client(self, send: Any, clock: Any) -> None:
        self.agent, self.manager, self.factory = self.parts(Stub(fetch_object=self.store.fetch), clock)
        self.agent.register(Stub(send=as_coroutine(lambda m, **_: send(m))), Stub(on_task_result=lambda _: None), self.manager)

    def parts(self, objects: Any, clock: Any) -> tuple[Any, Any, Any]:  # the client agent's task manager, the future manager, the futures' factory
        factory = functools.partial(ScalerFuture, serializer=None, connector_agent=Stub(send=self.deliver), object_buffer=objects)
        return ClientTaskManager(), ClientFutureManager(serializer=None), factory

    def deliver(self, message: Any) -> None:  # everything reaches the client agent: from the futures and from the scheduler
        drive(getattr(self.agent, AGENT.get(type(message), "on_task_cancel_confirm"))(message))

    def submit(self, wanted: Any) -> Any:
        self.manager.add_future(future := self.factory(task=task(taskId=bytes(wanted.task_id)), is_delayed=True, group_task_id=None))
        self.deliver(task(taskId=bytes(wanted.task_id)))
        return future

    def submit_graph(self, graph: Any, members: Any) -> Any:  # one GraphTask, its umbrella future first, as Client.get does
        futures = [self.factory(task=task(taskId=bytes(t)), is_delayed=True, group_task_id=bytes(graph)) for t in [graph, *members]]
        list(map(self.manager.add_future, futures))
        self.deliver(GraphTask(taskId=bytes(graph), source=b"", targets=[bytes(m) for m in members], graph=[task(taskId=bytes(m)) for m in members]))
        return futures[0], futures[1:]

    def make_result(self, task_id: Any, event: str, value: object) -> Any:  # the value goes to object storage; an umbrella's names none
        return self.messages.build(event, task_id, metadata=b"", results=[] if value is None else [self.store.put(value)])

    def read_sent(self, m: Any) -> Sent:
        return Sent(SENT[type(m)], m.taskId, force=not isinstance(m, TaskCancel) or m.flags.force, members=tuple(getattr(m, "targets", ())))

    def clear(self) -> None:  # Client.clear(); disconnect() starts with the same call
        self.manager.cancel_all_futures()

    def connection_lost(self) -> None:
        self.manager.set_all_futures_with_exception(ConnectionError("the client agent stopped"))


class TaskfateScalerMachine(ScalerMachine):  # taskfate.client.scaler's pieces in place of Scaler's
    def parts(self, objects: Any, clock: Any) -> tuple[Any, Any, Any]:  # its confirm timeouts run on the machine's clock
        manager = ScalerFutureManager(self.deliver, late_result="deliver", cancel_timeout=self.cancel_timeout, object_buffer=objects, clock=clock, timer=False)
        return TaskManager(), manager, manager.make_future

    def expire(self) -> None:
        self.manager.lifecycle.expire()


# -- adapter ends
