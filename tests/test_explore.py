"""The explorer finds what is broken, says where, and passes what is not.

Each deliberately broken declaration in ``broken_lifecycles`` must be
reported by the explorer with a shortest trace that replays to the same
broken promise, and must also fail the stateful suite (``test_stateful``'s
``LifecycleMachine``) when the manager executes it: two independent checks,
each shown to bite.
"""

from __future__ import annotations

import shlex
import traceback

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

import broken_lifecycles
import explored_lifecycles
from broken_lifecycles import BROKEN
from explored_lifecycles import BROKEN_RUNNING, PROGRESS, RUNNING
from taskfate.client.cli import main
from taskfate.fsm import STARTED_LIFECYCLES, declare, lifecycle
from taskfate.fsm.explore import INVARIANTS, Explorer, action_token, explore, load_lifecycle, load_table, parse_trace, peer_events
from taskfate.fsm.explore_system import SYSTEM_INVARIANTS, SystemExplorer
from taskfate.scheduler import lifecycle as scheduler_lifecycle
from test_stateful import LifecycleMachine

#: The promise each broken copy must be reported as breaking.
EXPECTED = {
    "wrong_destination": "result_matches_state",
    "dropped_transition": "result_recorded",
    "missing_timeout": "ends_once_timeouts_fire",
    "unrecorded_late_result": "result_recorded",
    "leavable_terminal": "terminal_never_left",
}


@pytest.mark.parametrize("policy", lifecycle.POLICIES)
@pytest.mark.parametrize("futures", [1, 2, 3])
@pytest.mark.parametrize("scheduler", ["faithful", "any"])
def test_the_declared_lifecycle_keeps_every_promise(policy, futures, scheduler):
    report = explore(policy, depth=8 if futures == 3 else 10, futures=futures, scheduler=scheduler)
    assert report.ok, "\n".join(v.describe() for v in report.violations.values())
    assert report.states > 1 and report.edges >= report.states - 1


def test_a_lone_future_is_explored_exhaustively_and_says_what_it_never_exercised():
    report = explore("cancel", depth=10)
    assert report.exhausted and report.depth_reached < 10
    # A lone future has no sibling to cancel it, and a faithful scheduler
    # never contradicts the result it already sent.
    assert (lifecycle.PENDING, lifecycle.GROUP_CANCEL) in report.unexercised
    assert (lifecycle.DONE, lifecycle.RESULT_FAILED) in report.unexercised
    assert (lifecycle.DONE, lifecycle.RESULT_SUCCESS) not in report.unexercised


def test_a_graph_under_any_scheduler_exercises_every_declared_transition():
    declared = {(state, event) for state, rules in load_lifecycle("cancel").table.items() for event in rules}
    report = explore("cancel", depth=8, futures=2, scheduler="any")
    assert report.ok and declared and report.unexercised == []


def test_the_report_names_every_invariant_it_checked():
    summary = explore("deliver", depth=4).summary()
    assert all(name in summary for name in INVARIANTS)


@pytest.mark.parametrize("name", sorted(BROKEN))
@pytest.mark.parametrize("futures", [1, 2])
def test_the_explorer_reports_each_broken_declaration_with_a_replayable_trace(name, futures):
    explorer = Explorer(BROKEN[name](), futures=futures)
    report = explorer.run(10)
    invariant = EXPECTED[name]
    assert invariant in report.violations, report.summary()
    violation = report.violations[invariant]
    assert violation.trace, "a violation comes with the ordering that causes it"
    # Replaying the trace shows the same promise breaking on its last step.
    steps = explorer.replay(violation.trace)
    assert invariant in {problem for problem, _ in steps[-1][2].problems}
    assert all(invariant not in {problem for problem, _ in step.problems} for _, _, step in steps[:-1])
    # The replay command round-trips through the trace syntax.
    tokens = violation.replay.split("--replay ")[1].strip("'")
    assert parse_trace(tokens) == explorer.parse_trace(tokens) == list(violation.trace)
    assert invariant in violation.describe(explorer) and tokens in violation.describe(explorer)


def test_shortest_traces_are_shortest():
    # The late result needs a cancel first: two steps, and no fewer.
    report = Explorer(BROKEN["unrecorded_late_result"]()).run(10)
    assert [action_token(a) for a in report.violations["result_recorded"].trace] in (
        ["cancel:0", f"{event}:0"] for event in lifecycle.RESULT_EVENTS
    )


