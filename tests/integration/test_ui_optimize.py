"""Optimize tab handlers on the tiny model with the local steer_sentiment task
(4 documents, 2 particles, 2 iterations: a few seconds)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from steering.session import ModelSession
from tests.support.forms import UPDATE, form, last, named, views
from tests.support.results import recommending
from ui import format as fmt
from ui.optimize_form import NAMES
from ui.optimize_tab import TASKS_DIR, OptimizeActions, default_layer_range


def test_optimize_reports_live_and_apply_best_changes_the_vectors(
    optimize_actions, tiny_session, tmp_path
):
    steerer = tiny_session.current().steerer
    before = steerer.vectors
    shown = views(optimize_actions.optimize(*form(optimize_actions)))
    live = [v for v in shown if isinstance(v[2], Figure)]
    assert len(live) >= 5  # the baseline, then 4 evaluations, then the result
    assert "1 of 8 evaluations" in live[0][0]  # the baseline, 4 settings, 2 finalists + baseline
    done = re.search(r"(\d+) of (\d+) evaluations", shown[-1][0])
    assert done and done.group(1) == done.group(2)  # the bar ends full
    final = named(shown[-1])
    rows, convergence, particles, summary, result, result_file, status = (
        final[name] for name in
        ("evaluations", "convergence", "particles", "summary", "result", "result_file", "status")
    )
    assert isinstance(convergence, Figure) and isinstance(particles, Figure)
    assert rows[-1][0] == "baseline" and len(rows) == 5
    assert fmt.md(result.verdict.headline) in final["card"] and "steer_sentiment" in summary
    assert final["apply"]["visible"] is result.improved  # Apply best only for a recommendation
    assert status.startswith("✓ Done.") and fmt.md(result.verdict.headline) in status
    assert not result.cancelled and len(result.history) == 5
    assert result_file["visible"] is True
    assert json.loads(Path(result_file["value"]).read_text())["task"] == "steer_sentiment"
    assert steerer.vectors == before  # nothing applied yet

    result = recommending(result)
    applied_view = last(optimize_actions.apply(result))
    assert len(applied_view) == 5
    table, _choices, steering_status, optimize_status, vector_box = applied_view
    best = result.verdict.recommended
    assert optimize_status == steering_status and steering_status.startswith("✓ Applied")
    (applied,) = steerer.vectors
    assert (applied.layer, applied.alpha) == (best.layers[0], best.alphas[0])
    assert table[0][1:3] == [best.layers[0], best.alphas[0]]
    assert vector_box["choices"] == [(fmt.vector_label(1, applied), applied.id)]


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"vectors": []}, "Select at least one vector"),
        ({"task": "  "}, "Name the task to score (“Task”)"),
        ({"task_folder": "/no/such/folder"}, "is not one the operator allowed"),
        ({"task_folder": str(TASKS_DIR / "no_such_folder")}, "Task folder not found"),
        ({"limit": 0}, "The document limit must be 1 or more"),
        ({"limit": 2.5}, "The document limit must be a whole number"),
        ({"batch_size": None}, "Enter a value for Batch size"),
        ({"particles": 0}, "number of particles must be 1 or more"),
        ({"layer_min": 3, "layer_max": 1}, "The layer range is empty"),
        ({"alpha_min": math.nan}, "lowest alpha must be a finite number"),
        ({"alpha_max": 1e9}, "highest alpha must be between"),
        ({"alpha_min": 2, "alpha_max": 1}, "lowest alpha below the highest"),
        ({"w": -1}, "w must be a finite number of 0 or more"),
        ({"seed": -3}, "seed must be 0 or more"),
        ({"heldout_task": "sentiment_heldout", "heldout_limit": 0}, "held-out limit must be 1"),
        ({"heldout_task": "sentiment_heldout", "heldout_limit": None}, "Enter a value for Held"),
        ({"heldout_task": "steer_sentiment"}, "held-out task is the search task"),
    ],
)
def test_bad_settings_are_refused_before_the_model_runs(
    optimize_actions, tiny_session, changes, needle
):
    before = tiny_session.current().steerer.vectors
    (view,) = views(optimize_actions.optimize(*form(optimize_actions, **changes)))
    status = view[-1]
    assert status.startswith("⚠ Could not start the optimization") and needle in status, status
    assert all(v == UPDATE for v in view[:-1])
    assert tiny_session.current().steerer.vectors == before


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"layer_max": 9}, "outside tiny-llama, which has layers 0 to 3"),
        ({"task": "no_such_task"}, "no_such_task"),
        ({"metric": "bleu_nonsense"}, "bleu_nonsense"),
        ({"heldout_task": "no_such_heldout"}, "no_such_heldout"),
    ],
)
def test_settings_the_model_or_task_rejects_are_reported(
    optimize_actions, tiny_session, changes, needle
):
    before = tiny_session.current().steerer.vectors
    final = views(optimize_actions.optimize(*form(optimize_actions, **changes)))[-1]
    status = final[-1]
    assert status.startswith("⚠ Could not run the optimization") and needle in status, status
    assert tiny_session.current().steerer.vectors == before
    assert not tiny_session.lock.locked()


def test_stale_vector_selection_is_refused(optimize_actions, steering_actions, tiny_session):
    choices = optimize_actions.vector_choices(None)["value"]
    last(steering_actions.reset_vectors())
    last(steering_actions.add_vector("Another concept entirely.", "", 2, 1.0))
    *_, final = optimize_actions.optimize(*form(optimize_actions, vectors=choices))
    assert "The active vectors changed" in final[-1]


def test_cancel_stops_the_run_and_keeps_the_vectors(optimize_actions, tiny_session):
    before = tiny_session.current().steerer.vectors
    assert optimize_actions.cancel() == "Nothing to cancel: no job is running."
    gen = optimize_actions.optimize(*form(optimize_actions, particles=2, iterations=6))
    shown = []
    for view in gen:
        named(view)  # every output filled
        shown.append(view)
        if "2 of 16 evaluations" in view[0]:
            assert optimize_actions.cancel().startswith("✕ Cancelling")
    final = shown[-1]
    assert "cancelled" in final[0]
    result = final[5]
    assert result.cancelled and len(result.history) < 13
    assert "cancelled run" in final[4] and "Cancelled" in named(final)["card"]
    assert tiny_session.current().steerer.vectors == before
    assert not tiny_session.lock.locked()


def test_cancel_before_anything_was_scored(optimize_actions, tiny_session):
    before = tiny_session.current().steerer.vectors
    gen = optimize_actions.optimize(*form(optimize_actions))
    first = next(gen)
    assert first[-1].startswith("Starting")
    optimize_actions.cancel()
    final = views(gen)[-1]
    assert final[-1].startswith("✕ The optimization was cancelled")
    assert final[5] == UPDATE  # no result
    assert tiny_session.current().steerer.vectors == before


def test_only_one_run_at_a_time(optimize_actions):
    first = optimize_actions.optimize(*form(optimize_actions))
    next(first)  # running
    try:
        second = views(optimize_actions.optimize(*form(optimize_actions)))
        assert "The model is busy with an optimization" in second[0][-1]
        # the second page is shown the running job, up to its result
        assert second[-1][-1].startswith("✓ Done."), second[-1][-1]
    finally:
        first.close()


def test_apply_without_a_result_is_refused(optimize_actions):
    (view,) = list(optimize_actions.apply(None))
    assert (
        view[3]
        == "⚠ Could not apply the best setting: Run an optimization first. Nothing was changed."
    )


def test_apply_after_the_vectors_changed_is_refused(
    optimize_actions, steering_actions, tiny_session
):
    *_, final = optimize_actions.optimize(*form(optimize_actions))
    result = recommending(final[5])
    last(steering_actions.reset_vectors())
    last(steering_actions.add_vector("Another concept entirely.", "", 2, 1.0))
    before = tiny_session.current().steerer.vectors
    view = last(optimize_actions.apply(result))
    assert "The active vectors changed since this optimization ran" in view[3]
    assert tiny_session.current().steerer.vectors == before


def test_no_model(tmp_path):
    session = ModelSession(lambda: None)
    actions = OptimizeActions(session, tmp_path)
    assert actions.vector_choices(None)["choices"] == []
    *_, final = actions.optimize(*form(actions, vectors=["#1 layer 1 × 2: x"]))
    assert "No model is loaded" in final[-1]


def test_default_layer_range():
    assert default_layer_range(30) == (3, 18)
    assert default_layer_range(4) == (0, 2)
    assert default_layer_range(1) == (0, 0)


def test_chat_waits_while_an_optimization_runs_and_says_so(optimize_actions, tiny_session):
    from ui.chat_tab import ChatActions

    run = optimize_actions.optimize(*form(optimize_actions))
    for view in run:
        if "1 of 8 evaluations" in view[0]:
            break  # the run holds the model lock now
    chat = ChatActions(tiny_session).send("Hi", [], [], False, 4, 0)
    assert next(chat)[-1] == fmt.WAITING
    assert views(run)[-1][-1].startswith("✓ Done.")  # finish the run
    assert list(chat)[-1][-1].startswith("✓ Replied")


def test_example_settings_fill_the_form(optimize_actions):
    from presets import load_preset

    preset = load_preset("sentiment").optimize
    values = optimize_actions.example_settings()
    assert len(values) == len(NAMES) + 1  # every field but the vector selection, then the status
    *fields, status = values
    filled = dict(zip(NAMES, fields, strict=True))
    (task, folder, metric, limit, batch, particles, iterations, budget, low, high, unit, s_min,
     s_max, a_min, a_max, c1, c2, w, seed, held_task, held_limit) = (
        filled[name] for name in
        ("task", "task_folder", "metric", "limit", "batch_size", "particles", "iterations",
         "budget", "layer_min", "layer_max", "unit", "strength_min", "strength_max", "alpha_min",
         "alpha_max", "c1", "c2", "w", "seed", "heldout_task", "heldout_limit")
    )
    assert unit == "alpha"  # the preset's measured alpha bounds are searched as alpha
    assert (s_min, s_max) == (UPDATE, UPDATE)  # not the preset's: left as the form has them
    guard = [filled[name] for name in ("holdout_fraction", "confirm_fraction", "finalists",
             "significance", "strategy", "objective", "kl_budget", "guard_task",
             "max_guard_drop")]
    assert guard == [UPDATE] * 9  # the split, search and guard fields: not the preset's
    assert filled["workers"] == UPDATE  # the number of Ray workers is the user's
    assert budget == 0  # no time budget: the example's own 6 x 5 settings
    assert (task, held_task) == ("sentiment_search", "sentiment_heldout")
    assert folder == str(TASKS_DIR) and metric == preset["metric"]
    assert (limit, held_limit, batch) == (50, 100, preset["batch_size"])
    assert (particles, iterations, seed) == (6, 5, 0)
    assert (a_min, a_max, c1, c2, w) == (-3.0, 3.0, preset["c1"], preset["c2"], preset["w"])
    assert (low, high) == (1, 3)  # the preset's 1-15, kept inside the tiny model's layers
    assert status.startswith("✓ Filled in the search settings") and "sentiment_heldout" in status
    *fields, status = optimize_actions.example_settings("no_such_preset")
    assert fields == [UPDATE] * len(NAMES) and status.startswith("⚠ Could not load the example")


def test_a_held_out_task_is_scored_after_the_search_and_reported(optimize_actions, tiny_session):
    from optimize import FitnessConfig, LmEvalFitness
    from steering import recapture

    steerer = tiny_session.current().steerer
    before = steerer.vectors
    changes = {"task": "sentiment_search", "heldout_task": "sentiment_heldout", "heldout_limit": 6}
    shown = views(optimize_actions.optimize(*form(optimize_actions, **changes)))
    assert any("checking the pick on the held-out documents" in v[0] for v in shown)
    done = re.search(r"(\d+) of (\d+) evaluations", shown[-1][0])
    assert done and done.group(1) == done.group(2)
    final = named(shown[-1])
    rows, summary, result, result_file, status = (
        final[name] for name in ("evaluations", "summary", "result", "result_file", "status")
    )
    held = result.heldout
    assert held is not None and held.samples == 6 and held.fitness.task == "sentiment_heldout"
    assert len(rows) == 5  # the search's evaluations only
    assert "Held-out task:** sentiment_heldout · 6 documents the search never saw" in summary
    assert f"{held.gain_points:+.1f} points" in summary
    assert status.startswith("✓ Done.") and fmt.md(result.verdict.headline) in status
    saved = json.loads(Path(result_file["value"]).read_text())
    assert saved["heldout"]["task"] == "sentiment_heldout"
    assert steerer.vectors == before
    # the reported held-out scores are those of a direct evaluation
    direct = LmEvalFitness(
        steerer, FitnessConfig("sentiment_heldout", str(TASKS_DIR), limit=6, batch_size=4)
    )
    checked = held.best  # the verdict's candidate (the search's best when none was confirmed)
    vector = recapture(steerer, before[0], checked.layers[0]).with_alpha(checked.alphas[0])
    assert direct.score(()) == (held.baseline.score, held.baseline.stderr)
    assert direct.score([vector]) == (held.best.score, held.best.stderr)


def test_the_form_lays_out_every_form_setting_of_the_table_once():
    from optimize.config.table import FORM, fields
    from ui.optimize_form import LAID_OUT, NAMES

    assert sorted(LAID_OUT) == sorted(NAMES) == sorted(f.name for f in fields(FORM))
    assert len(set(LAID_OUT)) == len(LAID_OUT)


def test_the_tab_confirms_the_finalists_on_documents_that_did_not_rank_them(
    optimize_actions, tiny_session
):
    """The progress says when the finalists are confirmed, the summary shows
    their paired tests on the confirmation documents, and the bar ends full."""
    steerer = tiny_session.current().steerer
    before = steerer.vectors
    shown = views(
        optimize_actions.optimize(*form(optimize_actions, limit=12, particles=3, iterations=2))
    )
    final = named(shown[-1])
    rows, summary, result, result_file, status = (
        final[name] for name in ("evaluations", "summary", "result", "result_file", "status")
    )
    assert result.samples + result.confirmation.samples == 12 if result.confirmation else True
    if result.confirmation is not None:
        assert any("confirming the best settings" in v[0] for v in shown)
        assert "**Confirmation:**" in summary
        for finalist in result.confirmation.finalists:
            assert f"layer {finalist.layers[0]} alpha {finalist.alphas[0]:g}" in summary
    done = re.search(r"(\d+) of (\d+) evaluations", shown[-1][0])
    assert done and done.group(1) == done.group(2)
    assert len(rows) == 1 + len(result.evaluations)  # the search's evaluations and the baseline
    assert status.startswith("✓ Done.") and steerer.vectors == before
    saved = json.loads(Path(result_file["value"]).read_text())
    assert saved["verdict"]["headline"] == result.verdict.headline


def test_the_plan_the_progress_and_the_summary_count_the_same_evaluations(optimize_actions):
    """The plan said "31 settings" while the progress counted "34 evaluations":
    now the plan counts what the progress bar counts to (RunPlan.total) and
    the summary the evaluations the bar ended on."""
    values = form(optimize_actions, limit=12, particles=3, iterations=2)
    plan = optimize_actions.plan(*values)
    planned = int(re.search(r"Scores at most (\d+) evaluations", plan).group(1))
    shown = views(optimize_actions.optimize(*values))
    first = next(v[0] for v in shown if re.search(r"\d+ of \d+ evaluations", str(v[0])))
    assert re.search(r"1 of (\d+) evaluations", first).group(1) == str(planned)
    final = named(shown[-1])
    done = int(re.search(r"(\d+) of \1 evaluations", final["progress"]).group(1))
    assert done <= planned  # fewer when fewer finalists beat the baseline
    assert f"{done} evaluations in" in final["summary"]
