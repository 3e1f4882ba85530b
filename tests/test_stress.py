"""Threads cancelling while another thread delivers: every future ends once, nothing hangs."""

from __future__ import annotations

import pickle
import random
import threading

import pytest

from taskfate.client import FutureManager
from taskfate.protocol import CancelConfirmType, Task, TaskCancel, TaskCancelConfirm, TaskID, TaskResult, TaskResultType


@pytest.mark.timeout(60)
@pytest.mark.parametrize("policy", ["cancel", "deliver"])
def test_cancellers_racing_a_deliverer(policy):
    rng = random.Random(1234)
    requests: list[TaskCancel] = []
    lock = threading.Lock()

    def send(message):
        if isinstance(message, TaskCancel):
            with lock:
                requests.append(message)

    manager = FutureManager(send, late_result=policy, cancel_timeout=0.5)
    futures = [manager.submit(Task(TaskID.new(), b"")) for _ in range(600)]
    endings = {f.task_id: [] for f in futures}
    for future in futures:
        future.add_done_callback(lambda f: endings[f.task_id].append(f.state))
    returns: dict[TaskID, list[bool]] = {f.task_id: [] for f in futures}

    def canceller(chunk):
        for future in chunk:
            returns[future.task_id].append(future.cancel(timeout=0.2))

    def deliverer():
        order = futures[:]
        rng.shuffle(order)
        for future in order:
            choice = rng.random()
            if choice < 0.5:
                manager.on_message(TaskResult(future.task_id, TaskResultType.SUCCESS, pickle.dumps(1)))
            elif choice < 0.8:
                manager.on_message(TaskCancelConfirm(future.task_id, CancelConfirmType.CANCELED))
            else:
                manager.on_message(TaskCancelConfirm(future.task_id, CancelConfirmType.CANCEL_FAILED))
                manager.on_message(TaskResult(future.task_id, TaskResultType.SUCCESS, pickle.dumps(2)))

    threads = [threading.Thread(target=canceller, args=(futures[i::4],)) for i in range(4)]
    threads.append(threading.Thread(target=deliverer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(45)
        assert not thread.is_alive(), "a thread hung"
    assert all(f.done() for f in futures), "every ordering the deliverer plays ends the future"
    assert all(len(states) == 1 and states[0] == f.state for f, states in ((f, endings[f.task_id]) for f in futures))
    for future in futures:
        ret = returns[future.task_id][0]
        assert ret is False or future.cancelled()
    assert len(manager) == 0
