"""The message path: frames in, futures resolved.

Run: ``python bench/messages.py`` (``--inflight`` live futures per round,
``--rounds``).

What an I/O thread does for each ``TaskResult`` it receives, on one core:
``decode`` the frames (a list of ``bytes``, as pyzmq's ``recv_multipart``
returns them), route the message to its future, and run the transition to
``done``. Each round tracks ``--inflight`` futures (a client's window of
tasks in flight), builds their result frames, then times the loop
``manager.on_message(decode(frames))`` over all of them. Beside it, in the
same rounds, the raw ``decode`` rate of the same frames: the path's share of
the time that is not the codec's. The goal is at least 500,000 messages/s
for the whole path.
"""

from __future__ import annotations

import argparse
import statistics

from _harness import Identity, clock, per_item, verdict

from taskfate.client import FutureManager
from taskfate.protocol import TaskID, TaskResult, TaskResultType, decode, encode

GOAL = 500_000


def _frames(ids: list[TaskID]) -> list[list[bytes]]:
    return [encode(TaskResult(task_id, TaskResultType.SUCCESS, b"v")) for task_id in ids]


def decode_only(n: int) -> float:
    frames = _frames([TaskID.new() for _ in range(n)])
    started = clock()
    for message in frames:
        decode(message)
    return clock() - started


def message_path(n: int) -> float:
    manager = FutureManager(lambda message: None, serializer=Identity())
    futures = [manager.track(TaskID.new()) for _ in range(n)]
    frames = _frames([future.task_id for future in futures])
    deliver = manager.on_message
    started = clock()
    for message in frames:
        deliver(decode(message))
    elapsed = clock() - started
    assert len(manager) == 0 and futures[-1].result() == b"v"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inflight", type=int, default=10_000, help="live futures per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    raw: list[float] = []
    path: list[float] = []
    for _ in range(args.rounds):
        raw.append(per_item(decode_only, args.inflight))
        path.append(per_item(message_path, args.inflight))
    decode_rate = 1 / statistics.median(raw)
    path_rate = 1 / statistics.median(path)
    print(f"decode alone              {decode_rate:12,.0f} messages/s")
    print(
        f"decode + route + transition {path_rate:10,.0f} messages/s   {path_rate / decode_rate:.2f}x the decode rate"
        f"   goal >= {GOAL:,}/s: {verdict(GOAL / path_rate, 1.0)}"
    )


if __name__ == "__main__":
    main()
