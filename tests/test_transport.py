"""End to end over TCP loopback: a real scheduler, worker processes, a real client.

Every wait is bounded: futures are read with timeouts, and each test has a
pytest-timeout so a hang fails instead of freezing CI.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import operator
import os
import queue
import random
import signal
import subprocess
import sys
import socket
import threading
import time

import cloudpickle
import pytest
import zmq

from taskfate.client import Client, ConnectionLost, DependencyFailed, WorkerDied
from taskfate.protocol import Heartbeat, Task, TaskCancel, TaskID, TaskResult, TaskResultType, encode
from taskfate.scheduler import FaultPlan, Scheduler

pytestmark = pytest.mark.timeout(60)

# Worker processes cannot import this test module: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

WAIT = 20  # seconds any single result may take here, with room for a loaded CI machine


def _sleep_then(value, seconds):
    time.sleep(seconds)
    return value


def _die():
    os._exit(3)


@pytest.fixture(scope="module")
def scheduler():
    with Scheduler("tcp://127.0.0.1:*", workers=2) as running:
        yield running


@pytest.fixture
def client(scheduler):
    with Client(scheduler.address, cancel_timeout=5, heartbeat_timeout=5) as connected:
        yield connected


def _occupy_workers(client, n=2):
    """Futures running long sleeps on every worker (we wait until both run)."""
    warm = [client.submit(operator.add, i, 1) for i in range(4)]
    concurrent.futures.wait(warm, timeout=WAIT)
    busy = [client.submit(time.sleep, 30) for _ in range(n)]
    time.sleep(0.3)
    return busy


def test_submit_map_and_results(client):
    assert client.submit(lambda x, y=1: x * y, 6, y=7).result(timeout=WAIT) == 42
    assert list(client.map(pow, [2, 3, 4], [2, 2, 2], timeout=WAIT)) == [4, 9, 16]
    failing = client.submit(operator.truediv, 1, 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=WAIT)
    assert failing.state == "failed"


def test_cancel_a_queued_task(client):
    busy = _occupy_workers(client)
    queued = client.submit(time.sleep, 30)
    time.sleep(0.05)
    assert queued.cancel(timeout=WAIT) is True
    assert [s.event for s in queued.history] == ["cancel", "confirm_canceled"]
    for future in busy:
        assert future.cancel(timeout=WAIT) is True


def test_cancel_a_running_task_forced_and_not(scheduler, client):
    busy = _occupy_workers(client)
    _wait_running(scheduler, busy)
    refused = busy[0]
    assert refused.cancel(timeout=WAIT, force=False) is False
    # A refused cancel sends the future back to where it was: a worker runs it.
    assert refused.state == "running" and refused.running()
    assert refused.history[-1].event == "confirm_cancel_failed"
    started = time.monotonic()
    assert refused.cancel(timeout=WAIT) is True
    assert time.monotonic() - started < 10
    assert busy[1].cancel(timeout=WAIT) is True
    # The killed workers were replaced: work still runs.
    assert client.submit(operator.add, 1, 1).result(timeout=WAIT) == 2


def test_cancel_a_finished_task_returns_false(client):
    future = client.submit(operator.add, 2, 2)
    assert future.result(timeout=WAIT) == 4
    assert future.cancel() is False and future.state == "done"


def test_cancel_twice_and_from_many_threads(client):
    busy = _occupy_workers(client)
    target = client.submit(time.sleep, 30)
    results = []
    threads = [threading.Thread(target=lambda: results.append(target.cancel(timeout=WAIT))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT + 5)
    assert results == [True] * 8
    assert target.cancel() is True
    assert [s.event for s in target.history] == ["cancel", "confirm_canceled"]
    for future in busy:
        future.cancel(timeout=WAIT)


def test_clear_leaves_every_unfinished_future_cancelled(client):
    done = client.submit(operator.add, 1, 2)
    done.result(timeout=WAIT)
    pending = [client.submit(time.sleep, 30) for _ in range(5)]
    client.clear()
    assert [f.state for f in pending] == ["cancelled"] * 5
    assert done.state == "done"


def test_closing_the_client_leaves_every_unfinished_future_cancelled(scheduler):
    client = Client(scheduler.address, cancel_timeout=5)
    pending = [client.submit(time.sleep, 30) for _ in range(4)]
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 5
    assert all(f.state == "cancelled" for f in pending)
    with pytest.raises(RuntimeError, match="closed"):
        client.submit(operator.add, 1, 1)


def test_cancelling_a_graph_ends_every_node(client):
    graph = {"a": 1, "b": (_sleep_then, "a", 0.2), "c": (_sleep_then, "b", 30), "d": (_sleep_then, "c", 30)}
    nodes = client.submit_graph(graph, ["a", "b", "c", "d"])
    assert nodes["b"].result(timeout=WAIT) == 1
    time.sleep(0.2)  # c is running, d waits for it
    assert nodes["c"].cancel(timeout=WAIT) is True
    concurrent.futures.wait(list(nodes.values()), timeout=WAIT)
    assert {k: f.state for k, f in nodes.items()} == {"a": "done", "b": "done", "c": "cancelled", "d": "cancelled"}


def test_a_failed_node_fails_its_dependants_naming_the_node(client):
    graph = {"x": 3, "boom": (operator.truediv, "x", 0), "after": (operator.neg, "boom"), "last": (operator.neg, "after")}
    nodes = client.submit_graph(graph, ["boom", "after", "last"])
    with pytest.raises(ZeroDivisionError):
        nodes["boom"].result(timeout=WAIT)
    with pytest.raises(DependencyFailed, match="'boom'"):
        nodes["after"].result(timeout=WAIT)
    with pytest.raises(DependencyFailed, match="'after'"):
        nodes["last"].result(timeout=WAIT)


def test_graph_results_flow_between_nodes(client):
    graph = {"a": 2, "b": 5, "sum": (operator.add, "a", "b"), "square": (operator.mul, "sum", "sum"), "lit": (operator.add, "sum", [1][0])}
    nodes = client.submit_graph(graph, ["square", "lit"])
    assert nodes["square"].result(timeout=WAIT) == 49
    assert nodes["lit"].result(timeout=WAIT) == 8
    with pytest.raises(ValueError, match="cycle"):
        client.submit_graph({"p": (operator.neg, "q"), "q": (operator.neg, "p")}, ["p"])


def test_a_dying_worker_gives_worker_died(client):
    future = client.submit(_die)
    with pytest.raises(WorkerDied):
        future.result(timeout=WAIT)
    assert client.submit(operator.add, 5, 5).result(timeout=WAIT) == 10


def test_an_unloadable_task_fails_without_killing_the_worker(client):
    broken = client.manager.submit(Task(TaskID.new(), b"not a pickle"))
    with pytest.raises(RuntimeError, match="could not be loaded"):
        broken.result(timeout=WAIT)
    assert client.submit(operator.add, 1, 1).result(timeout=WAIT) == 2


def test_garbage_sent_to_the_scheduler_is_survived(scheduler, client):
    context = zmq.Context.instance()
    raw = context.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 2000)
    raw.connect(scheduler.address)
    for frames in ([b"garbage"], [b"TR", b"x"], [b"TK", b"\x00" * 16, b"", b"", b"\x01"], [os.urandom(64)] * 3):
        raw.send_multipart(frames)
    raw.send_multipart(encode(TaskResult(TaskID.new(), TaskResultType.SUCCESS, b"")))
    raw.close()
    deadline = time.monotonic() + WAIT
    while scheduler.stats["malformed"] < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert scheduler.stats["malformed"] >= 4
    assert scheduler.stats["unexpected"] >= 1  # a TaskResult is not a client's to send
    assert client.submit(operator.add, 20, 22).result(timeout=WAIT) == 42


def test_garbage_sent_to_the_client_is_survived():
    context = zmq.Context.instance()
    fake = context.socket(zmq.ROUTER)
    fake.setsockopt(zmq.LINGER, 0)
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    with Client(f"tcp://127.0.0.1:{port}", heartbeat_timeout=10) as client:
        future = client.submit(operator.add, 1, 1)
        assert fake.poll(WAIT * 1000)
        identity, *frames = fake.recv_multipart()
        while frames[0] != b"TK":
            identity, *frames = fake.recv_multipart()
        for junk in ([b"junk"], [b"TR", b"short", b"\x00", b""], [b"CC", b"\x00" * 16, b"\x09"]):
            fake.send_multipart([identity, *junk])
        import pickle

        fake.send_multipart([identity, *encode(TaskResult(TaskID(frames[1]), TaskResultType.SUCCESS, pickle.dumps(2)))])
        assert future.result(timeout=WAIT) == 2
        assert client.stats["malformed"] == 3
    fake.close()


def test_a_killed_scheduler_fails_every_live_future_within_the_heartbeat_timeout(tmp_path):
    port_probe = zmq.Context.instance().socket(zmq.ROUTER)
    port = port_probe.bind_to_random_port("tcp://127.0.0.1")
    port_probe.close(0)
    address = f"tcp://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "taskfate.client", "scheduler", "--address", address, "--workers", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        # Until the scheduler answers, the short-fused client below would
        # count its start-up (a process importing the package, seconds on a
        # loaded machine) as silence: wait for an answer with a long fuse.
        with Client(address, heartbeat_timeout=WAIT) as patient:
            assert patient.submit(operator.add, 1, 1).result(timeout=WAIT) == 2
        with Client(address, heartbeat_timeout=1.0, cancel_timeout=5) as client:
            assert client.submit(operator.add, 1, 1).result(timeout=WAIT) == 2
            live = [client.submit(time.sleep, 30) for _ in range(3)]
            time.sleep(0.2)
            process.send_signal(signal.SIGKILL)
            started = time.monotonic()
            done, not_done = concurrent.futures.wait(live, timeout=10)
            elapsed = time.monotonic() - started
            assert not not_done and elapsed < 5
            assert all(isinstance(f.exception(timeout=0), ConnectionLost) for f in live)
    finally:
        process.kill()
        process.wait(10)


def test_several_clients_at_once(scheduler):
    with Client(scheduler.address) as first, Client(scheduler.address) as second:
        a = [first.submit(operator.mul, i, 2) for i in range(20)]
        b = [second.submit(operator.mul, i, 3) for i in range(20)]
        assert [f.result(timeout=WAIT) for f in a] == [i * 2 for i in range(20)]
        assert [f.result(timeout=WAIT) for f in b] == [i * 3 for i in range(20)]


def test_a_silent_client_has_its_tasks_freed():
    with Scheduler("tcp://127.0.0.1:*", workers=1, client_timeout=0.5, heartbeat_interval=0.1) as scheduler:
        context = zmq.Context.instance()
        silent = context.socket(zmq.DEALER)
        silent.setsockopt(zmq.LINGER, 0)
        silent.connect(scheduler.address)
        from taskfate.protocol.calls import dump_call

        silent.send_multipart(encode(Task(TaskID.new(), dump_call(time.sleep, (30,)))))
        time.sleep(1.5)  # the silent client's task started, then the client was given up on
        silent.close()
        with Client(scheduler.address) as client:
            assert client.submit(operator.add, 1, 2).result(timeout=WAIT) == 3


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")
def test_curve_encrypted_connection(tmp_path):
    import zmq.auth

    (tmp_path / "clients").mkdir()
    server_public, server_secret = zmq.auth.create_certificates(tmp_path, "server")
    _, client_secret = zmq.auth.create_certificates(tmp_path / "clients", "client")
    with Scheduler("tcp://127.0.0.1:*", workers=1, curve_certificate=server_secret, curve_clients=tmp_path / "clients") as scheduler:
        with Client(scheduler.address, curve_server_key=server_public, curve_certificate=client_secret) as client:
            assert client.submit(operator.add, 2, 3).result(timeout=WAIT) == 5


class RecordingScheduler(Scheduler):
    """Remembers which tasks it sent a result for, before faults apply."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.results_for: set[bytes] = set()

    def _to_client(self, identity, message, faults=True):
        if isinstance(message, TaskResult):
            self.results_for.add(bytes(message.task_id))
        super()._to_client(identity, message, faults)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("policy", ["cancel", "deliver"])
