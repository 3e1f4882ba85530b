"""taskfate.client.scaler without a cluster: the plug-in points, the message
mapping, and the lifecycle driven through Scaler's future-manager interface."""

from __future__ import annotations

import concurrent.futures
import inspect
import os
import threading
import time
import types

import pytest

scaler = pytest.importorskip("scaler", reason="opengris-scaler is not installed (pip install -e '.[scaler]')")

from scaler.client.agent import mixins as scaler_mixins  # noqa: E402
from scaler.client.agent.client_agent import ClientAgent  # noqa: E402
from scaler.client.agent.task_manager import ClientTaskManager  # noqa: E402
from scaler.protocol import capnp  # noqa: E402
from scaler.utility.exceptions import WorkerDiedError  # noqa: E402

import taskfate.client.scaler as tfs  # noqa: E402
from taskfate.client import WorkerDied  # noqa: E402
from taskfate.protocol import CancelConfirmType, TaskCancel, TaskID, TaskResultType  # noqa: E402

pytestmark = pytest.mark.timeout(30)


# -- The plug-in points ---------------------------------------------------------


def test_scaler_is_the_pinned_release():
    assert scaler.about.__version__ == tfs.SCALER_VERSION == "2.9.0"


def test_every_plug_in_point_is_where_this_module_expects_it():
    tfs.check_plug_in_points()
    for dotted, _ in tfs.PLUG_IN_POINTS:
        if dotted.startswith("scaler.client.client.Client."):
            attribute = dotted.rsplit(".", 1)[1]
            source = inspect.getsource(scaler.client.client.Client)
            assert attribute in source, f"{dotted} is gone"
        elif dotted == "scaler.protocol.capnp":
            for name in ("TaskResult", "TaskCancelConfirm", "TaskCancel", "TaskResultType", "TaskCancelConfirmType"):
                assert hasattr(capnp, name), f"{dotted}.{name} is gone"
        else:
            module_path, _, attribute = dotted.rpartition(".")
            owner = _resolve(module_path)
            assert hasattr(owner, attribute), f"{dotted} is gone"


def _resolve(dotted):
    import importlib

    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def test_a_moved_construction_point_fails_loudly(monkeypatch):
    real = inspect.getsource

    def without_manager_line(obj):
        text = real(obj)
        return text.replace("ClientFutureManager(self._serializer)", "SomethingElse(self._serializer)")

    monkeypatch.setattr(tfs.inspect, "getsource", without_manager_line)
    with pytest.raises(tfs.PlugInError, match="__initialize__"):
        tfs.check_plug_in_points()


def test_a_changed_agent_interface_fails_loudly(monkeypatch):
    monkeypatch.setattr(
        scaler_mixins.FutureManager, "__abstractmethods__", frozenset(tfs._AGENT_CALLS | {"on_task_progress"})
    )
    with pytest.raises(tfs.PlugInError, match="interface changed"):
        tfs.check_plug_in_points()


def test_our_manager_answers_every_call_scaler_makes():
    abstract = scaler_mixins.FutureManager.__abstractmethods__
    assert abstract == tfs._AGENT_CALLS
    assert not tfs.ScalerFutureManager.__abstractmethods__
    for name in abstract:
        assert getattr(tfs.ScalerFutureManager, name) is not getattr(scaler_mixins.FutureManager, name)


def test_stock_future_factory_is_a_partial_with_the_keywords_we_replace():
    source = inspect.getsource(scaler.client.client.Client)
    assert "functools.partial(\n            ScalerFuture," in source
    for keyword in ("task=", "is_delayed=", "group_task_id="):
        assert keyword in source
    parameters = inspect.signature(tfs.ScalerFutureManager.make_future).parameters
    assert {"task", "is_delayed", "group_task_id"} <= set(parameters)


# -- The message mapping, once, at the boundary -----------------------------------


