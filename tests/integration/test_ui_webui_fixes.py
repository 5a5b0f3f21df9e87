"""What webui users hit, at the level of the tab's handlers: no
"Apply best" for a setting that did not beat the unsteered model, "no model"
before "select a vector", no flicker back to "Optimizing" after Cancel, and
the note a reply gets while an optimization holds the model."""

from __future__ import annotations

import dataclasses

import pytest

from steering.session import ModelSession
from tests.support.forms import UPDATE, form
from ui import format as fmt
from ui.jobs import RunStatus
from ui.optimize_tab import OptimizeActions
from ui.steering_tab import SteeringActions


@pytest.fixture
def actions(tiny_session, tmp_path):
    steering = SteeringActions(tiny_session, tmp_path)
    for _ in steering.add_vector("I love this.", "I hate this.", 1, 2.0):
        pass
    return OptimizeActions(tiny_session, steering.save_dir)


def run(actions, **changes):
    return list(actions.optimize(*form(actions, **changes)))


def test_a_run_that_beat_nothing_offers_nothing_to_apply(actions, tiny_session):
    final = run(actions)[-1]
    result = final[5]
    steered_nothing = dataclasses.replace(
        result.baseline, iteration=0, particle=0, layers=(1,), alphas=(0.0,)
    )
    worse = dataclasses.replace(result, best=steered_nothing)
    assert not worse.improved
    assert actions.apply_offer(worse) == {**UPDATE, "visible": False}
    before = tiny_session.current().steerer.vectors
    *_, status, _choices = list(actions.apply(worse))[-1]
    assert status.startswith(
        "⚠ Could not apply the best setting: No setting beat the unsteered model"
    ), status
    assert tiny_session.current().steerer.vectors == before
    card = fmt.verdict_card(worse)
    assert "No setting beat the unsteered model" in card and "Apply best" not in card
    assert "Next:" in card  # what to try instead
    assert actions.apply_offer(None)["visible"] is False  # before any run: nothing to apply
    if result.improved:
        assert "Apply best" in final[-1] and actions.apply_offer(result)["visible"] is True
    else:
        assert fmt.md(result.verdict.headline) in final[-1]


def test_optimize_with_no_model_says_no_model():
    nothing = OptimizeActions(ModelSession(lambda: None))
    (view,) = list(nothing.optimize(*form(nothing)))
    assert view[-1] == fmt.failed(
        "start the optimization", "No model is loaded. Load a model first."
    )


def test_after_cancel_the_status_never_says_optimizing_again(actions):
    shown = []
    for view in actions.optimize(*form(actions, particles=2, iterations=6)):
        shown.append(view[-1])
        if len(shown) == 3:
            actions.cancel()
    after = shown[3:]
    assert after and not any(line.startswith("Optimizing") for line in after), after
    assert any(line.startswith("Optimizing") for line in shown[:3])


def test_run_status_tells_a_waiting_reply_how_long():
    now = [100.0]
    status = RunStatus(clock=lambda: now[0])
    assert status.waiting_note() is None  # nothing runs: nothing to say
    status.started(13)
    assert "it has just started (13 evaluations)" in status.waiting_note()
    now[0] += 30
    status.advanced(3, 13)
    assert status.left_seconds() == pytest.approx(100.0)
    note = status.waiting_note()
    assert "this reply waits until it ends: about 2 min left (3 of 13 evaluations done)" in note
    status.finished()
    assert status.waiting_note() is None


def test_a_running_optimization_reports_its_progress_to_the_note(actions):
    notes = [actions.run_status.waiting_note() for _view in actions.optimize(*form(actions))]
    assert any(n and "of 8 evaluations done" in n for n in notes), notes
    assert actions.run_status.waiting_note() is None  # over: replies no longer wait


def test_plots_and_progress_read_on_a_dark_page():
    from optimize.run.results import Evaluation
    from ui import plots

    history = [
        Evaluation(-1, -1, (), (), 0.5, 0.1, 1.0),
        Evaluation(0, 0, (3,), (1.0,), 0.6, 0.1, 1.0),
    ]
    for fig in (plots.convergence(history, 0.5, [0.6]), plots.particles(history, [1], history[1])):
        assert fig.patch.get_alpha() == 0.0  # no white card on the webui's dark theme
        assert all(ax.get_facecolor()[3] == 0.0 for ax in fig.axes)
    assert "#e5e7eb" not in fmt.progress_html(None)  # the near-white track


def test_tables_are_capped_in_this_gradio():
    import inspect

    import gradio as gr

    from ui import compat

    (name, value), = compat.table_height(220).items()
    assert name in inspect.signature(gr.Dataframe.__init__).parameters and value == 220
    gr.Dataframe(value=[], headers=["#"], **compat.table_height(220))  # accepted as is


@pytest.mark.parametrize(
    ("particles", "iterations", "limit", "size"),
    [(2, 6, 4, ("Scores at most 16 evaluations: the unsteered baseline and 12 settings (2 "
                "particles x 6 iterations, pso) on 2 search documents of steer_sentiment; the "
                "baseline and the best 2 on 2 confirmation documents")),
     (4, 3, 400, "12 settings (4 particles x 3 iterations, pso) on 50 search documents"),
     (None, 3, 4, "Enter a value for Particles"),
     (0, 3, 4, "The number of particles must be 1 or more"),
     (2.0, 3, 20, "the unsteered baseline and 6 settings")],
)
def test_the_optimize_tab_warns_before_a_run_that_replies_wait(
    actions, particles, iterations, limit, size
):
    """Before a run starts, the tab says what the command line would say
    (the evaluations, the documents of each part counted without the model),
    that chat replies (the webui's too) wait until it ends, or what is wrong
    with the form."""
    line = actions.plan(*form(actions, particles=particles, iterations=iterations, limit=limit))
    assert line.startswith("**Before you start:**")
    assert size in line, line
    if "⚠" not in line:
        assert "chat replies (the webui's too) and vector changes wait until it ends" in line