def test_a_thousand_tasks_through_faults_all_end_once(policy):
    faults = FaultPlan(seed=7, delay=0.2, max_delay=0.02, duplicate=0.1, reorder=0.1, drop_confirm=0.2)
    rng = random.Random(11)
    with RecordingScheduler("tcp://127.0.0.1:*", workers=2, faults=faults) as scheduler:
        with Client(scheduler.address, cancel_timeout=1.0, late_result=policy) as client:
            futures = [client.submit(_sleep_then, i, 0.0005 * rng.random()) for i in range(1000)]
            endings: dict[int, list[str]] = {i: [] for i in range(1000)}
            for i, future in enumerate(futures):
                future.add_done_callback(lambda f, i=i: endings[i].append(f.state))
            cancelled = set(rng.sample(range(1000), 150))
            for i in sorted(cancelled):
                futures[i].cancel(timeout=0, force=rng.random() < 0.7)
            done, not_done = concurrent.futures.wait(futures, timeout=120)
            assert not not_done, f"{len(not_done)} futures never ended"
            # Exactly one terminal state each, and callbacks saw the same one.
            assert all(len(states) == 1 and states[0] == futures[i].state for i, states in endings.items())
            for i, future in enumerate(futures):
                if i not in cancelled:
                    assert future.state == "done" and future.result(timeout=0) == i
                elif future.state == "done":
                    assert policy == "deliver" or future.history[-1].event == "result_success"
                    assert future.result(timeout=0) == i
            # Every result the scheduler sent was delivered or kept as discarded/late.
            late = {bytes(m.task_id) for m in client.manager.late_results}
            for future in futures:
                if bytes(future.task_id) not in scheduler.results_for:
                    continue
                delivered = future.state == "done"
                recorded = bool(future.discarded_results) or bytes(future.task_id) in late
                assert delivered or recorded, future.history
            assert scheduler.stats["duplicated"] > 0 and scheduler.stats["dropped"] > 0
            assert scheduler.stats["delayed"] > 0 and scheduler.stats["reordered"] > 0