def test_a_graph_whose_late_member_is_left_out_of_the_cancel_is_caught():
    # A group cancel that moves the siblings to a state of their own which
    # arms no timer: the members it moved wait for the group's answer forever
    # if the scheduler is silent.
    declaration = lifecycle.declaration()
    declaration["states"].append({"name": "sibling_cancelling"})
    (group,) = [rule for rule in declaration["transitions"] if rule["trigger"] == lifecycle.GROUP_CANCEL]
    group["dest"] = "sibling_cancelling"
    declaration["transitions"] += [
        {"trigger": lifecycle.CONFIRM_CANCELED, "source": "sibling_cancelling", "dest": lifecycle.CANCELLED},
        {"trigger": lifecycle.CONFIRM_NOT_FOUND, "source": "sibling_cancelling", "dest": lifecycle.CANCELLED},
        {"trigger": lifecycle.CLOSE, "source": "sibling_cancelling", "dest": lifecycle.CANCELLED},
        {"trigger": lifecycle.CONNECTION_LOST, "source": "sibling_cancelling", "dest": lifecycle.FAILED, "before": ["keep_connection_error"]},
        *[{"trigger": event, "source": "sibling_cancelling", "dest": lifecycle.CANCELLED, "before": ["discard_result"]} for event in lifecycle.RESULT_EVENTS],
    ]
    assert explore(declaration, depth=6).ok  # a lone future cannot see it
    report = explore(declaration, depth=6, futures=2)
    violation = report.violations["ends_once_timeouts_fire"]
    assert [kind for kind, _, _ in violation.trace] == ["submit", "cancel"]
    assert "sibling_cancelling" in violation.message


def test_replaying_an_impossible_step_is_refused_clearly():
    explorer = Explorer("cancel")
    with pytest.raises(ValueError, match="not possible"):
        explorer.replay(parse_trace("timeout:0"))
    with pytest.raises(ValueError, match="cannot read trace step 'frobnicate'"):
        parse_trace("cancel:0 frobnicate")


def test_a_callback_the_explorer_cannot_model_is_taken_to_have_no_effect_and_named():
    declaration = lifecycle.declaration()
    assert declaration["transitions"][0]["trigger"] == lifecycle.RESULT_SUCCESS
    declaration["transitions"][0]["after"] = ["launch_rockets"]
    report = explore(declaration, depth=6)
    assert report.ok and report.unmodelled == ("launch_rockets",)
    assert "no protocol effect: launch_rockets" in report.summary()
    assert explore("cancel", depth=4).unmodelled == ()


def test_a_replayed_trace_names_only_the_lifecycles_own_events():
    explorer = Explorer(RUNNING)
    assert explorer.parse_trace(f"started:0 {PROGRESS}:0") == [("message", 0, "started"), ("message", 0, PROGRESS)]
    with pytest.raises(ValueError, match="cannot read trace step 'teleport:0'"):
        explorer.parse_trace("teleport:0")
    with pytest.raises(ValueError, match="'progress:0'"):
        Explorer("cancel").parse_trace("progress:0")


# -- Any declared lifecycle ------------------------------------------------------


def test_peer_events_are_split_by_what_the_rules_say_not_by_name():
    stock = peer_events(load_lifecycle("cancel"))
    assert stock.results == lifecycle.RESULT_EVENTS
    assert set(stock.confirms) == set(lifecycle.CONFIRM_EVENTS) and stock.notices == ()
    # The scheduler may cancel on its own: pending accepts that confirm.
    assert stock.unasked == {lifecycle.CONFIRM_CANCELED}
    assert stock.unclassified == ()
    running = peer_events(RUNNING)
    assert running.notices == (lifecycle.STARTED, PROGRESS)


def test_a_lifecycle_with_a_running_state_and_its_own_message_is_explored_not_waved_through():
    report = explore(RUNNING, depth=10)
    assert report.ok and report.exhausted, report.summary()
    # Every rule the running state brought, but a sibling's cancel (a lone
    # future has no sibling).
    new_rules = {
        (state, event)
        for state, event, rule in RUNNING.rules()
        if (lifecycle.RUNNING in (state, rule.dest) or event == PROGRESS) and event != lifecycle.GROUP_CANCEL
    }
    assert (lifecycle.PENDING, lifecycle.STARTED) in new_rules and (lifecycle.RUNNING, PROGRESS) in new_rules
    assert new_rules.isdisjoint(report.unexercised), report.unexercised
    assert report.unmodelled == ("note_progress",)
    # A graph under any scheduler exercises every declared rule, so strict passes.
    graph = explore(RUNNING, depth=8, futures=2, scheduler="any", strict=True)
    assert graph.ok and graph.unexercised == [], graph.summary()


