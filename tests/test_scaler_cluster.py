"""taskfate's lifecycle inside Scaler's client, against a real Scaler cluster.

Each backend (Scaler's own YMQ, and ZeroMQ) gets one module-scoped cluster
shared by the tests that leave it as they found it; tests that kill part of
a cluster, or leave a stock client hanging on it, start their own. Every wait
is bounded, and every test has a pytest-timeout, so a hang fails.

Tests marked ``peer`` document what stock Scaler 2.9.0 does in the same
situation, so the difference stays visible; they are bounded too.
"""

from __future__ import annotations

import concurrent.futures
import os
import sys
import threading
import time

import pytest

scaler = pytest.importorskip("scaler", reason="opengris-scaler is not installed (pip install -e '.[scaler]')")
cloudpickle = pytest.importorskip("cloudpickle")

from scaler import Client as StockClient  # noqa: E402
from scaler.utility.exceptions import DisconnectedError, ProcessorDiedError  # noqa: E402
from scaler_cluster import backend, running_cluster  # noqa: E402

from taskfate.client import scaler as tfs  # noqa: E402
from taskfate.client.scaler import Client, Future  # noqa: E402

# Workers import nothing from the test tree: ship this module's functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

#: Seconds a cancel waits for the scheduler in these tests.
CANCEL_TIMEOUT = 2.0
#: Scaler kills a running task's processor after this grace period.
SCALER_KILL_GRACE = 3.0
#: Slack for process start-up and a loaded 2-core machine.
SLACK = 8.0


def square(x):
    return x * x


def sleep_then(seconds, value=None):
    time.sleep(seconds)
    return value if value is not None else seconds


def mark_then_sleep(marker, seconds, value=None):
    """Leave ``marker`` on disk as the task starts, so a test knows it runs."""
    with open(marker, "w"):
        pass
    time.sleep(seconds)
    return value if value is not None else seconds


def wait_started(marker, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(marker):
        assert time.monotonic() < deadline, f"the task did not start within {timeout}s"
        time.sleep(0.02)


def raise_value_error(text):
    raise ValueError(text)


def exit_processor(_):
    os._exit(3)


def chain(step, marker):
    """a -> b -> c -> d, each sleeping ``step`` seconds; b leaves ``marker`` as it starts."""
    return {
        "step": step,
        "marker": str(marker),
        "a": (sleep_then, "step"),
        "b": (mark_then_sleep, "marker", "a"),
        "c": (sleep_then, "b"),
        "d": (sleep_then, "c"),
    }


def timed(fn, *args, **kwargs):
    started = time.monotonic()
    value = fn(*args, **kwargs)
    return value, time.monotonic() - started


#: Tests whose behaviour does not depend on the transport run on Scaler's
#: default backend only, to keep CI short; the rest run on both.
default_backend_only = pytest.mark.parametrize("cluster", ["ymq"], indirect=True)


@pytest.fixture(scope="module", params=["ymq", "zmq"])
def cluster(request):
    with running_cluster(request.param) as running:
        yield running


@pytest.fixture
def client(cluster):
    with backend(cluster.backend):
        made = Client(address=cluster.address, cancel_timeout=CANCEL_TIMEOUT)
    try:
        yield made
    finally:
        _, seconds = timed(made.disconnect)
        assert seconds < CANCEL_TIMEOUT + SLACK, f"disconnect took {seconds:.1f}s"


# -- Ordinary work -----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_submit_map_and_result_are_scalers_with_taskfates_futures(client):
    future = client.submit(square, 7)
    assert isinstance(future, Future) and isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=30) == 49
    assert future.state == "done"
    assert [step.event for step in future.history] == ["result_success"]
    assert client.map(square, range(50)) == [x * x for x in range(50)]
    assert client.lifecycle.stats["ignored"] == 0 and len(client.lifecycle) == 0


@pytest.mark.timeout(60)
def test_a_failing_task_raises_its_own_exception(client):
    future = client.submit(raise_value_error, "nope")
    with pytest.raises(ValueError, match="nope"):
        future.result(timeout=30)
    assert future.state == "failed"


@pytest.mark.timeout(60)
def test_graph_results_and_data_keys(client):
    graph = {"x": 3, "zero": 0, "y": (square, "x"), "z": (sleep_then, "zero", "y")}
    assert client.get(graph, keys=["x", "y", "z"]) == {"x": 3, "y": 9, "z": 9}


@pytest.mark.timeout(60)
def test_done_callbacks_and_asyncio_see_the_fetched_value(client):
    import asyncio

    seen = []
    future = client.submit(square, 5)
    ready = threading.Event()
    future.add_done_callback(lambda f: (seen.append(f.result(0)), ready.set()))
    assert ready.wait(30) and seen == [25]

    async def awaited():
        return await asyncio.wait_for(asyncio.wrap_future(client.submit(square, 6)), 30)

    assert asyncio.run(awaited()) == 36