def test_the_scheduler_answers_not_found_for_unknown_and_finished_tasks(scheduler):
    from taskfate.protocol import CancelConfirmType, TaskCancelConfirm, decode
    from taskfate.protocol.calls import dump_call

    context = zmq.Context.instance()
    raw = context.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(scheduler.address)
    try:
        finished = TaskID.new()
        raw.send_multipart(encode(Task(finished, dump_call(operator.add, (1, 2)))))
        unknown = TaskID.new()
        answers = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and len(answers) < 3:
            if raw.poll(100):
                message = decode(raw.recv_multipart())
                if isinstance(message, TaskResult):
                    answers.append(message)
                    raw.send_multipart(encode(TaskCancel(finished, True)))
                    raw.send_multipart(encode(TaskCancel(unknown, False)))
                elif isinstance(message, TaskCancelConfirm):
                    answers.append(message)
        assert answers[1:] == [
            TaskCancelConfirm(finished, CancelConfirmType.CANCEL_NOT_FOUND),
            TaskCancelConfirm(unknown, CancelConfirmType.CANCEL_NOT_FOUND),
        ]
    finally:
        raw.close()


def test_closing_the_client_from_a_done_callback(scheduler):
    client = Client(scheduler.address)
    future = client.submit(operator.add, 1, 1)
    closed = threading.Event()
    future.add_done_callback(lambda f: (client.close(), closed.set()))
    assert closed.wait(WAIT)
    assert future.result(timeout=0) == 2
    client._thread.join(WAIT)
    assert not client._thread.is_alive()


