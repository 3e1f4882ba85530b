"""Each promise the explorer states bites, and together they leave no mutant.

For every invariant added to state a user-visible promise, one single-point
mutant of a shipped declaration (taken by name from the mutation kit, so it is
exactly what a developer's slip would produce) must be reported as breaking
it, with a trace that replays to the same promise. Then the whole kit runs on
every lifecycle taskfate ships and on the documented library example: no
mutant survives that is not equivalent (or only a change to the library's own
callbacks, which the explorer takes to have no protocol effect).
"""

from __future__ import annotations

import copy

import pulse_lifecycle as pulse
import pytest

from taskfate.client.scaler import SCALER_LIFECYCLES
from taskfate.fsm import STARTED_LIFECYCLES, STOCK_LIFECYCLES, declare, lifecycle
from taskfate.fsm.explore import Explorer, action_token, explore
from taskfate.fsm.mutate import mutants, mutation_report

STOCK = STOCK_LIFECYCLES["cancel"]
RUNNING = STARTED_LIFECYCLES["cancel"]

#: (lifecycle, mutant name, graph size, the promise it must be caught breaking)
BITES = [
    (STOCK, "pending --result_success--> callback keep_result moved from before to after", 1, "result_matches_state"),
    (STOCK, "cancel_requested --result_success--> callback discard_result moved from before to after", 1, "result_recorded"),
    (STOCK, "cancel_requested --result_success--> cancelled becomes --> pending", 1, "result_ends_future"),
    (RUNNING, "pending --started--> running becomes --> cancelled", 1, "notice_is_not_an_end"),
    (RUNNING, "pending --started--> dropped", 1, "started_means_running"),
    (RUNNING, "cancel_requested --confirm_cancel_failed--> running becomes --> pending", 1, "refusal_is_not_an_end"),
    (STOCK, "pending --cancel--> cancel_requested becomes --> cancelled", 1, "cancel_waits_for_answer"),
    (STOCK, "pending --cancel--> dropped", 1, "cancel_is_requested"),
    (STOCK, "pending --group_cancel--> dropped", 2, "group_cancelled_together"),
    (STOCK, "pending --clear--> without after callback cancel_group", 2, "one_request_per_cancel"),
    (STOCK, "cancel_requested --confirm_cancel_failed--> pending becomes --> cancel_requested", 1, "answer_ends_wait"),
    (STOCK, "cancel_requested --confirm_not_found--> dropped", 1, "gone_ends_future"),
    (STOCK, "pending --confirm_canceled--> dropped", 1, "gone_ends_future"),
    (STOCK, "cancel_requested --confirm_cancel_failed--> pending becomes --> cancelled", 1, "refusal_is_not_an_end"),
    (STOCK, "state cancel_requested without on_exit disarm_confirm_timeout", 1, "timer_armed_while_awaiting"),
    (STOCK, "pending --connection_lost--> failed becomes --> cancelled", 1, "loss_ends_every_future"),
    (STOCK, "pending --cancel--> callback send_cancel moved from after to before", 1, "terminal_never_left"),
]


def _mutant(life, name):
    (found,) = [mutant for mutant in mutants(life) if mutant.name == name]
    return declare(found.declaration, messages=life.messages, name=f"{life.name}: {name}", late_result=life.late_result)


@pytest.mark.parametrize(("life", "name", "futures", "promise"), BITES, ids=[f"{promise}: {name}" for _, name, _, promise in BITES])
def test_each_promise_catches_the_slip_it_exists_for(life, name, futures, promise):
    broken = _mutant(life, name)
    explorer = Explorer(broken, futures=futures, scheduler="any")
    report = explorer.run(10)
    assert promise in report.violations, report.summary()
    violation = report.violations[promise]
    replayed = explorer.replay(violation.trace)
    assert any(invariant == promise for _, _, step in replayed for invariant, _ in step.problems)
    # The original keeps the promise on the same world.
    assert explore(life, depth=10, futures=futures, scheduler="any").ok


def test_a_result_racing_a_cancel_is_held_to_the_declared_policy():
    # The rules of late_result="cancel", declared as promising "deliver".
    misdeclared = declare(lifecycle.declaration("cancel"), messages=lifecycle.stock_messages, name="says deliver", late_result="deliver")
    report = explore(misdeclared, depth=6)
    assert "policy_kept" in report.violations
    assert [action_token(a) for a in report.violations["policy_kept"].trace] == ["cancel:0", "result_success:0"]
    # No promise declared: nothing to hold the rules to.
    unstated = declare(lifecycle.declaration("cancel"), messages=lifecycle.stock_messages, name="says nothing")
    assert explore(unstated, depth=6).ok


def test_an_answer_that_arrives_while_the_request_is_sent_reaches_every_member():
    # The order the stock rules had before: the request leaves, then the
    # siblings move. A refusal arriving during the send misses the sibling,
    # which would then wait for it until its timer, and end cancelled while
    # the task runs on.
    declared = copy.deepcopy(lifecycle.declaration("cancel"))
    for rule in declared["transitions"]:
        if rule["trigger"] in (lifecycle.CANCEL, lifecycle.CLEAR):
            rule["after"] = [lifecycle.SEND_CANCEL, lifecycle.CANCEL_GROUP]
    old_order = declare(declared, messages=lifecycle.stock_messages, name="send first", late_result="cancel")
    assert explore(old_order, depth=10, futures=1).ok  # alone, the order does not matter
    report = explore(old_order, depth=10, futures=2)
    assert "answer_ends_wait" in report.violations
    tokens = [action_token(a) for a in report.violations["answer_ends_wait"].trace]
    assert tokens == ["submit", "cancel:0/confirm_cancel_failed"]
    assert explore(STOCK, depth=10, futures=2).ok


def test_a_trace_with_an_answer_during_the_send_replays_from_its_tokens():
    explorer = Explorer(STOCK, futures=2)
    trace = explorer.parse_trace("submit cancel:1/confirm_canceled clear/confirm_cancel_failed")
    assert trace[1:] == [("cancel", 1, "confirm_canceled"), ("clear", 0, "confirm_cancel_failed")]
    assert [action_token(action) for action in trace] == ["submit", "cancel:1/confirm_canceled", "clear/confirm_cancel_failed"]
    with pytest.raises(ValueError, match="only cancel and clear take an answer"):
        explorer.parse_trace("close/confirm_canceled")
    with pytest.raises(ValueError, match="cannot read trace step"):
        explorer.parse_trace("cancel:0/no_such_answer")


SHIPPED = [*STOCK_LIFECYCLES.values(), *STARTED_LIFECYCLES.values(), *SCALER_LIFECYCLES.values(), pulse.LIFECYCLE]


@pytest.mark.parametrize("life", SHIPPED, ids=lambda life: life.name)
def test_no_mutant_of_a_shipped_lifecycle_survives(life):
    report = mutation_report(life, depth=10)
    assert report.ok, report.summary()
    assert report.caught and report.refused
    # What is not caught is explained: equivalent with a reason, or a change
    # to the library's own callbacks only.
    assert all(report.equivalent.values())
    assert all("progress" in name for name in report.own_callbacks)  # pulse's note_progress, nothing else