# -- Cancelling ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_cancel_a_queued_task(client):
    blockers = [client.submit(sleep_then, 1.0) for _ in range(4)]
    queued = client.submit(square, 2)
    cancelled, seconds = timed(queued.cancel)
    assert cancelled is True and queued.state == "cancelled"
    assert [step.event for step in queued.history] == ["cancel", "confirm_canceled"]
    assert seconds < CANCEL_TIMEOUT  # answered by the scheduler, not by the timeout
    assert [b.result(timeout=30) for b in blockers] == [1.0] * 4


@pytest.mark.timeout(60)
@default_backend_only
def test_cancel_a_running_task_waits_for_the_schedulers_answer(cluster, tmp_path):
    # A bound longer than Scaler's kill grace, so the scheduler's own answer ends it.
    with backend(cluster.backend):
        patient = Client(address=cluster.address, cancel_timeout=SCALER_KILL_GRACE + SLACK)
    try:
        running = patient.submit(mark_then_sleep, str(tmp_path / "started"), 20)
        wait_started(tmp_path / "started")
        cancelled, seconds = timed(running.cancel)
        assert cancelled is True and running.state == "cancelled"
        assert [step.event for step in running.history] == ["cancel", "confirm_canceled"]
        assert seconds < SCALER_KILL_GRACE + SLACK
    finally:
        patient.disconnect()


@pytest.mark.timeout(60)
def test_cancel_a_running_task_with_a_short_bound_ends_by_the_lifecycles_timeout(client, tmp_path):
    running = client.submit(mark_then_sleep, str(tmp_path / "started"), 20)
    wait_started(tmp_path / "started")
    assert running.running()
    cancelled, seconds = timed(running.cancel)
    assert cancelled is True and running.state == "cancelled" and not running.running()
    assert [step.event for step in running.history] == ["cancel", "confirm_timeout"]
    assert CANCEL_TIMEOUT * 0.9 < seconds < CANCEL_TIMEOUT + SLACK


@pytest.mark.timeout(60)
def test_cancel_a_finished_task_returns_false_and_changes_nothing(client):
    future = client.submit(square, 3)
    assert future.result(timeout=30) == 9
    before = future.history
    assert future.cancel() is False
    assert future.state == "done" and future.history == before and future.result(0) == 9


@pytest.mark.timeout(60)
def test_the_client_agent_runs_taskfates_task_bookkeeping(client):
    # Plug-in points 6 and 7: the agent's ClientTaskManager is swapped on
    # this agent only, and the agent still does its work with it.
    assert client.submit(pow, 3, 3).result(timeout=30) == 27
    from scaler.client.agent.client_agent import ClientAgent

    agent = client._bridge._agent
    assert isinstance(agent._task_manager, tfs.TaskManager)
    assert "_ClientAgent__initialize" in vars(agent) and "_ClientAgent__initialize" in vars(ClientAgent)


@pytest.mark.timeout(60)
@default_backend_only
def test_clear_ends_every_live_future_within_the_bound(client):
    futures = [client.submit(sleep_then, 20) for _ in range(4)]
    time.sleep(0.5)
    _, seconds = timed(client.clear)
    assert seconds < SCALER_KILL_GRACE + CANCEL_TIMEOUT + SLACK
    assert all(f.done() for f in futures)
    assert {f.state for f in futures} == {"cancelled"}
    assert client.submit(square, 4).result(timeout=30) == 16  # the client is still usable


@pytest.mark.timeout(60)
@default_backend_only
def test_leaving_a_with_block_with_unfinished_tasks_ends_them_all(cluster):
    with backend(cluster.backend):
        started = time.monotonic()
        with Client(address=cluster.address, cancel_timeout=CANCEL_TIMEOUT) as scoped:
            futures = [scoped.submit(sleep_then, 20) for _ in range(4)]
            time.sleep(0.5)
        seconds = time.monotonic() - started
    assert seconds < SCALER_KILL_GRACE + CANCEL_TIMEOUT + SLACK
    assert [f.state for f in futures] == ["cancelled"] * 4


@pytest.mark.timeout(60)
def test_a_processor_that_dies_fails_its_task_and_the_cluster_recovers(client):
    doomed = client.submit(exit_processor, None)
    with pytest.raises(ProcessorDiedError):
        doomed.result(timeout=30)
    assert doomed.state == "failed"
    assert client.submit(square, 8).result(timeout=30) == 64


@pytest.mark.timeout(90)
def test_cancelling_a_running_middle_node_ends_the_whole_chain(client, tmp_path):
    futures = client.get(chain(1.0, tmp_path / "b"), keys=["a", "b", "c", "d"], block=False)
    wait_started(tmp_path / "b")
    assert futures["b"].cancel(timeout=SCALER_KILL_GRACE + SLACK) is True
    done, live = concurrent.futures.wait(futures.values(), timeout=CANCEL_TIMEOUT + SLACK)
    assert not live
    assert [futures[k].state for k in "abcd"] == ["done", "cancelled", "cancelled", "cancelled"]
    for key in "cd":
        # The scheduler never confirms c and d; the lifecycle's timeout ends them, and says so.
        events = [step.event for step in futures[key].history]
        assert events[0] == "group_cancel" and events[-1] in ("confirm_timeout", "confirm_canceled")
    assert futures["c"].cancel(timeout=5) is True
    assert len(client.lifecycle) == 0  # the graph's umbrella future ended too
    _, seconds = timed(client.disconnect)
    assert seconds < CANCEL_TIMEOUT + SLACK


