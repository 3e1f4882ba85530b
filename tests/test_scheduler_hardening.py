"""One hostile or unlucky peer costs nobody else their work, data or process.

Each test here names the break it guards against (issue 13); each would fail
on the scheduler and client as they were before. Everything runs on
127.0.0.1 with bounded waits.
"""

from __future__ import annotations

import concurrent.futures
import gc
import itertools
import logging
import operator
import os
import pickle
import sys
import threading
import time
from typing import Any

import cloudpickle
import pytest
import zmq

from taskfate.client import Client, ConnectionLost, WorkerDied
from taskfate.client.client import CLOSE_TIMEOUT
from taskfate.client.errors import AuthenticationFailed
from taskfate.protocol import (
    DEFAULT_MAX_DEPENDENCIES,
    Heartbeat,
    Task,
    TaskCancel,
    TaskID,
    TaskResult,
    TaskResultType,
    decode,
    encode,
)
from taskfate.protocol.calls import dump_call
from taskfate.protocol.errors import MalformedInputLog
from taskfate.scheduler import Scheduler

pytestmark = pytest.mark.timeout(90)
cloudpickle.register_pickle_by_value(sys.modules[__name__])

WAIT = 20


def _raw(address: str) -> zmq.Socket:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    return socket


def _answer(socket: zmq.Socket, task_id: TaskID, timeout: float = WAIT) -> TaskResult:
    """The TaskResult for ``task_id`` that ``socket`` receives."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if socket.poll(100):
            message = decode(socket.recv_multipart())
            if isinstance(message, TaskResult) and message.task_id == task_id:
                return message
    raise AssertionError("no answer in time")


def _refusal(result: TaskResult) -> str:
    assert result.result_type == TaskResultType.FAILED
    return str(pickle.loads(result.payload))


def _until(condition, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def _secret():
    return "client A's secret"


@pytest.fixture(scope="module")
def scheduler():
    with Scheduler("tcp://127.0.0.1:*", workers=2) as running:
        yield running


# -- Results stay with their owner ------------------------------------------------


def test_another_client_cannot_read_a_finished_node_of_a_live_graph(scheduler):
    with Client(scheduler.address) as owner:
        nodes = owner.submit_graph({"secret": (_secret,), "later": (time.sleep, 30)}, ["secret", "later"])
        assert nodes["secret"].result(timeout=WAIT) == "client A's secret"
        thief = _raw(scheduler.address)
        try:
            steal = Task(TaskID.new(), dump_call(str, (None,)), TaskID.new(), (nodes["secret"].task_id,))
            thief.send_multipart(encode(steal))
            answer = _answer(thief, steal.task_id)
            assert "not an earlier task of this client's group" in _refusal(answer)
            assert b"secret" not in answer.payload
        finally:
            thief.close()
        nodes["later"].cancel(timeout=WAIT)


def test_the_same_client_cannot_read_a_node_of_another_of_its_groups(scheduler):
    with Client(scheduler.address) as client:
        first = client.submit_graph({"value": 7, "hold": (time.sleep, 30)}, ["value", "hold"])
        assert first["value"].result(timeout=WAIT) == 7
        other = client.manager.submit(Task(TaskID.new(), dump_call(operator.neg, (1,)), TaskID.new(), (first["value"].task_id,)))
        with pytest.raises(RuntimeError, match="not an earlier task of this client's group"):
            other.result(timeout=WAIT)
        first["hold"].cancel(timeout=WAIT)


def test_a_dependant_arriving_after_its_dependency_failed_fails_naming_it(scheduler):
    from taskfate.protocol.calls import DependencyFailed

    with Client(scheduler.address) as client:
        group = TaskID.new()
        broken = client.manager.submit(Task(TaskID.new(), dump_call(operator.truediv, (1, 0)), group))
        hold = client.manager.submit(Task(TaskID.new(), dump_call(time.sleep, (30,)), group))  # keeps the graph live
        with pytest.raises(ZeroDivisionError):
            broken.result(timeout=WAIT)
        late = client.manager.submit(Task(TaskID.new(), dump_call(operator.neg, (1,)), group, (broken.task_id,)))
        with pytest.raises(DependencyFailed, match=broken.task_id.hex()):
            late.result(timeout=WAIT)
        hold.cancel(timeout=WAIT)


def test_too_many_dependencies_are_refused_with_the_limit(scheduler):
    with Client(scheduler.address) as client:
        ids = tuple(TaskID.new() for _ in range(DEFAULT_MAX_DEPENDENCIES + 1))
        future = client.manager.submit(Task(TaskID.new(), dump_call(operator.neg, (1,)), TaskID.new(), ids))
        with pytest.raises(RuntimeError, match=f"over the limit of {DEFAULT_MAX_DEPENDENCIES}"):
            future.result(timeout=WAIT)
        assert client.submit(operator.add, 1, 1).result(timeout=WAIT) == 2


# -- Limits and fairness ------------------------------------------------------------


def test_a_client_over_its_task_or_byte_limit_is_refused_and_others_are_not():
    with Scheduler("tcp://127.0.0.1:*", workers=1, max_client_tasks=3, max_client_bytes=50_000) as scheduler:
        with Client(scheduler.address) as greedy, Client(scheduler.address) as modest:
            held = [greedy.submit(time.sleep, 30) for _ in range(3)]
            over = greedy.submit(operator.add, 1, 1)
            with pytest.raises(RuntimeError, match="3 unfinished tasks, the limit is 3"):
                over.result(timeout=WAIT)
            with pytest.raises(RuntimeError, match="over the limit of 50000"):
                modest.submit(len, b"x" * 60_000).result(timeout=WAIT)
            for future in held:
                future.cancel(timeout=WAIT)
            assert modest.submit(operator.add, 2, 2).result(timeout=WAIT) == 4
            assert greedy.submit(operator.add, 1, 1).result(timeout=WAIT) == 2  # room again


@pytest.mark.parametrize("isolate", [True, False], ids=["isolated", "shared"])
def test_one_clients_backlog_does_not_hold_up_another_clients_task(isolate):
    with Scheduler("tcp://127.0.0.1:*", workers=1, isolate_clients=isolate) as scheduler:
        with Client(scheduler.address) as busy, Client(scheduler.address) as other:
            assert busy.submit(operator.add, 0, 0).result(timeout=WAIT) == 0
            backlog = [busy.submit(time.sleep, 0.01) for _ in range(400)]
            _until(lambda: sum(f.done() for f in backlog) >= 5)
            single = other.submit(operator.add, 20, 22)
            assert single.result(timeout=WAIT) == 42
            # First in, first out, the single task would have waited for the
            # whole backlog; in turns, it waits for about one task.
            assert sum(not f.done() for f in backlog) > 200
            busy.clear()


# -- Workers never run two clients' code ------------------------------------------------


def _mark_worker():
    import builtins

    builtins.taskfate_test_mark = "left by the first client"  # type: ignore[attr-defined]
    return os.getpid()


def _read_mark():
    import builtins

    return os.getpid(), getattr(builtins, "taskfate_test_mark", None)


def test_a_worker_is_replaced_before_it_runs_another_clients_code():
    with Scheduler("tcp://127.0.0.1:*", workers=1) as scheduler:
        with Client(scheduler.address) as first, Client(scheduler.address) as second:
            first_pid = first.submit(_mark_worker).result(timeout=WAIT)
            pid, mark = second.submit(_read_mark).result(timeout=WAIT)
            assert pid != first_pid and mark is None
            assert scheduler.stats["recycled"] == 1
            # Its own worker stays its own: no replacement for the same client.
            assert second.submit(_read_mark).result(timeout=WAIT)[0] == pid


def test_shared_workers_are_an_explicit_choice():
    with Scheduler("tcp://127.0.0.1:*", workers=1, isolate_clients=False) as scheduler:
        with Client(scheduler.address) as first, Client(scheduler.address) as second:
            first_pid = first.submit(_mark_worker).result(timeout=WAIT)
            assert second.submit(_read_mark).result(timeout=WAIT) == (first_pid, "left by the first client")


# -- The worker socket is validated --------------------------------------------------------


def _worker_says(*frames):
    """Run inside a worker: speak on its own socket, as a broken worker would."""
    sockets = [o for o in gc.get_objects() if isinstance(o, zmq.Socket) and not o.closed and o.socket_type == zmq.DEALER]
    sockets[0].send_multipart(list(frames))
    time.sleep(30)


@pytest.mark.parametrize(
    "frames",
    [
        (b"DONE", b"short", b"\x00", b""),
        (b"DONE", b"\x00" * 16, b"\x00", b""),
        (b"READY",),
        (b"HELLO",),
        (b"DONE",),
    ],
    ids=["bad-task-id", "other-task", "ready-twice", "unknown", "short-done"],
)
def test_a_worker_that_breaks_the_protocol_is_retired_and_its_task_fails(scheduler, frames):
    with Client(scheduler.address) as client:
        future = client.submit(_worker_says, *frames)
        with pytest.raises(WorkerDied, match="broke the worker protocol"):
            future.result(timeout=WAIT)
        assert [client.submit(operator.add, i, 1).result(timeout=WAIT) for i in range(4)] == [1, 2, 3, 4]


def test_a_stranger_on_the_worker_socket_is_ignored(scheduler):
    stranger = _raw(scheduler._workers_address)
    try:
        stranger.send_multipart([b"READY"])
        stranger.send_multipart([b"DONE", b"\x00" * 16, b"\x00", b"forged"])
        _until(lambda: scheduler.stats["worker_strangers"] >= 2)
        assert not stranger.poll(300)  # given no work
    finally:
        stranger.close()
    with Client(scheduler.address) as client:
        assert client.submit(operator.add, 1, 1).result(timeout=WAIT) == 2


# -- Bounded reading and logging ------------------------------------------------------------


def test_a_message_of_many_frames_is_discarded_and_the_sender_heard_after_it(scheduler):
    raw = _raw(scheduler.address)
    try:
        before = scheduler.stats["malformed"]
        raw.send_multipart([b"TK"] + [b""] * 200_000)
        task = Task(TaskID.new(), dump_call(operator.add, (1, 2)))
        raw.send_multipart(encode(task))
        answer = _answer(raw, task.task_id)
        assert pickle.loads(answer.payload) == 3
        assert scheduler.stats["malformed"] == before + 1
    finally:
        raw.close()


def test_malformed_input_is_logged_at_a_bounded_rate_with_counts(caplog):
    now = [0.0]
    report = MalformedInputLog(logging.getLogger("taskfate.test"), "dropped", interval=5.0, clock=lambda: now[0])
    caplog.set_level(logging.WARNING, logger="taskfate.test")
    for _ in range(1000):
        report.report("peer", "garbage")
    report.flush()  # too soon: nothing more
    now[0] = 6.0
    report.flush()
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["dropped from peer: garbage", "dropped: 999 more in the last 5s (1000 in all)"]
    assert report.total == 1000


def test_a_flood_of_garbage_leaves_few_log_lines_and_every_count(scheduler, caplog):
    caplog.set_level(logging.WARNING, logger="taskfate.scheduler")
    before = scheduler.stats["malformed"]
    raw = _raw(scheduler.address)
    try:
        for i in range(2000):
            raw.send_multipart([b"junk", b"%d" % i])
        _until(lambda: scheduler.stats["malformed"] >= before + 2000)
    finally:
        raw.close()
    assert len([r for r in caplog.records if "malformed" in r.getMessage()]) <= 3


# -- The client: close, refusals, lost connections ---------------------------------------------


@pytest.fixture
def certificates(tmp_path):
    import zmq.auth

    for folder in ("admitted", "other"):
        (tmp_path / folder).mkdir()
    server_public, server_secret = zmq.auth.create_certificates(tmp_path, "server")
    _, admitted = zmq.auth.create_certificates(tmp_path / "admitted", "client")
    _, intruder = zmq.auth.create_certificates(tmp_path / "other", "intruder")
    return {"server_public": server_public, "server_secret": server_secret, "clients": tmp_path / "admitted", "admitted": admitted, "intruder": intruder}


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")
def test_only_listed_client_keys_are_admitted_and_a_refused_client_is_told(certificates):
    c = certificates
    with Scheduler("tcp://127.0.0.1:*", workers=1, curve_certificate=c["server_secret"], curve_clients=c["clients"]) as scheduler:
        with Client(scheduler.address, curve_server_key=c["server_public"], curve_certificate=c["admitted"]) as admitted:
            assert admitted.submit(operator.add, 2, 3).result(timeout=WAIT) == 5
        # Another keypair, a throwaway one; submitted at once, or only once the
        # refusal is known (a later future fails with it too, not with the
        # silence timeout, which is made too long to end it here).
        for certificate, refused_first in itertools.product((c["intruder"], None), (False, True)):
            with Client(scheduler.address, curve_server_key=c["server_public"], curve_certificate=certificate, heartbeat_timeout=3 * WAIT) as refused:
                if refused_first:
                    _until(lambda: refused.stats["handshake_failed"] > 0)
                future = refused.submit(operator.add, 1, 1)
                with pytest.raises(AuthenticationFailed, match="refused this client's credentials.*--curve-clients"):
                    future.result(timeout=WAIT)
        # A client without CURVE at all is not served either.
        with Client(scheduler.address, heartbeat_timeout=1) as plain:
            with pytest.raises(ConnectionLost):
                plain.submit(operator.add, 1, 1).result(timeout=WAIT)
        assert scheduler.stats["tasks"] == 1


def test_curve_needs_an_allow_list_and_a_secret_certificate(certificates):
    c = certificates
    public, secret = zmq.curve_keypair()
    with pytest.raises(ValueError, match="allow-list"):
        Scheduler("tcp://127.0.0.1:*", curve_secret_key=secret, curve_public_key=public)
    with pytest.raises(ValueError, match="holds no secret key"):
        Scheduler("tcp://127.0.0.1:*", curve_certificate=c["server_public"], curve_clients=c["clients"])
    with pytest.raises(ValueError, match="holds no secret key"):
        Client("tcp://127.0.0.1:1", curve_server_key=c["server_public"], curve_certificate=c["server_public"])


@pytest.mark.skipif(not zmq.has("curve"), reason="libzmq built without CURVE")
def test_close_is_bounded_after_a_refused_handshake(certificates):
    c = certificates
    with Scheduler("tcp://127.0.0.1:*", workers=1, curve_certificate=c["server_secret"], curve_clients=c["clients"]) as scheduler:
        for _ in range(10):
            client = Client(scheduler.address, curve_server_key=c["server_public"], curve_certificate=c["intruder"], heartbeat_timeout=0.5)
            client.submit(operator.add, 1, 1)
            time.sleep(0.05)
            started = time.monotonic()
            client.close()
            assert time.monotonic() - started < CLOSE_TIMEOUT
            assert not client._thread.is_alive()
            assert not client._outgoing
            with pytest.raises(RuntimeError, match="closed"):
                client._enqueue(Heartbeat())


def test_close_is_bounded_when_nobody_is_there():
    probe = zmq.Context.instance().socket(zmq.ROUTER)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(0)  # nobody listens on the port any more
    client = Client(f"tcp://127.0.0.1:{port}", heartbeat_timeout=0.5)
    futures = [client.submit(operator.add, i, 1) for i in range(100)]
    time.sleep(0.6)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < CLOSE_TIMEOUT
    assert not client._thread.is_alive() and all(f.done() for f in futures)


def test_tasks_of_futures_failed_by_silence_are_cancelled_when_the_scheduler_returns():
    fake = zmq.Context.instance().socket(zmq.ROUTER)
    fake.setsockopt(zmq.LINGER, 0)
    port = fake.bind_to_random_port("tcp://127.0.0.1")
    try:
        with Client(f"tcp://127.0.0.1:{port}", heartbeat_timeout=0.5) as client:
            future = client.submit(time.sleep, 30)
            identity, *frames = fake.recv_multipart()
            while frames[0] != b"TK":
                identity, *frames = fake.recv_multipart()
            with pytest.raises(ConnectionLost, match="silent"):
                future.result(timeout=WAIT)
            fake.send_multipart([identity, *encode(Heartbeat())])  # back from a stall
            deadline = time.monotonic() + WAIT
            cancels = []
            while not cancels and time.monotonic() < deadline:
                if fake.poll(100):
                    message = decode(fake.recv_multipart()[1:])
                    if isinstance(message, TaskCancel):
                        cancels.append(message)
            assert cancels == [TaskCancel(future.task_id, True)]
    finally:
        fake.close()


class StallingScheduler(Scheduler):
    """Stops its loop once, for ``stall`` seconds, on the first task: a
    scheduler that is alive but unheard for longer than clients wait."""

    stall = 1.5

    def _submit(self, identity, client, task):
        super()._submit(identity, client, task)
        if self.stall:
            time.sleep(self.stall)
            self.stall = 0


def test_a_stalled_scheduler_that_comes_back_frees_the_failed_futures_tasks():
    with StallingScheduler("tcp://127.0.0.1:*", workers=1) as scheduler:
        with Client(scheduler.address, heartbeat_timeout=0.5, heartbeat_interval=0.1) as client:
            lost = client.submit(time.sleep, 30)
            with pytest.raises(ConnectionLost):
                lost.result(timeout=WAIT)
            _until(lambda: lost.task_id not in scheduler._tasks)
            assert client.submit(operator.add, 1, 2).result(timeout=WAIT) == 3


# -- The soak: an attacker does everything at once, an honest client is unharmed ------------------


def _attack(address: str, victim_ids: list[TaskID], stop: threading.Event, sent: list[int]) -> None:
    rng = __import__("random").Random(5)
    socket = _raw(address)
    socket.setsockopt(zmq.SNDHWM, 0)
    try:
        while not stop.is_set():
            choice = rng.randrange(8)
            if choice == 0:
                socket.send_multipart([os.urandom(rng.randrange(1, 40)) for _ in range(rng.randrange(1, 7))])
            elif choice == 1:  # a flood of real tasks, over the attacker's quota
                for _ in range(50):
                    socket.send_multipart(encode(Task(TaskID.new(), dump_call(time.sleep, (0.5,)))))
            elif choice == 2:  # a frame over the limit, and one over twice the limit
                socket.send_multipart([b"TK", os.urandom(16), b"", bytes(1_200_000), b""])
                if rng.random() < 0.2:
                    socket.send_multipart([b"TR", bytes(2_500_000)])
            elif choice == 3:  # many frames
                socket.send_multipart([b"TK"] + [b""] * 50_000)
            elif choice == 4:  # a dependency frame just under the limit
                socket.send_multipart([b"TK", os.urandom(16), os.urandom(16), b"", bytes(1_000_000 - 1_000_000 % 16)])
            elif choice == 5 and victim_ids:  # steal results, cancel the victim's tasks
                target = rng.choice(victim_ids)
                socket.send_multipart(encode(Task(TaskID.new(), dump_call(str, (0,)), TaskID.new(), (target,))))
                socket.send_multipart(encode(TaskCancel(target, True)))
            elif choice == 6:  # messages only schedulers send
                socket.send_multipart(encode(TaskResult(TaskID.new(), TaskResultType.SUCCESS, b"x")))
            else:  # dependencies over the count limit
                socket.send_multipart([b"TK", os.urandom(16), os.urandom(16), b"", bytes(16 * 5000)])
            sent[0] += 1
            time.sleep(0.001)
    finally:
        socket.close()


#: How long the soak waits for one honest result. Longer than WAIT: with
#: isolated clients every switch of a worker between the honest client and
#: the attacker is a process start, and a graph node waits for its parent's,
#: so on a loaded 2-core machine one node can take several seconds. The
#: promise tested is that the work completes, not how fast.
SOAK_WAIT = 60


def _result_or_explain(future: Any, scheduler: Scheduler, client: Client) -> Any:
    """``future.result(timeout=SOAK_WAIT)``; on a timeout, fail with what
    both sides knew about the task then (read racily from the scheduler
    thread's tables: for the report only), so a failure under load says
    where the task stood rather than only that it was late."""
    try:
        return future.result(timeout=SOAK_WAIT)
    except concurrent.futures.TimeoutError:
        record = scheduler._tasks.get(future.task_id)
        group = sorted(scheduler._groups.get(future.group_id, ())) if future.group_id is not None else []
        members = {member.hex()[:8]: getattr(scheduler._tasks.get(member), "state", "finished") for member in group}
        workers = [(w.name, w.owner.hex()[:8] if w.owner else None, w.ready, w.killed, w.task is not None) for w in list(scheduler._workers.values())]
        raise AssertionError(
            f"no answer for {future!r} in {SOAK_WAIT}s (history {future.history}); scheduler: "
            f"record state={getattr(record, 'state', None)} waiting_on={getattr(record, 'waiting_on', None)} "
            f"finished={future.task_id in scheduler._finished} group={members} workers={workers} "
            f"idle={len(scheduler._idle)} ready_queues={ {k.hex()[:8]: len(v) for k, v in list(scheduler._ready.items())} } "
            f"stats={dict(scheduler.stats)}; client stats={dict(client.stats)}"
        ) from None


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_an_honest_clients_work_completes_while_an_attacker_does_everything():
    with Scheduler("tcp://127.0.0.1:*", workers=2, max_frame_size=1_000_000, max_client_tasks=200) as scheduler:
        with Client(scheduler.address, heartbeat_timeout=3) as honest:
            assert honest.submit(operator.add, 0, 0).result(timeout=WAIT) == 0
            victim_ids: list[TaskID] = []
            stop = threading.Event()
            sent = [0]
            attacker = threading.Thread(target=_attack, args=(scheduler.address, victim_ids, stop, sent), daemon=True)
            attacker.start()
            try:
                deadline = time.monotonic() + 4
                rounds = 0
                while time.monotonic() < deadline:
                    futures = [honest.submit(operator.mul, i, 3) for i in range(40)]
                    victim_ids.extend(f.task_id for f in futures[:5])
                    graph = honest.submit_graph({"a": 2, "b": (operator.add, "a", 5), "c": (operator.mul, "b", "b")}, ["a", "c"])
                    victim_ids.append(graph["a"].task_id)
                    assert [_result_or_explain(f, scheduler, honest) for f in futures] == [i * 3 for i in range(40)]
                    assert _result_or_explain(graph["c"], scheduler, honest) == 49
                    rounds += 1
            finally:
                stop.set()
                attacker.join(10)
            assert rounds >= 2 and sent[0] > 100
            assert honest.stats["connection_lost"] == 0
            assert scheduler.stats["malformed"] > 0 and scheduler.stats["refused"] > 0


def test_a_connection_reset_before_the_handshake_loses_no_future():
    """A listener that accepts and hangs up (a port changing hands as the
    client connects) is not a refusal, and nothing queued is lost."""
    import socket as stdlib_socket

    listener = stdlib_socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    with Client(f"tcp://127.0.0.1:{port}", heartbeat_timeout=10) as client:
        future = client.submit(operator.add, 1, 1)
        connection, _ = listener.accept()
        connection.setsockopt(stdlib_socket.SOL_SOCKET, stdlib_socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        connection.close()  # a reset, mid-greeting
        listener.close()
        fake = zmq.Context.instance().socket(zmq.ROUTER)
        fake.setsockopt(zmq.LINGER, 0)
        fake.bind(f"tcp://127.0.0.1:{port}")
        try:
            assert fake.poll(WAIT * 1000)
            identity, *frames = fake.recv_multipart()
            while frames[0] != b"TK":
                identity, *frames = fake.recv_multipart()
            fake.send_multipart([identity, *encode(TaskResult(TaskID(frames[1]), TaskResultType.SUCCESS, pickle.dumps(2)))])
            assert future.result(timeout=WAIT) == 2
            assert client.stats["connection_lost"] == 0
        finally:
            fake.close()