@pytest.mark.parametrize(
    ("scaler_type", "ours"),
    [
        (capnp.TaskResultType.success, TaskResultType.SUCCESS),
        (capnp.TaskResultType.failed, TaskResultType.FAILED),
        (capnp.TaskResultType.failedWorkerDied, TaskResultType.WORKER_DIED),
    ],
)
def test_each_scaler_result_type_maps_to_ours(scaler_type, ours):
    task_id, object_id = os.urandom(16), os.urandom(32)
    mapped = tfs.result_from_scaler(
        capnp.TaskResult(taskId=task_id, resultType=scaler_type, metadata=b"", results=[object_id])
    )
    assert mapped.task_id == task_id and isinstance(mapped.task_id, TaskID)
    assert mapped.result_type is ours
    assert mapped.payload == object_id


@pytest.mark.parametrize(
    ("scaler_type", "ours"),
    [
        (capnp.TaskCancelConfirmType.canceled, CancelConfirmType.CANCELED),
        (capnp.TaskCancelConfirmType.cancelFailed, CancelConfirmType.CANCEL_FAILED),
        (capnp.TaskCancelConfirmType.cancelNotFound, CancelConfirmType.CANCEL_NOT_FOUND),
    ],
)
def test_each_scaler_confirm_type_maps_to_ours(scaler_type, ours):
    task_id = os.urandom(16)
    mapped = tfs.confirm_from_scaler(capnp.TaskCancelConfirm(taskId=task_id, cancelConfirmType=scaler_type))
    assert (mapped.task_id, mapped.confirm_type) == (task_id, ours)


def test_the_mapping_covers_every_scaler_enum_member_exactly_once():
    assert set(tfs._RESULT_TYPES) == set(capnp.TaskResultType)
    assert sorted(tfs._RESULT_TYPES.values()) == sorted(TaskResultType)
    assert set(tfs._CONFIRM_TYPES) == set(capnp.TaskCancelConfirmType)
    assert sorted(tfs._CONFIRM_TYPES.values()) == sorted(CancelConfirmType)


@pytest.mark.parametrize("force", [True, False])
def test_our_cancel_leaves_as_scalers(force):
    task_id = TaskID.new()
    sent = tfs.cancel_from_taskfate(TaskCancel(task_id, force))
    assert isinstance(sent, capnp.TaskCancel)
    assert bytes(sent.taskId) == task_id and sent.flags.force is force


def test_an_umbrella_result_maps_to_an_empty_payload():
    mapped = tfs.result_from_scaler(
        capnp.TaskResult(taskId=os.urandom(16), resultType=capnp.TaskResultType.success, metadata=b"", results=[])
    )
    assert mapped.payload == b""


# -- The lifecycle through Scaler's interface, with a stand-in object buffer --------


class FakeObjectBuffer:
    """Scaler's ObjectBuffer.fetch_object: hands out futures the test completes."""

    def __init__(self, values=None, *, complete=True):
        self.values = values or {}
        self.complete = complete
        self.fetches = []

    def fetch_object(self, object_id, is_exception, delete_after_fetch):
        future = concurrent.futures.Future()
        self.fetches.append((object_id, is_exception, delete_after_fetch, future))
        if self.complete:
            future.set_result(self.values[object_id])
        return future


def make_manager(late_result="cancel", cancel_timeout=0.3, buffer=None):
    sent = []
    manager = tfs.ScalerFutureManager(sent.append, late_result=late_result, cancel_timeout=cancel_timeout)
    manager.bind(buffer if buffer is not None else FakeObjectBuffer())
    return manager, sent


def submit(manager, *, delayed=True, group=None, task_id=None):
    task = types.SimpleNamespace(taskId=task_id or os.urandom(16))
    future = manager.make_future(task=task, is_delayed=delayed, group_task_id=group)
    manager.add_future(future)
    return future


def scaler_result(future, kind=capnp.TaskResultType.success, object_id=None):
    results = [] if object_id is None else [object_id]
    return capnp.TaskResult(taskId=bytes(future.task_id), resultType=kind, metadata=b"", results=results)


def scaler_confirm(task_id, kind=capnp.TaskCancelConfirmType.canceled):
    return capnp.TaskCancelConfirm(taskId=bytes(task_id), cancelConfirmType=kind)