def test_a_faithful_peer_sends_each_notice_once_and_only_before_the_result():
    explorer = Explorer(RUNNING)
    state = explorer.initial()
    notices = {(lifecycle.STARTED, 0), (PROGRESS, 0)}

    def offered(state):
        return {(event, index) for kind, index, event in explorer._actions(state) if kind == "message" and event in {lifecycle.STARTED, PROGRESS}}

    assert offered(state) == notices
    (_, state, _), = explorer.replay(explorer.parse_trace("started:0"))
    assert offered(state) == {(PROGRESS, 0)}
    *_, (_, state, _) = explorer.replay(explorer.parse_trace(f"started:0 {lifecycle.RESULT_FAILED}:0"))
    assert offered(state) == set()
    # Any scheduler sends them whenever it likes.
    anything = Explorer(RUNNING, scheduler="any")
    *_, (_, state, _) = anything.replay(anything.parse_trace(f"started:0 {lifecycle.RESULT_FAILED}:0"))
    assert {(lifecycle.STARTED, 0), (PROGRESS, 0)} <= {(event, index) for kind, index, event in anything._actions(state) if kind == "message"}


@pytest.mark.parametrize("name", sorted(BROKEN_RUNNING))
def test_each_broken_copy_of_the_running_lifecycle_is_caught_with_the_promise_it_breaks(name):
    make, invariant = BROKEN_RUNNING[name]
    explorer = Explorer(make())
    report = explorer.run(10)
    assert invariant in report.violations, report.summary()
    trace = report.violations[invariant].trace
    # Every one needs the started notice first: the explorer had to send it.
    assert trace[0] == ("message", 0, lifecycle.STARTED)
    assert invariant in {problem for problem, _ in explorer.replay(trace)[-1][2].problems}


def test_strict_fails_a_report_that_left_declared_transitions_unexercised():
    lenient = explore(STARTED_LIFECYCLES["cancel"], depth=10)
    strict = explore(STARTED_LIFECYCLES["cancel"], depth=10, strict=True)
    assert lenient.ok and not strict.violations
    assert strict.unexercised == lenient.unexercised and strict.unexercised
    assert not strict.ok and "FAILED (strict)" in strict.summary()


def test_a_result_no_protocol_message_maps_to_is_of_unknown_kind_and_reported():
    class Finished:
        task_id = None

    def classify(message):
        return "finished" if isinstance(message, Finished) else lifecycle.stock_messages(message)

    declared = lifecycle.declaration()
    declared["transitions"].append({"trigger": "finished", "source": lifecycle.PENDING, "dest": lifecycle.DONE, "before": ["keep_result"]})
    declared["transitions"].append({"trigger": "finished", "source": lifecycle.CANCEL_REQUESTED, "dest": lifecycle.CANCELLED, "before": ["discard_result"]})
    declared["transitions"].append({"trigger": "finished", "source": lifecycle.TERMINAL, "dest": None, "after": ["discard_result"]})
    report = explore(declare(declared, messages=classify, name="finished"), depth=8)
    assert report.ok and report.unclassified == ("finished",), report.summary()
    assert "unknown kind" in report.summary()
    # Kept by a rule on a confirm, a TaskCancelConfirm is known not to be a result.
    declared = lifecycle.declaration()
    (rule,) = [r for r in declared["transitions"] if r["trigger"] == lifecycle.CONFIRM_CANCELED and r["source"] == [lifecycle.PENDING]]
    rule["before"] = ["keep_result"]
    assert "result_matches_state" in explore(declared, depth=6).violations


#: The checks of the stateful suite that may catch each broken copy first.
STATEFUL_CHECKS = {
    "wrong_destination": {"queries_agree_with_the_state"},
    "dropped_transition": {"every_result_is_delivered_or_recorded"},
    "missing_timeout": {"cancel_requested_ends_within_the_timeout"},
    "unrecorded_late_result": {"every_result_is_delivered_or_recorded"},
    "leavable_terminal": {"terminal_states_are_entered_once_and_never_left", "queries_agree_with_the_state"},
}


