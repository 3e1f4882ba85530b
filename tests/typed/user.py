"""A strictly typed program using taskfate as users do.

``tests/test_typing.py`` runs ``mypy --strict`` on this file against the
installed package and requires it to pass; nothing here runs (the functions
need a scheduler). Every annotation below is a claim about what taskfate's
types let a user write without casts: a value's type follows from the
function submitted, through ``result()``, ``map``, done callbacks and
``await``. ``wrong.py`` beside it holds the mistakes those types catch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator

import taskfate
from taskfate.client import (
    Client,
    ConnectionLost,
    DependencyFailed,
    Future,
    FutureManager,
    ProtocolError,
    Step,
    TaskFailed,
    WorkerDied,
)
from taskfate.fsm import POLICIES, Policy
from taskfate.protocol import Message, Task, TaskID, TaskResult, TaskResultType, decode

VERSION: str = taskfate.__version__


def square(x: int) -> int:
    return x * x


def greet(name: str, *, punctuation: str = "!") -> str:
    return f"hello {name}{punctuation}"


def on_done(future: Future[int]) -> None:
    print(future.result() + 1)


def with_a_client(address: str) -> None:
    policy: Policy = "deliver"
    assert policy in POLICIES
    with Client(address, late_result=policy, cancel_timeout=10) as client:
        power: int = client.submit(pow, 2, 10).result(timeout=30)
        squared: Future[int] = client.submit(square, 7)
        squared.add_done_callback(on_done)
        squared.add_done_callback(lambda f: print(f.result() * 2))
        text: str = client.submit(greet, "world", punctuation="?").result()
        squares: Iterator[int] = client.map(square, range(10), timeout=60)
        total: int = sum(squares) + power
        for value in client.map(square, range(3), buffersize=2):
            total += value
        done, _ = concurrent.futures.wait([squared], timeout=5)
        firsts: list[int] = [future.result() for future in done]
        for finished in concurrent.futures.as_completed([squared, client.submit(square, 3)]):
            total += finished.result()
        nodes = client.submit_graph({"a": 1, "b": (abs, "a")}, ["b"])
        try:
            node_value: object = nodes["b"].result()
        except DependencyFailed as failed:
            print(failed.key, failed.dependency)
        except (ConnectionLost, WorkerDied, TaskFailed) as error:
            print(error)
        steps: tuple[Step, ...] = squared.history
        dates: list[float] = [client.manager.wall_time(step.time) for step in steps]
        print(text, total, firsts, node_value, dates, squared.state, squared.outcome)
        client.shutdown(wait=True, cancel_futures=True)


def as_an_executor(executor: concurrent.futures.Executor) -> int:
    return executor.submit(square, 4).result()


def any_executor_will_do(address: str) -> int:
    with Client(address) as client:
        return as_an_executor(client)


async def awaiting(client: Client) -> str:
    number: int = await client.submit(square, 5)
    wrapped: int = await asyncio.wrap_future(client.submit(square, number))
    return await client.submit(greet, str(wrapped))


def embedding(frames: list[bytes]) -> object:
    sent: list[Message] = []
    manager = FutureManager(sent.append, late_result="cancel", cancel_timeout=5)
    future: Future[object] = manager.submit(Task(TaskID.new(), b"payload"))
    tracked = manager.track(TaskID.new())
    try:
        manager.on_message(decode(frames))
    except ProtocolError:
        pass
    manager.on_message(TaskResult(tracked.task_id, TaskResultType.SUCCESS, b""))
    return future.result(timeout=0)


class TimedFuture(Future):
    """A lifecycle's own future class, bare ``Future`` as before it was generic."""

    def note_progress(self, argument: object) -> None:
        print(self.task_id, argument)


def own_future_class(send: list[Message]) -> FutureManager:
    return FutureManager(send.append, future_class=TimedFuture)