def test_a_result_is_fetched_from_object_storage_once_and_deleted_for_a_plain_task():
    object_id = os.urandom(32)
    buffer = FakeObjectBuffer({object_id: 42})
    manager, _ = make_manager(buffer=buffer)
    future = submit(manager)
    manager.on_task_result(scaler_result(future, object_id=object_id))
    assert future.state == "done" and not buffer.fetches  # delayed: nothing fetched until read
    assert future.result(1) == 42 and future.result(1) == 42
    assert [(oid, exc, delete) for oid, exc, delete, _ in buffer.fetches] == [(object_id, False, True)]


def test_a_non_delayed_future_fetches_as_soon_as_its_result_arrives():
    object_id = os.urandom(32)
    buffer = FakeObjectBuffer({object_id: "v"})
    manager, _ = make_manager(buffer=buffer)
    future = submit(manager, delayed=False)
    manager.on_task_result(scaler_result(future, object_id=object_id))
    assert len(buffer.fetches) == 1
    assert future.result(1) == "v"


def test_a_failed_task_raises_its_own_exception_fetched_as_an_exception():
    object_id = os.urandom(32)
    buffer = FakeObjectBuffer({object_id: KeyError("remote")})
    manager, _ = make_manager(buffer=buffer)
    future = submit(manager)
    manager.on_task_result(scaler_result(future, capnp.TaskResultType.failed, object_id))
    assert future.state == "failed"
    with pytest.raises(KeyError, match="remote"):
        future.result(1)
    assert buffer.fetches[0][1] is True


def test_worker_died_is_both_taskfates_and_scalers_error():
    manager, _ = make_manager()
    future = submit(manager)
    manager.on_task_result(scaler_result(future, capnp.TaskResultType.failedWorkerDied))
    error = future.exception(1)
    assert isinstance(error, WorkerDied) and isinstance(error, WorkerDiedError)
    assert future.state == "failed"


def test_the_agent_stopping_fails_live_futures_with_its_error():
    manager, _ = make_manager()
    futures = [submit(manager) for _ in range(3)]
    error = ConnectionResetError("scheduler went away")
    manager.set_all_futures_with_exception(error)
    assert [f.state for f in futures] == ["failed"] * 3
    assert all(f.exception(0) is error for f in futures)


def test_cancel_sends_scalers_task_cancel_and_the_confirm_ends_it():
    manager, sent = make_manager()
    future = submit(manager)
    replier = threading.Timer(0.05, manager.on_task_cancel_confirm, [scaler_confirm(future.task_id)])
    replier.start()
    assert future.cancel(timeout=5) is True
    assert len(sent) == 1 and isinstance(sent[0], capnp.TaskCancel) and bytes(sent[0].taskId) == future.task_id
    assert [step.event for step in future.history] == ["cancel", "confirm_canceled"]


def test_running_is_true_from_submission_until_a_cancel_is_asked_or_an_answer_ends_it():
    manager, _ = make_manager(cancel_timeout=5)
    answered = submit(manager)
    assert answered.running() and not answered.done()  # no started notice: submitted counts as running
    manager.on_task_result(scaler_result(answered, object_id=os.urandom(32)))
    assert answered.done() and not answered.running()

    asked = submit(manager)
    assert asked.cancel(timeout=0) is False  # asked, not yet answered
    assert asked.state == "cancel_requested" and not asked.running()  # Scaler's future still says True here
    manager.on_task_cancel_confirm(scaler_confirm(asked.task_id, capnp.TaskCancelConfirmType.cancelFailed))
    assert asked.state == "pending" and asked.running()  # refused: the task is the scheduler's again
    manager.on_task_result(scaler_result(asked, object_id=os.urandom(32)))
    assert asked.done() and not asked.running()


@pytest.mark.parametrize(("policy", "state"), [("cancel", "cancelled"), ("deliver", "done")])
def test_a_result_racing_the_cancel_follows_the_chosen_policy(policy, state):
    object_id = os.urandom(32)
    manager, _ = make_manager(late_result=policy, buffer=FakeObjectBuffer({object_id: 7}))
    future = submit(manager)
    assert future.cancel(timeout=0) is False
    manager.on_task_result(scaler_result(future, object_id=object_id))
    assert future.state == state
    if policy == "cancel":
        assert [r.payload for r in future.discarded_results] == [object_id]
    else:
        assert future.result(1) == 7