@pytest.mark.timeout(60)
def test_a_result_racing_a_cancel_follows_each_clients_policy(cluster, tmp_path):
    # A cancel without force does not stop a running task: its result is what
    # answers the cancel, and the policy decides what that result means.
    with backend(cluster.backend):
        clients = {policy: Client(address=cluster.address, late_result=policy, cancel_timeout=20) for policy in ("cancel", "deliver")}
    try:
        futures = {policy: c.submit(mark_then_sleep, str(tmp_path / policy), 1.5, policy) for policy, c in clients.items()}
        for policy, future in futures.items():
            wait_started(tmp_path / policy)
            assert future.cancel(timeout=0, force=False) is False
        concurrent.futures.wait(futures.values(), timeout=30)
        histories = {p: [s.event for s in f.history] for p, f in futures.items()}
        assert futures["cancel"].state == "cancelled", histories
        assert len(futures["cancel"].discarded_results) == 1
        assert futures["deliver"].state == "done", histories
        assert futures["deliver"].result(timeout=10) == "deliver"
        for future in futures.values():
            assert [step.event for step in future.history] == ["cancel", "result_success"]
    finally:
        for c in clients.values():
            c.disconnect()


# -- Peers: what stock Scaler does in the same place ------------------------------------


@pytest.mark.peer
@pytest.mark.timeout(120)
def test_peer_stock_scaler_never_ends_the_chain_and_its_disconnect_waits_for_shutdown(tmp_path):
    with running_cluster("ymq") as own:
        stock = StockClient(address=own.address)
        futures = stock.get(chain(1.0, tmp_path / "b"), keys=["a", "b", "c", "d"], block=False)
        wait_started(tmp_path / "b")
        assert futures["b"].cancel(timeout=SCALER_KILL_GRACE + SLACK) is True
        with pytest.raises(concurrent.futures.TimeoutError):
            futures["c"].cancel(timeout=CANCEL_TIMEOUT)
        assert not futures["d"].done()
        disconnecting = threading.Thread(target=stock.disconnect, daemon=True)
        disconnecting.start()
        disconnecting.join(CANCEL_TIMEOUT + 3)
        assert disconnecting.is_alive(), "stock Scaler's disconnect() returned: the peer changed, update the docs"
        # Only the cluster going away releases it (the context manager shuts it down).
    disconnecting.join(30)
    assert not disconnecting.is_alive()


@pytest.mark.peer
@pytest.mark.timeout(60)
@default_backend_only
def test_peer_stock_cancel_of_a_running_task_waits_for_the_kill_grace_as_ours_does(cluster, tmp_path):
    with backend(cluster.backend):
        stock = StockClient(address=cluster.address)
    try:
        running = stock.submit(mark_then_sleep, str(tmp_path / "started"), 20)
        wait_started(tmp_path / "started")
        assert running.running()
        with pytest.raises(concurrent.futures.TimeoutError):
            running.cancel(timeout=0)  # the request leaves; nothing has answered it yet
        assert running.running()  # stock: still running while its cancel is in flight (ours: False)
        cancelled, seconds = timed(running.cancel, timeout=SCALER_KILL_GRACE + SLACK)
        assert cancelled is True and not running.running()
        assert seconds > SCALER_KILL_GRACE / 2  # the processor's grace, not the lifecycle, sets this
    finally:
        stock.disconnect()


# -- Losing the scheduler -----------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend_name", ["ymq", "zmq"])
def test_a_scheduler_killed_mid_run_fails_live_futures_and_disconnect_returns(backend_name):
    with running_cluster(backend_name) as own:
        with backend(backend_name):
            ours = Client(address=own.address, cancel_timeout=CANCEL_TIMEOUT, timeout_seconds=3, heartbeat_interval_seconds=1)
        try:
            futures = [ours.submit(sleep_then, 30) for _ in range(3)]
            time.sleep(0.5)
            own.kill_scheduler()
            done, live = concurrent.futures.wait(futures, timeout=30)
            assert not live
            for future in futures:
                assert future.state == "failed"
                error = future.exception(0)
                # YMQ sees the connection close; over ZeroMQ the heartbeat times out.
                expected = DisconnectedError if backend_name == "ymq" else TimeoutError
                assert isinstance(error, expected), repr(error)
        finally:
            _, seconds = timed(ours.disconnect)
        assert seconds < CANCEL_TIMEOUT + SLACK