def _wait_running(scheduler, futures, timeout=WAIT):
    """Until the scheduler has every one of ``futures`` on a worker."""
    deadline = time.monotonic() + timeout
    ids = [f.task_id for f in futures]
    while time.monotonic() < deadline:
        records = [scheduler._tasks.get(task_id) for task_id in ids]
        if all(record is not None and record.state == "running" for record in records):
            return
        time.sleep(0.01)
    raise AssertionError("tasks did not start in time")


def _started_on(address: str) -> Scheduler:
    """A scheduler serving ``address``, retried while the port is still held
    (ZeroMQ closes a socket in its own thread, so a port just released may
    be busy for a moment)."""
    deadline = time.monotonic() + WAIT
    while True:
        scheduler = Scheduler(address, workers=1)
        try:
            scheduler.start()
            return scheduler
        except zmq.ZMQError as error:
            scheduler.stop()
            if error.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_restarted_scheduler_fails_the_futures_it_forgot():
    with socket.socket() as probe:  # a free port, released at once
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    first = _started_on(address)
    with Client(address, heartbeat_timeout=30) as client:
        assert client.submit(operator.add, 1, 1).result(timeout=WAIT) == 2
        lost = client.submit(time.sleep, 30)
        _wait_running(first, [lost])
        first.stop(timeout=WAIT)  # its sockets closed, however loaded the machine
        second = _started_on(address)
        try:
            with pytest.raises(ConnectionLost, match="dropped"):
                lost.result(timeout=WAIT)
            assert client.submit(operator.add, 2, 2).result(timeout=WAIT) == 4
        finally:
            second.stop()