def test_a_graph_whose_scheduler_confirms_only_one_node_still_ends_every_member():
    manager, sent = make_manager(cancel_timeout=0.3)
    graph = os.urandom(16)
    umbrella = submit(manager, group=graph, task_id=graph)
    a, b, c, d = (submit(manager, group=graph) for _ in range(4))
    manager.on_task_result(scaler_result(a, object_id=os.urandom(32)))  # a finished before the cancel
    assert b.cancel(timeout=0) is False
    assert [bytes(m.taskId) for m in sent] == [graph]  # one request, for the whole graph
    manager.on_task_cancel_confirm(scaler_confirm(b.task_id))  # the only answer the scheduler gives
    concurrent.futures.wait([c, d, umbrella], timeout=5)
    assert (a.state, b.state, c.state, d.state, umbrella.state) == ("done",) + ("cancelled",) * 4
    assert [step.event for step in b.history] == ["cancel", "confirm_canceled"]
    for silent in (c, d, umbrella):
        assert [step.event for step in silent.history] == ["group_cancel", "confirm_timeout"]
        with pytest.raises(concurrent.futures.CancelledError, match="confirm_timeout"):
            silent.result(0)


def test_cancel_all_futures_is_bounded_by_the_cancel_timeout_when_nobody_answers():
    manager, sent = make_manager(cancel_timeout=0.3)
    futures = [submit(manager) for _ in range(5)]
    waited = _timed(manager.cancel_all_futures)
    assert waited < 3
    assert [f.state for f in futures] == ["cancelled"] * 5 and len(sent) == 5


