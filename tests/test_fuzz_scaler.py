"""The fuzz kit on a third-party client: docs/examples/fuzz_scaler.py.

Each finding in stock Scaler's client is replayed here in the shortest
ordering that shows it and pinned as an expected failure raising the one
promise it breaks (strict: a Scaler that fixes it turns the test red, and
the docs must change with it). The same orderings on taskfate's Scaler
adapter keep every promise. docs/fuzzing.md explains each finding.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("scaler")

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
sys.path.insert(0, str(EXAMPLES))

import fuzz_scaler  # noqa: E402

from taskfate.fsm import lifecycle as lc  # noqa: E402
from taskfate.fsm.fuzz import broken_promise  # noqa: E402


def _cancel_then_time_passes(machine):
    task = machine.submit_a_task(grouped=False)
    yield
    machine.a_thread_cancels_and_waits(task)
    yield
    machine.time_passes(6.0)
    yield


def _clear_then_time_passes(machine):
    machine.submit_a_task(grouped=False)
    yield
    machine.client_clears()
    yield
    machine.time_passes(6.0)
    yield


def _cancel_fails_then_the_result_comes(machine):
    task = machine.submit_a_task(grouped=False)
    yield
    machine.user_cancels(task)
    yield
    machine._send_confirm(task, lc.CONFIRM_CANCEL_FAILED, False)
    yield
    machine._send_result(task, lc.RESULT_SUCCESS)
    yield


def _clear_then_the_connection_is_lost(machine):
    machine.submit_a_task(grouped=False)
    yield
    machine.client_clears()
    yield
    machine.connection_is_lost()
    yield


#: Each finding: its ordering, and the promise (and the event after which) it breaks.
FINDINGS = {
    "a-cancel-waits-past-the-confirm-timeout": (_cancel_then_time_passes, "cancel-wait-ends", lc.CONFIRM_TIMEOUT),
    "a-clear-waits-past-the-confirm-timeout": (_clear_then_time_passes, "clear-wait-ends", lc.CONFIRM_TIMEOUT),
    "a-result-after-a-failed-cancel-is-dropped": (_cancel_fails_then_the_result_comes, "done", lc.RESULT_SUCCESS),
    "a-lost-connection-during-clear-ends-cancelled": (_clear_then_the_connection_is_lost, "cancelled", lc.CONNECTION_LOST),
}


def _replay(machine_class, ordering):
    """Run ``ordering`` on a fresh machine, checking every promise after each
    step as Hypothesis does."""
    machine = machine_class()
    try:
        machine.promises_hold()
        for _ in ordering(machine):
            machine.promises_hold()
    finally:
        machine.teardown()
    return machine


def _expected_failure(name):
    ordering, promise, event = FINDINGS[name]
    return pytest.param(name, marks=pytest.mark.xfail(raises=fuzz_scaler.ScalerMachine.finding(promise, event), strict=True, reason=f"stock Scaler: {name}"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", [_expected_failure(name) for name in FINDINGS])
def test_stock_scaler_breaks_a_promise(name):
    _replay(fuzz_scaler.ScalerMachine, FINDINGS[name][0])


#: Findings in Scaler's client agent (``ClientTaskManager``), which
#: taskfate.client.scaler keeps as it is: it forgets a task on any cancel
#: confirm, ``cancelFailed`` included, and then drops the task's result.
IN_THE_AGENT = {"a-result-after-a-failed-cancel-is-dropped"}


def _on_taskfate(name):
    if name not in IN_THE_AGENT:
        return name
    _, promise, event = FINDINGS[name]
    return pytest.param(name, marks=pytest.mark.xfail(raises=fuzz_scaler.ScalerMachine.finding(promise, event), strict=True, reason="Scaler's client agent"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", [_on_taskfate(name) for name in FINDINGS])
def test_taskfate_scaler_adapter_keeps_the_promise(name):
    machine = _replay(fuzz_scaler.TaskfateScalerMachine, FINDINGS[name][0])
    assert machine.futures and all(future.done() for future in machine.futures.values())


def test_the_adapter_stays_small():
    # At most 50 non-blank lines, imports included.
    text = (EXAMPLES / "fuzz_scaler.py").read_text()
    adapter = text.split("# -- adapter begins\n", 1)[1].split("# -- adapter ends", 1)[0]
    lines = [line for line in adapter.splitlines() if line.strip()]
    assert len(lines) <= 50, len(lines)