def test_a_drop_counts_when_the_handshake_finished_before_the_io_thread_ran(monkeypatch):
    """On a loaded machine the handshake can finish before the client's I/O
    thread first runs; the drop of that connection must still fail the live
    futures. Here the I/O thread is held back until a message from the
    "scheduler" (a bare ROUTER) is readable, which proves the handshake is
    over, and only then runs."""
    identities: queue.Queue[bytes] = queue.Queue()
    run = Client._run

    def held_back(self: Client) -> None:
        identities.put(self._socket.getsockopt(zmq.ROUTING_ID))
        self._socket.poll(WAIT * 1000, zmq.POLLIN)  # the heartbeat below; the test fails later if it never came
        run(self)

    monkeypatch.setattr(Client, "_run", held_back)
    context = zmq.Context()
    server = context.socket(zmq.ROUTER)
    server.setsockopt(zmq.LINGER, 0)
    server.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send before the handshake raises instead of vanishing
    try:
        port = server.bind_to_random_port("tcp://127.0.0.1")
        with Client(f"tcp://127.0.0.1:{port}", heartbeat_timeout=60) as client:
            identity = identities.get(timeout=WAIT)
            deadline = time.monotonic() + WAIT
            while True:
                try:
                    server.send_multipart([identity, *encode(Heartbeat())])
                    break
                except zmq.ZMQError as error:
                    if error.errno != zmq.EHOSTUNREACH or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            lost = client.submit(operator.add, 1, 1)
            assert server.poll(WAIT * 1000, zmq.POLLIN), "the client's I/O thread never sent anything"
            server.close(0)  # the connection drops with the task unanswered
            with pytest.raises(ConnectionLost, match="dropped"):
                lost.result(timeout=WAIT)
    finally:
        server.close(0)
        context.term()


def test_a_client_the_scheduler_gave_up_on_learns_its_tasks_were_cancelled():
    # The scheduler is patient until the task runs (on a loaded machine a
    # worker can take longer than any short patience to start it, and the
    # task would then be cancelled before it started), then loses patience.
    with Scheduler("tcp://127.0.0.1:*", workers=1, client_timeout=60, heartbeat_interval=0.1) as scheduler:
        # Beats slower than the scheduler's patience: it frees the tasks.
        with Client(scheduler.address, heartbeat_timeout=10, heartbeat_interval=3) as client:
            future = client.submit(time.sleep, 30)
            _wait_running(scheduler, [future])
            scheduler.client_timeout = 0.5  # read afresh on every check
            with pytest.raises(concurrent.futures.CancelledError):
                future.result(timeout=WAIT)
            assert [s.event for s in future.history] == ["started", "confirm_canceled"]


def test_a_dependency_outside_a_group_is_refused_and_the_scheduler_lives_on(scheduler, client):
    from taskfate.protocol.calls import dump_call

    parent = client.manager.submit(Task(TaskID.new(), dump_call(operator.add, (1, 1))))
    child = client.manager.submit(Task(TaskID.new(), dump_call(operator.neg, (1,)), None, (parent.task_id,)))
    with pytest.raises(RuntimeError, match="must belong to a group"):
        child.result(timeout=WAIT)
    assert parent.result(timeout=WAIT) == 2
    assert client.submit(operator.add, 3, 4).result(timeout=WAIT) == 7


def test_oversized_frames_fail_their_task_not_the_connection():
    with Scheduler("tcp://127.0.0.1:*", workers=1, max_frame_size=100_000) as scheduler:
        with Client(scheduler.address, max_frame_size=100_000) as client:
            with pytest.raises(ValueError, match="over max_frame_size"):
                client.submit(len, b"x" * 200_000)
            big = client.submit(bytes, 300_000)
            with pytest.raises(RuntimeError, match="over the frame limit"):
                big.result(timeout=WAIT)
            assert client.submit(operator.add, 1, 2).result(timeout=WAIT) == 3
        with Client(scheduler.address, max_frame_size=1000) as small:
            result = small.submit(bytes, 50_000)
            with pytest.raises(RuntimeError, match="could not be received"):
                result.result(timeout=WAIT)
            assert small.submit(operator.add, 2, 2).result(timeout=WAIT) == 4