def test_cancel_all_futures_returns_once_a_refusal_answers_it_not_when_the_task_ends():
    # A refused cancel is an answer: its future waits for the task's result
    # again, which can take as long as the task runs, and clear() must not.
    manager, sent = make_manager(cancel_timeout=20)
    refused, answered = submit(manager), submit(manager)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (manager.cancel_all_futures(), done.set()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while len(sent) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    manager.on_task_cancel_confirm(scaler_confirm(refused.task_id, capnp.TaskCancelConfirmType.cancelFailed))
    manager.on_task_cancel_confirm(scaler_confirm(answered.task_id))
    assert done.wait(5), "clear() still waits after both cancels were answered"
    assert (refused.state, answered.state) == ("pending", "cancelled")


def test_a_done_callback_runs_after_the_value_is_fetched_so_it_can_read_it():
    object_id = os.urandom(32)
    buffer = FakeObjectBuffer(complete=False)
    manager, _ = make_manager(buffer=buffer)
    future = submit(manager)
    seen = []
    future.add_done_callback(lambda f: seen.append(f.result(0)))
    manager.on_task_result(scaler_result(future, object_id=object_id))
    assert future.done() and seen == []  # done, but the value is still on its way
    buffer.fetches[0][3].set_result("fetched")
    assert seen == ["fetched"]


def test_reading_an_unfetched_value_on_the_agent_thread_is_an_error_not_a_hang():
    object_id = os.urandom(32)
    manager, _ = make_manager(buffer=FakeObjectBuffer(complete=False))
    future = submit(manager)
    outcome = []

    def agent():
        manager.on_task_result(scaler_result(future, object_id=object_id))
        try:
            future.result()
        except RuntimeError as exc:
            outcome.append(str(exc))

    thread = threading.Thread(target=agent)
    thread.start()
    thread.join(10)
    assert outcome and "agent thread" in outcome[0]


def test_a_data_node_value_known_locally_ends_the_future_done_without_a_fetch():
    buffer = FakeObjectBuffer()
    manager, _ = make_manager(buffer=buffer)
    future = manager.make_future(task=types.SimpleNamespace(taskId=os.urandom(16)), is_delayed=False, group_task_id=None)
    future.set_result({"x": 1}, None)
    assert future.state == "done" and future.result(0) == {"x": 1} and not buffer.fetches
    added = submit(manager)
    with pytest.raises(RuntimeError):
        added.set_result(1)


def test_a_future_from_elsewhere_is_refused():
    manager, _ = make_manager()
    other, _ = make_manager()
    with pytest.raises(TypeError):
        manager.add_future(concurrent.futures.Future())
    foreign = other.make_future(task=types.SimpleNamespace(taskId=os.urandom(16)), is_delayed=True, group_task_id=None)
    with pytest.raises(TypeError):
        manager.add_future(foreign)


def test_unknown_messages_are_counted_never_raised():
    manager, _ = make_manager()
    manager.on_task_result(
        capnp.TaskResult(taskId=os.urandom(16), resultType=capnp.TaskResultType.success, metadata=b"", results=[])
    )
    manager.on_task_cancel_confirm(scaler_confirm(os.urandom(16)))
    manager.on_task_result(
        capnp.TaskResult(taskId=os.urandom(8), resultType=capnp.TaskResultType.success, metadata=b"", results=[])
    )
    assert manager.lifecycle.stats["unknown_task"] == 2
    assert manager.lifecycle.stats["unmapped"] == 1
    assert len(manager.lifecycle.late_results) == 1


def test_client_checks_its_own_arguments_before_connecting():
    with pytest.raises(ValueError, match="late_result"):
        tfs.Client("tcp://127.0.0.1:1", late_result="sometimes")
    with pytest.raises(ValueError, match="cancel_timeout"):
        tfs.Client("tcp://127.0.0.1:1", cancel_timeout=0)


def _timed(fn):
    import time

    started = time.monotonic()
    fn()
    return time.monotonic() - started



# -- The client agent's task bookkeeping -------------------------------------------


def _agent_task_manager(kind):
    """A client agent's task manager of ``kind`` tracking one task, with
    recording collaborators: what it sends on and what reaches futures."""
    sent, delivered = [], []

    async def send(message, **_):
        sent.append(message)

    live = set()

    def on_task_cancel_confirm(confirm):
        delivered.append(confirm)
        if confirm.cancelConfirmType != capnp.TaskCancelConfirmType.cancelFailed:
            live.discard(confirm.taskId)  # as the lifecycle does for an asked cancel

    def on_task_result(result):
        delivered.append(result)
        live.discard(result.taskId)

    futures = types.SimpleNamespace(on_task_result=on_task_result, on_task_cancel_confirm=on_task_cancel_confirm, is_live=live.__contains__)
    manager = kind()
    manager.register(types.SimpleNamespace(send=send), types.SimpleNamespace(on_task_result=lambda _: None), futures)
    task_id = os.urandom(16)
    live.add(task_id)
    _run(manager.on_new_task(types.SimpleNamespace(taskId=task_id)))
    return manager, task_id, sent, delivered


def _run(coroutine):
    try:
        coroutine.send(None)
    except StopIteration:
        return
    raise AssertionError("the handler waited")


def _refused_then_finished(manager, task_id):
    refusal = scaler_confirm(task_id, capnp.TaskCancelConfirmType.cancelFailed)
    result = capnp.TaskResult(taskId=task_id, resultType=capnp.TaskResultType.success, metadata=b"", results=[])
    _run(manager.on_task_cancel_confirm(refusal))
    _run(manager.on_task_result(result))
    return refusal, result


def test_our_task_manager_keeps_a_task_whose_cancel_was_refused_and_passes_its_result_on():
    manager, task_id, sent, delivered = _agent_task_manager(tfs.TaskManager)
    refusal, result = _refused_then_finished(manager, task_id)
    assert delivered == [refusal, result]
    assert task_id not in manager._task_ids  # the result ended the tracking, as Scaler's does


def test_stock_task_manager_drops_the_result_after_a_refused_cancel():
    # What TaskManager is for: the stock one forgets the task on the refusal.
    manager, task_id, sent, delivered = _agent_task_manager(ClientTaskManager)
    refusal, result = _refused_then_finished(manager, task_id)
    assert delivered == [refusal]


@pytest.mark.parametrize("kind", [capnp.TaskCancelConfirmType.canceled, capnp.TaskCancelConfirmType.cancelNotFound])
def test_our_task_manager_forgets_a_task_on_any_other_confirm_as_scalers_does(kind):
    manager, task_id, sent, delivered = _agent_task_manager(tfs.TaskManager)
    confirm = scaler_confirm(task_id, kind)
    _run(manager.on_task_cancel_confirm(confirm))
    _run(manager.on_task_cancel_confirm(confirm))
    assert delivered == [confirm] and task_id not in manager._task_ids


def test_a_refusal_for_a_task_the_agent_does_not_track_reaches_nobody():
    manager, _, sent, delivered = _agent_task_manager(tfs.TaskManager)
    _run(manager.on_task_cancel_confirm(scaler_confirm(os.urandom(16), capnp.TaskCancelConfirmType.cancelFailed)))
    assert delivered == []


def test_replacing_takes_over_the_stock_managers_collaborators_and_tracked_tasks():
    stock, task_id, sent, delivered = _agent_task_manager(ClientTaskManager)
    ours = tfs.TaskManager.replacing(stock)
    assert ours._task_ids is stock._task_ids and task_id in ours._task_ids
    assert (ours._connector_external, ours._object_manager, ours._future_manager) == (
        stock._connector_external,
        stock._object_manager,
        stock._future_manager,
    )


def test_the_agent_is_given_our_task_manager_when_it_initializes(monkeypatch):
    agent = ClientAgent.__new__(ClientAgent)  # the initializer's own work is Scaler's; only the swap is ours
    stock = ClientTaskManager()

    def stock_initialize(self):
        self._task_manager = stock

    monkeypatch.setattr(ClientAgent, "_ClientAgent__initialize", stock_initialize)
    tfs._adopt_task_manager(agent)
    agent._ClientAgent__initialize()
    assert isinstance(agent._task_manager, tfs.TaskManager)
    assert vars(ClientAgent)["_ClientAgent__initialize"] is stock_initialize  # the class is untouched


def test_a_bridge_without_an_unstarted_agent_is_a_plug_in_error():
    client = tfs.Client.__new__(tfs.Client)
    with pytest.raises(tfs.PlugInError, match="unstarted ClientAgent"):
        client._bridge = types.SimpleNamespace()
    client._bridge = None
    assert client._bridge is None


@pytest.mark.parametrize(
    "kind", [capnp.TaskCancelConfirmType.cancelNotFound, capnp.TaskCancelConfirmType.cancelFailed], ids=["unasked-not-found", "unasked-refusal"]
)
def test_a_confirm_that_leaves_the_future_live_keeps_the_task_tracked_so_its_result_arrives(kind):
    object_id = os.urandom(32)
    manager, _ = make_manager(buffer=FakeObjectBuffer({object_id: 7}))
    agent = tfs.TaskManager()

    async def send(message, **_):
        pass

    agent.register(types.SimpleNamespace(send=send), types.SimpleNamespace(on_task_result=lambda _: None), manager)
    future = submit(manager)
    _run(agent.on_new_task(types.SimpleNamespace(taskId=bytes(future.task_id))))
    _run(agent.on_task_cancel_confirm(scaler_confirm(future.task_id, kind)))  # nobody asked: the lifecycle ignores it
    assert future.state == "pending" and manager.is_live(bytes(future.task_id))
    _run(agent.on_task_result(scaler_result(future, object_id=object_id)))
    assert future.result(timeout=5) == 7 and not manager.is_live(bytes(future.task_id))
    assert bytes(future.task_id) not in agent._task_ids


def test_a_graphs_id_stays_tracked_while_a_member_is_live():
    # The umbrella's result ends the umbrella only; a member's cancel is sent
    # under the graph's id and its answers come under it, so the agent must
    # keep the id until the last member ends.
    manager, sent = make_manager()
    agent = tfs.TaskManager()

    async def send(message, **_):
        sent.append(message)

    agent.register(types.SimpleNamespace(send=send), types.SimpleNamespace(on_task_result=lambda _: None), manager)
    graph = os.urandom(16)
    umbrella, member = submit(manager, group=graph, task_id=graph), submit(manager, group=graph)
    _run(agent.on_new_graph_task(types.SimpleNamespace(taskId=graph, targets=[bytes(member.task_id)])))
    _run(agent.on_task_result(scaler_result(umbrella)))
    assert umbrella.done() and graph in agent._task_ids
    member.cancel(timeout=0)
    assert [m.taskId for m in sent if isinstance(m, capnp.TaskCancel)] == [graph]
    _run(agent.on_task_cancel_confirm(scaler_confirm(graph)))
    assert member.cancelled() and graph not in agent._task_ids
