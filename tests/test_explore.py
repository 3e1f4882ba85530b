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
from broken_lifecycles import BROKEN
from taskfate.client.cli import main
from taskfate.fsm import lifecycle
from taskfate.fsm.explore import INVARIANTS, Explorer, action_token, explore, load_lifecycle, parse_trace
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
    assert parse_trace(tokens) == list(violation.trace)
    assert invariant in violation.describe(explorer) and tokens in violation.describe(explorer)


def test_shortest_traces_are_shortest():
    # The late result needs a cancel first: two steps, and no fewer.
    report = Explorer(BROKEN["unrecorded_late_result"]()).run(10)
    assert [action_token(a) for a in report.violations["result_recorded"].trace] in (
        ["cancel:0", f"{event}:0"] for event in lifecycle.RESULT_EVENTS
    )


def test_a_graph_whose_late_member_is_left_out_of_the_cancel_is_caught():
    # A group cancel that forgets to arm the siblings' timers: the members it
    # moved wait for the group's answer forever if the scheduler is silent.
    declaration = lifecycle.declaration()
    declaration["states"] = [dict(s, on_enter=[]) if s["name"] == lifecycle.CANCEL_REQUESTED else s for s in declaration["states"]]
    for rule in declaration["transitions"]:
        if rule["trigger"] in (lifecycle.CANCEL, lifecycle.CLEAR):
            rule["after"] = ["arm_confirm_timeout", *rule["after"]]
    assert explore(declaration, depth=6).ok  # a lone future cannot see it
    report = explore(declaration, depth=6, futures=2)
    violation = report.violations["ends_once_timeouts_fire"]
    assert [kind for kind, _, _ in violation.trace] == ["submit", "cancel"]


def test_replaying_an_impossible_step_is_refused_clearly():
    explorer = Explorer("cancel")
    with pytest.raises(ValueError, match="not possible"):
        explorer.replay(parse_trace("timeout:0"))
    with pytest.raises(ValueError, match="cannot read trace step 'frobnicate'"):
        parse_trace("cancel:0 frobnicate")


def test_a_declaration_whose_callbacks_the_explorer_cannot_model_is_refused():
    declaration = lifecycle.declaration()
    declaration["transitions"][0]["after"] = ["launch_rockets"]
    with pytest.raises(ValueError, match="launch_rockets"):
        Explorer(declaration)


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


def test_command_line_refuses_bad_input_with_status_2(capsys):
    assert main(["explore", "--declaration", "no_such_module:thing"]) == 2
    assert main(["explore", "--replay", "teleport:0"]) == 2
    assert main(["explore", "--futures", "0"]) == 2
    assert "cannot" in capsys.readouterr().err


# -- Both sides together ----------------------------------------------------------


def _scheduler(name: str | None = None):
    return scheduler_lifecycle.compiled() if name is None else load_lifecycle(getattr(broken_lifecycles, name)(), name)


@pytest.mark.parametrize("policy", lifecycle.POLICIES)
def test_client_and_declared_scheduler_together_keep_every_promise(policy):
    lone = SystemExplorer(policy, _scheduler()).run(14)
    assert lone.ok and lone.depth_reached == 14, lone.summary()
    assert set(SYSTEM_INVARIANTS) <= set(lone.invariants)
    graph = SystemExplorer(policy, _scheduler(), futures=2).run(6)
    assert graph.ok, "\n".join(v.describe() for v in graph.violations.values())
    assert graph.depth_reached == 6


def test_a_node_whose_dependency_is_cancelled_must_be_answered_or_only_timeouts_end_it():
    broken = _scheduler("silent_dependants")
    # The client's confirm timer ends the node's future: it was moved to
    # cancel_requested with its graph.
    assert SystemExplorer("cancel", broken, futures=2).run(7).ok
    # Without the timer the node's future waits forever.
    explorer = SystemExplorer("cancel", broken, futures=2, timeouts=False)
    violation = explorer.run(7).violations["futures_can_end"]
    assert "f1 can never end" in violation.message
    final = explorer.replay(violation.trace)[-1][1]
    assert explorer.stuck_futures(final) == [1]
    assert violation.trace[-1][:3] == ("deliver", 1, -1)  # the group's TaskCancel arrives last
    assert explorer.describe_state(final).count("canceled (forgotten)") == 2


def test_client_timeouts_end_what_a_silent_scheduler_leaves_unless_a_stale_answer_intervenes():
    broken = _scheduler("unconfirmed_forced_cancel")
    explorer = SystemExplorer("cancel", broken, timeouts=False)
    without = explorer.run(16).violations["futures_can_end"]
    # Without the client's timer the silent scheduler hangs the cancel at once.
    assert [a[0] for a in without.trace if a[0] in ("duplicate", "drop")] == []
    final = explorer.replay(without.trace)[-1][1]
    assert explorer.stuck_futures(final) == [0] and final[0][0][0] == explorer._cancel_requested
    # With it, only a stale duplicate "cancel failed" (confirms carry no
    # request id) can send the future back to pending after the scheduler
    # silently cancelled it; the declared scheduler always confirms, so the
    # same ordering is harmless there (see the test above).
    with_timeouts = SystemExplorer("cancel", broken).run(16).violations["futures_can_end"]
    assert "duplicate" in [a[0] for a in with_timeouts.trace]
    assert len(with_timeouts.trace) > len(without.trace)


def test_command_line_explores_both_sides_and_replays_a_system_trace(capsys):
    assert main(["explore", "--system", "--policy", "cancel", "--depth", "16"]) == 0
    assert "futures_can_end" in capsys.readouterr().out
    argv = [
        "explore", "--system", "--policy", "cancel", "--futures", "2",
        "--scheduler-declaration", "broken_lifecycles:silent_dependants", "--no-timeouts", "--depth", "6",
    ]
    assert main(argv) == 1
    out = capsys.readouterr().out
    command = next(line.split("replay: ", 1)[1] for line in out.splitlines() if "replay: taskfate explore" in line)
    assert "--scheduler-declaration broken_lifecycles:silent_dependants" in command and "--no-timeouts" in command
    assert main(shlex.split(command)[1:]) == 1
    replayed = capsys.readouterr().out
    assert "TaskCancel(group, force=True)" in replayed and "from here f1 can never end" in replayed