def test_clear_forces_a_gentle_cancel_that_was_refused(scheduler, client):
    busy = _occupy_workers(client)
    _wait_running(scheduler, busy)
    busy[0].cancel(timeout=0, force=False)
    client.clear()
    assert [f.state for f in busy] == ["cancelled", "cancelled"]


def test_map_cancels_the_call_that_timed_out(client):
    results = client.map(time.sleep, [30, 30], timeout=0.2)
    with pytest.raises(concurrent.futures.TimeoutError):
        next(results)
    deadline = time.monotonic() + WAIT
    while len(client.manager) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(client.manager) == 0


def test_a_client_cannot_cancel_another_clients_task(scheduler, client):
    from taskfate.protocol import CancelConfirmType, TaskCancelConfirm, decode

    busy = _occupy_workers(client)
    _wait_running(scheduler, busy)
    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(scheduler.address)
    try:
        raw.send_multipart(encode(TaskCancel(busy[0].task_id, True)))
        assert raw.poll(WAIT * 1000)
        assert decode(raw.recv_multipart()) == TaskCancelConfirm(busy[0].task_id, CancelConfirmType.CANCEL_NOT_FOUND)
        assert busy[0].state == "running"
    finally:
        raw.close()
        for future in busy:
            future.cancel(timeout=WAIT)


def test_the_scheduler_tells_the_owner_when_its_task_starts(scheduler):
    from taskfate.protocol import TaskStarted, decode
    from taskfate.protocol.calls import dump_call

    raw = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(scheduler.address)
    try:
        task_id = TaskID.new()
        raw.send_multipart(encode(Task(task_id, dump_call(operator.add, (1, 2)))))
        seen = []
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not any(isinstance(m, TaskResult) for m in seen):
            if raw.poll(100):
                message = decode(raw.recv_multipart())
                if not isinstance(message, Heartbeat):
                    seen.append(message)
        assert seen[0] == TaskStarted(task_id)
        assert isinstance(seen[1], TaskResult) and seen[1].task_id == task_id
    finally:
        raw.close()


def test_a_client_takes_task_started_in_its_stride(caplog):
    """TaskStarted moves the owner's future to ``running``; one for a task
    the client does not know is counted, not logged above debug; the result
    still lands."""
    import pickle

    from taskfate.protocol import TaskStarted

    fake = zmq.Context.instance().socket(zmq.ROUTER)
    fake.setsockopt(zmq.LINGER, 0)
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    caplog.set_level("INFO", logger="taskfate")
    try:
        with Client(f"tcp://127.0.0.1:{port}", heartbeat_timeout=10) as client:
            future = client.submit(operator.add, 1, 1)
            assert not future.running()
            identity, *frames = fake.recv_multipart()
            while frames[0] != b"TK":
                identity, *frames = fake.recv_multipart()
            task_id = TaskID(frames[1])
            fake.send_multipart([identity, *encode(TaskStarted(task_id))])
            fake.send_multipart([identity, *encode(TaskStarted(TaskID.new()))])  # for nobody
            deadline = time.monotonic() + WAIT
            while not future.running() and time.monotonic() < deadline:
                time.sleep(0.005)
            assert future.running() and future.state == "running"
            fake.send_multipart([identity, *encode(TaskResult(task_id, TaskResultType.SUCCESS, pickle.dumps(2)))])
            assert future.result(timeout=WAIT) == 2
            assert not future.running()
            assert [s.event for s in future.history] == ["started", "result_success"]
            assert client.manager.stats["unknown_task"] == 1
            assert client.manager.stats["not_for_futures"] == 0
            assert client.stats["malformed"] == 0
            assert client._thread.is_alive()
    finally:
        fake.close()
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- The Executor surface ------------------------------------------------------


def test_a_client_is_an_executor(client):
    assert isinstance(client, concurrent.futures.Executor)
    with concurrent.futures.ThreadPoolExecutor(1) as local:
        # Code written for an executor runs on either.
        for executor in (local, client):
            assert list(executor.map(pow, [2, 3], [5, 2], timeout=WAIT, chunksize=4)) == [32, 9]
            assert executor.submit(operator.mul, 6, 7).result(timeout=WAIT) == 42