def _stateful_settings() -> settings:
    # Generation only (no shrinking: the point is that it fails, not how
    # small the example is), deterministic, and with room to spare: these
    # bugs are found within a hundred examples; the cap bounds a miss.
    return settings(
        max_examples=1000,
        stateful_step_count=30,
        phases=[Phase.generate],
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_the_stateful_suite_fails_on_each_broken_declaration(name):
    broken = load_lifecycle(BROKEN[name](), name)

    class OnBrokenLifecycle(LifecycleMachine):
        lifecycles = (broken,)

    with pytest.raises(AssertionError) as failure:
        run_state_machine_as_test(OnBrokenLifecycle, settings=_stateful_settings())
    checks = {frame.name for frame in traceback.extract_tb(failure.value.__traceback__)}
    assert checks & STATEFUL_CHECKS[name], f"failed for another reason: {failure.value!r}"


def test_command_line_summary_and_exit_status(capsys):
    assert main(["explore", "--depth", "6"]) == 0
    out = capsys.readouterr().out
    assert "'cancel'" in out and "'deliver'" in out and "every invariant held" in out


def test_command_line_prints_a_replay_command_that_reproduces_the_violation(capsys):
    assert main(["explore", "--declaration", "broken_lifecycles:leavable_terminal", "--depth", "6"]) == 1
    out = capsys.readouterr().out
    assert "VIOLATED terminal_never_left" in out
    command = next(line.split("replay: ", 1)[1] for line in out.splitlines() if "replay: taskfate explore" in line)
    argv = shlex.split(command)
    assert argv[0] == "taskfate"
    assert main(argv[1:]) == 1
    replayed = capsys.readouterr().out
    assert "VIOLATED terminal_never_left" in replayed and "failed --result_failed--> failed" in replayed


def test_command_line_explores_a_named_lifecycle_and_strict_decides_the_status(capsys):
    assert main(["explore", "--declaration", "explored_lifecycles:RUNNING", "--depth", "8"]) == 0
    out = capsys.readouterr().out
    assert "'progress+running'" in out and "notices started, progress" in out and "note_progress" in out
    assert main(["explore", "--declaration", "explored_lifecycles:RUNNING", "--depth", "8", "--strict"]) == 1
    assert "FAILED (strict)" in capsys.readouterr().out
    argv = ["explore", "--declaration", "explored_lifecycles:RUNNING", "--futures", "2", "--scheduler", "any", "--depth", "8", "--strict"]
    assert main(argv) == 0
    assert main(["explore", "--declaration", "explored_lifecycles:result_dropped_in_running", "--depth", "6"]) == 1
    assert "VIOLATED result_recorded" in capsys.readouterr().out


def test_command_line_help_is_readable(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["explore", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "Exit status" in out and "--strict" in out and "MODULE:NAME" in out and "examples:" in out


def test_command_line_refuses_bad_input_with_status_2(capsys):
    assert main(["explore", "--declaration", "no_such_module:thing"]) == 2
    assert main(["explore", "--replay", "teleport:0"]) == 2
    assert main(["explore", "--futures", "0"]) == 2
    assert main(["explore", "--system", "--strict"]) == 2
    assert "cannot" in capsys.readouterr().err


# -- Both sides together ----------------------------------------------------------


def _scheduler(name: str | None = None):
    return scheduler_lifecycle.compiled() if name is None else load_table(getattr(broken_lifecycles, name)(), name)


@pytest.mark.parametrize("policy", lifecycle.POLICIES)
@pytest.mark.parametrize("timeouts", [True, False], ids=["timer", "no timer"])
def test_client_and_declared_scheduler_together_keep_every_promise_with_both_directions_faulty(policy, timeouts):
    # Both directions lose, duplicate and reorder; with and without the
    # client's confirm timer; one future, a 2-node and a 3-node graph.
    for futures, depth in ((1, 10), (2, 6), (3, 5)):
        report = SystemExplorer(policy, _scheduler(), futures=futures, timeouts=timeouts).run(depth)
        assert report.ok, "\n".join(v.describe() for v in report.violations.values())
        assert report.depth_reached == depth and set(SYSTEM_INVARIANTS) <= set(report.invariants)
    # One ordered connection to the scheduler, deeper.
    ordered = SystemExplorer(policy, _scheduler(), timeouts=timeouts, lossy_requests=False).run(14)
    assert ordered.ok and ordered.depth_reached == 14, ordered.summary()


def test_without_cancel_epochs_a_duplicated_stale_refusal_undoes_a_forced_cancel():
    explorer = SystemExplorer("cancel", _scheduler(), epochs=False)
    report = explorer.run(8)
    violation = report.violations["refusal_answers_latest_request"]
    tokens = [":".join(map(str, action)) for action in violation.trace]
    # A gentle cancel is refused (the task runs), the refusal is duplicated,
    # a forced cancel follows, and the copy of the old refusal arrives.
    assert tokens == ["cancel:0:0", "deliver:0:0:0:0", "assign:0", "deliver:1:0:0:1", "duplicate:3:0:1:1", "cancel:0:1", "deliver:3:0:1:1"]
    final = explorer.replay(violation.trace)[-1][1]
    assert explorer.lifecycle.states[final[0][0][0]] == lifecycle.PENDING  # back to pending, its forced cancel in flight
    # With epochs the copy answers request 1 of 2: dropped, and counted as such.
    numbered = SystemExplorer("cancel", _scheduler())
    steps = numbered.replay(violation.trace)
    assert numbered.lifecycle.states[steps[-1][1][0][0][0]] == lifecycle.CANCEL_REQUESTED
    assert any("answers request 1, not the latest (2)" in effect for effect in steps[-1][2].effects)
    assert numbered.run(8).ok


def test_a_node_whose_dependency_is_cancelled_must_be_answered_or_only_timeouts_end_it():
    broken = _scheduler("silent_dependants")
    # The client's confirm timer ends the node's future: it was moved to
    # cancel_requested with its graph.
    assert SystemExplorer("cancel", broken, futures=2, lossy_requests=False).run(7).ok
    # Without the timer the node's future waits forever.
    explorer = SystemExplorer("cancel", broken, futures=2, timeouts=False, lossy_requests=False)
    violation = explorer.run(7).violations["futures_can_end"]
    assert "f1 can never end" in violation.message
    final = explorer.replay(violation.trace)[-1][1]
    assert explorer.stuck_futures(final) == [1]
    assert violation.trace[-1][:3] == ("deliver", 1, -1)  # the group's TaskCancel arrives last
    assert explorer.describe_state(final).count("canceled (forgotten)") == 2


def test_client_timeouts_end_what_a_silent_scheduler_leaves_unless_a_stale_answer_intervenes():
    broken = _scheduler("unconfirmed_forced_cancel")
    explorer = SystemExplorer("cancel", broken, timeouts=False, lossy_requests=False)
    without = explorer.run(16).violations["futures_can_end"]
    # Without the client's timer the silent scheduler hangs the cancel at once.
    assert [a[0] for a in without.trace if a[0] in ("duplicate", "drop")] == []
    final = explorer.replay(without.trace)[-1][1]
    assert explorer.stuck_futures(final) == [0] and explorer.lifecycle.states[final[0][0][0]] == lifecycle.CANCEL_REQUESTED
    # With it, a protocol without cancel epochs still hangs: a stale
    # duplicate "cancel failed" sends the future back to pending after the
    # scheduler silently cancelled it.
    unnumbered = SystemExplorer("cancel", broken, epochs=False, lossy_requests=False).run(16).violations["futures_can_end"]
    assert "duplicate" in [a[0] for a in unnumbered.trace]
    assert len(unnumbered.trace) > len(without.trace)
    # Epochs drop that stale refusal: the timer ends the future.
    assert SystemExplorer("cancel", broken, lossy_requests=False).run(16).ok


def test_command_line_explores_both_sides_and_replays_a_system_trace(capsys):
    assert main(["explore", "--system", "--policy", "cancel", "--depth", "8"]) == 0
    assert "futures_can_end" in capsys.readouterr().out
    argv = [
        "explore", "--system", "--policy", "cancel", "--futures", "2",
        "--scheduler-declaration", "broken_lifecycles:silent_dependants", "--no-timeouts", "--ordered-requests", "--depth", "6",
    ]
    assert main(argv) == 1
    out = capsys.readouterr().out
    command = next(line.split("replay: ", 1)[1] for line in out.splitlines() if "replay: taskfate explore" in line)
    assert "--scheduler-declaration broken_lifecycles:silent_dependants" in command and "--no-timeouts --ordered-requests" in command
    assert main(shlex.split(command)[1:]) == 1
    replayed = capsys.readouterr().out
    assert "TaskCancel(group, force=True, epoch=1)" in replayed and "from here f1 can never end" in replayed
