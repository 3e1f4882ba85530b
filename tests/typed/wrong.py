"""Mistakes taskfate's types catch: ``mypy --strict`` must reject every line
marked ``# error: <code>`` here, and nothing else (tests/test_typing.py).
Never run."""

from __future__ import annotations

from taskfate.client import Client, Future, FutureManager
from taskfate.protocol import Task, TaskID


def square(x: int) -> int:
    return x * x


def mistakes(client: Client) -> None:
    text: str = client.submit(pow, 2, 10).result()  # error: assignment
    client.submit(square, "seven")  # error: arg-type
    client.submit(square, 1, 2)  # error: call-arg
    client.submit(square, y=1)  # error: call-arg
    words: list[str] = list(client.map(square, range(3)))  # error: arg-type
    client.submit(square, 3).add_done_callback(lambda f: f.result().upper())  # error: attr-defined
    Client("tcp://127.0.0.1:5560", late_result="ignore")  # error: arg-type
    FutureManager(print, late_result="discard")  # error: arg-type
    future: Future[str] = client.submit(square, 3)  # error: arg-type
    client.shutdown(True, True)  # error: call-arg|misc
    manager = FutureManager(print)
    wrong_id: int = manager.submit(Task(TaskID.new(), b"")).task_id  # error: assignment
    print(text, words, future, wrong_id)


async def awaited(client: Client) -> None:
    text: str = await client.submit(square, 3)  # error: arg-type
    print(text)
