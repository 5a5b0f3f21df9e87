"""The Optimize tab estimates a run from its first evaluation and
asks before one longer than a threshold (10,000 iterations were accepted with
no estimate). The tab's tests run on the tiny model with the threshold at 0,
so the small run counts as long."""

from __future__ import annotations

import threading

from optimize.run.results import Progress
from tests.support.forms import UPDATE, form, views
from ui.jobs import JobLimits, RunStatus
from ui.long_run import LongRunGate, LongRunQuestion

ASKS = "⏸ This run would take about"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def at(done: int, total: int) -> Progress:
    return Progress(done=done, total=total, best_score=None, baseline=0.5, latest=None)


def test_the_gate_asks_only_after_the_first_evaluation_of_a_long_run():
    gate = LongRunGate(threshold=900, answer_wait=600, clock=Clock())
    emitted: list[object] = []
    cancel = threading.Event()
    assert gate.check(at(1, 101), 899.0, emitted.append, cancel) == 0  # short enough
    assert gate.check(at(1, 101), None, emitted.append, cancel) == 0  # nothing timed yet
    assert gate.check(at(2, 101), 5000.0, emitted.append, cancel) == 0  # asked only first
    assert gate.check(at(1, 1), 5000.0, emitted.append, cancel) == 0  # nothing left to run
    assert emitted == [] and not cancel.is_set() and not gate.go_on()


def test_the_gate_waits_for_the_go_ahead():
    gate = LongRunGate(threshold=900, answer_wait=600, clock=Clock())
    cancel = threading.Event()
    asked = threading.Event()
    emitted: list[object] = []

    def emit(item: object) -> None:
        emitted.append(item)
        asked.set()

    waiter = threading.Thread(target=gate.check, args=(at(1, 101), 2000.0, emit, cancel))
    waiter.start()
    assert asked.wait(30)
    assert gate.asking
    assert gate.go_on()
    waiter.join(30)
    assert not waiter.is_alive() and not cancel.is_set() and not gate.asking
    [question] = emitted
    assert question == LongRunQuestion(2000.0, 1, 101)
    assert "about 33 min more (100 evaluations left, timed from the first 1)" in question.status()
    assert "click **Go on**" in question.status()


def test_an_unanswered_question_cancels_the_run():
    clock = Clock()
    gate = LongRunGate(threshold=900, answer_wait=600, clock=clock)
    cancel = threading.Event()

    def emit(_item: object) -> None:
        clock.now += 601  # the page went away: nobody answers in time

    assert gate.check(at(1, 101), 2000.0, emit, cancel) == 601
    assert cancel.is_set() and not gate.asking


def test_the_wait_is_left_out_of_the_estimate():
    clock = Clock()
    status = RunStatus(clock)
    status.started(11)
    clock.now = 10.0
    status.advanced(1, 11)
    assert status.left_seconds() == 100.0
    clock.now = 1000.0  # 990 s waiting for the answer
    status.paused(990.0)
    clock.now = 1010.0
    status.advanced(2, 11)
    assert status.left_seconds() == 90.0


def _until_asked(gen):
    from ui.optimize_tab import VIEW

    for view in gen:
        assert len(view) == len(VIEW)
        if view[-1].startswith(ASKS):
            # Go on is shown only now, while the run asks
            assert view[VIEW.index("go_on")] == {**UPDATE, "visible": True}, view
            return view
    raise AssertionError("the run never asked")


def test_a_long_run_asks_and_only_go_on_answers(optimize_actions, tiny_session):
    """The question is answered by **Go on**, never by the button that
    started the run: another click of Optimize vectors (a double click, a
    second page) is told the model is busy and leaves the run waiting."""
    optimize_actions.long_run_seconds = 0  # every run counts as long
    first = optimize_actions.optimize(*form(optimize_actions))
    question = _until_asked(first)
    # 7 left: 4 settings, then the baseline and 2 finalists on the confirmation documents
    assert "7 evaluations left" in question[-1] and "click **Go on**" in question[-1]
    assert (
        optimize_actions.jobs.running is not None and tiny_session.lock.locked()
    )  # it waits, holding the model
    again = optimize_actions.optimize(*form(optimize_actions, particles=9))
    assert "The model is busy with an optimization" in next(again)[-1]
    again.close()
    assert optimize_actions.jobs.running.gate.asking  # still waiting: the click answered nothing
    assert optimize_actions.go_on().startswith("▶ Going on")
    final = views(first)[-1]
    result = final[5]
    assert final[-1].startswith("✓ Done.") and len(result.history) == 5  # 1 + 2 particles x 2
    assert not tiny_session.lock.locked()
    assert optimize_actions.go_on() == "Nothing waits for a go-ahead."


def test_a_run_over_the_operators_limit_is_refused_after_its_first_evaluation(
    optimize_actions, tiny_session
):
    optimize_actions.jobs.limits = JobLimits(confirm_seconds=0, refuse_seconds=1e-9)
    final = views(optimize_actions.optimize(*form(optimize_actions)))[-1]
    assert "refuses jobs estimated over" in final[-1] and "a limit its operator set" in final[-1]
    assert optimize_actions.jobs.running is None and not tiny_session.lock.locked()


def test_cancel_answers_the_question(optimize_actions, tiny_session):
    before = tiny_session.current().steerer.vectors
    optimize_actions.long_run_seconds = 0
    gen = optimize_actions.optimize(*form(optimize_actions))
    _until_asked(gen)
    assert optimize_actions.cancel().startswith("✕ Cancelling")
    final = views(gen)[-1]
    assert "cancelled before any steering setting was scored" in final[-1], final[-1]
    assert tiny_session.current().steerer.vectors == before and not tiny_session.lock.locked()


def test_a_short_run_does_not_ask(optimize_actions):
    shown = views(optimize_actions.optimize(*form(optimize_actions)))
    assert not any(view[-1].startswith(ASKS) for view in shown)
    assert shown[-1][-1].startswith("✓ Done.")