def test_map_with_buffersize_submits_only_so_far_ahead(client):
    seen = []
    results = client.map(operator.neg, itertools.count(), timeout=WAIT, buffersize=2)
    for value in itertools.islice(results, 5):
        seen.append(value)
        assert len(client.manager) <= 2  # the endless iterable is read as results are
    assert seen == [0, -1, -2, -3, -4]
    results.close()  # leaving early cancels what was submitted ahead
    deadline = time.monotonic() + WAIT
    while len(client.manager) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(client.manager) == 0
    with pytest.raises(ValueError, match="buffersize"):
        client.map(operator.neg, [1], buffersize=0)
    with pytest.raises(TypeError, match="buffersize"):
        client.map(operator.neg, [1], buffersize=1.5)


def test_shutdown_waits_for_every_future_then_refuses_new_ones(scheduler):
    client = Client(scheduler.address, cancel_timeout=5)
    futures = [client.submit(_sleep_then, i, 0.3) for i in range(3)]
    client.shutdown()
    assert [f.state for f in futures] == ["done"] * 3
    assert [f.result(timeout=0) for f in futures] == [0, 1, 2]
    assert not client._thread.is_alive()  # closed: the I/O thread is gone
    with pytest.raises(RuntimeError, match="after shutdown"):
        client.submit(operator.add, 1, 1)
    client.shutdown()  # again, and close after it: both harmless
    client.close()


def test_shutdown_cancel_futures_cancels_the_queued_and_lets_the_running_finish(scheduler):
    client = Client(scheduler.address, cancel_timeout=5)
    warm = [client.submit(operator.add, i, 1) for i in range(4)]
    concurrent.futures.wait(warm, timeout=WAIT)
    running = [client.submit(_sleep_then, i, 1.5) for i in range(2)]
    _wait_running(scheduler, running)
    queued = [client.submit(_sleep_then, "never", 30) for _ in range(3)]
    deadline = time.monotonic() + WAIT
    while not all(f.running() for f in running) and time.monotonic() < deadline:
        time.sleep(0.01)  # the client hears TaskStarted shortly after the scheduler sends it
    started = time.monotonic()
    client.shutdown(cancel_futures=True)
    assert time.monotonic() - started < WAIT
    assert [f.state for f in queued] == ["cancelled"] * 3
    assert [f.result(timeout=0) for f in running] == [0, 1]
    with pytest.raises(RuntimeError, match="after shutdown"):
        client.submit(operator.add, 1, 1)


def test_shutdown_without_waiting_closes_the_client_when_the_last_future_ends(scheduler):
    client = Client(scheduler.address, cancel_timeout=5)
    future = client.submit(_sleep_then, "late", 2)
    client.shutdown(wait=False)
    assert not future.done()  # returned at once: the task runs on
    with pytest.raises(RuntimeError, match="after shutdown"):
        client.submit(operator.add, 1, 1)
    assert future.result(timeout=WAIT) == "late"
    client._thread.join(WAIT)
    assert not client._thread.is_alive()


def test_shutdown_with_nothing_live_and_without_waiting_still_closes(scheduler):
    client = Client(scheduler.address, cancel_timeout=5)
    assert client.submit(operator.add, 1, 1).result(timeout=WAIT) == 2
    client.shutdown(wait=False)
    client._thread.join(WAIT)
    assert not client._thread.is_alive()


def test_shutdown_from_a_done_callback_does_not_wait(scheduler):
    client = Client(scheduler.address, cancel_timeout=5)
    first = client.submit(operator.add, 1, 1)
    second = client.submit(_sleep_then, "second", 0.5)
    returned = threading.Event()
    first.add_done_callback(lambda f: (client.shutdown(), returned.set()))
    assert returned.wait(WAIT)
    assert second.result(timeout=WAIT) == "second"  # not cancelled: shutdown lets it finish
    client._thread.join(WAIT)
    assert not client._thread.is_alive()


def test_leaving_a_with_block_still_closes_the_client(scheduler):
    with Client(scheduler.address, cancel_timeout=5) as client:
        pending = client.submit(time.sleep, 30)
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert pending.state == "cancelled"
    with pytest.raises(RuntimeError, match="closed"):
        client.submit(operator.add, 1, 1)
