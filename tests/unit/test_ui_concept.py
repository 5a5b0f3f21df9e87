"""The Optimize tab's concept-strength objective and strength bounds on the
tiny model: the form's checks, the plan line, and a whole run through the
tab's handler class (no task, no browser)."""

from __future__ import annotations

import pytest

from optimize.config.table import BY_NAME
from optimize.scoring.concept import CONCEPT_TASK
from steering.errors import InvalidInputError
from ui.optimize_form import CONCEPT, NAMES, parse_request
from ui.optimize_tab import TASKS_DIR, VIEW, OptimizeActions
from ui.steering_tab import SteeringActions

HAPPY = "I am so happy today!\nWhat a wonderful surprise.\nWe laughed all day.\nJoy fills me."
SAD = "I am so sad today.\nWhat a terrible loss.\nWe cried all day.\nGrief fills me."


def _values(**changes):
    values = {f: BY_NAME[f].default for f in NAMES}
    values.update(task_folder=str(TASKS_DIR), limit=4, batch_size=4, particles=2, iterations=2,
                  layer_min=0, layer_max=3, heldout_task="", heldout_limit=4)
    values.update(changes)
    return [values[name] for name in NAMES]


def _last(gen):
    """The last view a handler yielded, by output name (ui.optimize_tab.VIEW)."""
    values = list(gen)
    assert values and all(len(v) == len(VIEW) for v in values), [len(v) for v in values]
    return dict(zip(VIEW, values[-1], strict=True))


def test_the_form_defaults_to_strength_bounds():
    space = parse_request(["a"], *_values()).settings.space(4)
    assert (space.unit, space.low, space.high) == ("strength", -0.2, 0.2)
    alpha = parse_request(["a"], *_values(unit="alpha", alpha_min=-1.0, alpha_max=2.0))
    space = alpha.settings.space(4)
    assert (space.unit, space.low, space.high) == ("alpha", -1.0, 2.0)
    with pytest.raises(InvalidInputError, match="The unit must be one of"):
        parse_request(["a"], *_values(unit="volts"))


def test_concept_strength_needs_no_task_and_refuses_what_it_cannot_use():
    # the task fields are not read: empty, or a folder no one allowed
    request = parse_request(
        ["a"], *_values(objective="concept", task="", metric="", task_folder="/not/allowed")
    )
    settings = request.settings
    assert settings.objective == "concept" and not settings.scores_task
    assert (settings.fitness.task, settings.fitness.include_path) == (CONCEPT_TASK, None)
    # a task objective still needs its task
    with pytest.raises(InvalidInputError, match="Name the task to score"):
        parse_request(["a"], *_values(objective="guarded", task=""))
    refused = [
        (["a", "b"], {}, "one vector at a time"),
        (["a"], {"holdout_fraction": 0.0}, "held-out share above 0"),
    ]
    for chosen, changes, needle in refused:
        with pytest.raises(InvalidInputError, match=needle):
            parse_request(chosen, *_values(objective="concept", task="", **changes))
    # fields of a task run (hidden for concept strength) are not read, not in the
    # way: a held-out task left by "Use example settings", a guard task, Ray workers
    kept = parse_request(
        ["a"], *_values(task=CONCEPT, heldout_task="sentiment_heldout", guard_task="x", workers=2)
    )
    assert kept.settings.objective == "concept"
    assert kept.settings.heldout is None and kept.settings.guard_task is None
    assert kept.settings.workers == 0


def test_the_plan_line_says_what_concept_strength_scores(tiny_session, tmp_path):
    steering = SteeringActions(tiny_session, tmp_path)
    list(steering.add_vector(HAPPY, SAD, 1, 1.0))
    (vector,) = tiny_session.current().steerer.vectors
    actions = OptimizeActions(tiny_session, tmp_path)
    line = actions.plan([vector.id], *_values(task=CONCEPT, particles=4, iterations=3))
    # 4 + 4 prompts, 0.3 of each held out: 1 of each (at least one)
    assert (
        "Scores 13 evaluations: the unsteered baseline and 12 settings (4 particles x 3 "
        "iterations, pso)"
    ) in line, line
    assert "the vector's held-out prompts (2), within the KL budget 0.5" in line, line
    assert "It holds the model" in line
    bad = actions.plan([vector.id], *_values(task=CONCEPT, particles=None))
    assert "⚠" in bad and "Particles" in bad, bad  # the form's own problem, said early


def test_a_concept_run_from_the_tab_finds_and_applies_a_setting(
    tiny_session, tmp_path, monkeypatch
):
    """Only happy and sad prompts, no task: the tab's run (the app's job)
    rebuilds the vector from half its prompts, scores the other half within
    the KL budget, and "Apply best" moves the full vector there. (The random
    tiny model's replies are noise that may repeat: the reply check is left
    out here; steering/fluency.py's tests check it on SmolLM2.)"""
    from optimize.run import assembly

    monkeypatch.setattr(assembly.ReplyCheck, "__call__", lambda self, vectors: (False, ""))
    steering = SteeringActions(tiny_session, tmp_path)
    status = list(steering.add_vector(HAPPY, SAD, 1, 1.0))[-1][2]
    assert status.startswith("✓ Added"), status
    steerer = tiny_session.current().steerer
    (before,) = steerer.vectors
    actions = OptimizeActions(tiny_session, tmp_path)
    form = _values(
        objective="concept", task="", holdout_fraction=0.5, kl_budget=1e6, unit="strength",
        strength_min=0.0, strength_max=1.0, layer_min=0, layer_max=3, seed=0,
    )
    view = _last(actions.optimize([before.id], *form))
    rows, summary, result, result_file, status = (
        view[name] for name in ("evaluations", "summary", "result", "result_file", "status")
    )
    assert status.startswith("✓ Done."), status
    assert "nats per token" in status and "points" not in status
    assert result.objective == "concept" and result.fitness.task == CONCEPT_TASK
    assert len(result.history) == 5 and rows[-1][0] == "baseline"
    assert result.baseline.score == 0.0  # unsteered: no gain, by construction
    assert "4 held-out concept and contrast prompts" in summary
    assert "on the vector's held-out prompts" in view["card"]
    assert view["apply"]["visible"] is True  # offered: the verdict recommends it
    assert "KL budget" in summary and "nats per token" in summary
    assert result_file["visible"] is True
    assert not list(tmp_path.glob("*.journal.jsonl"))  # not journalled: it cannot resume
    assert steerer.vectors == (before,)  # the full vector back, nothing applied
    assert result.improved, summary
    best = result.best
    assert best.score > 0.0 and best.alphas[0] > 0.0
    *_, steering_status, _optimize_status, _box = list(actions.apply(result))[-1]
    assert steering_status.startswith("✓ Applied"), steering_status
    (applied,) = steerer.vectors
    assert (applied.id, applied.layer, applied.alpha) == (before.id, best.layers[0], best.alphas[0])
    assert applied.prompts == before.prompts  # all 4 prompts, not the searched half


def test_a_concept_run_that_finds_nothing_says_so_in_its_own_terms(tiny_session, tmp_path):
    """Only negative strengths (toward grief): no setting raises the concept,
    so nothing is offered, and the summary speaks of prompts, not a task."""
    steering = SteeringActions(tiny_session, tmp_path)
    list(steering.add_vector(HAPPY, SAD, 1, 1.0))
    (vector,) = tiny_session.current().steerer.vectors
    form = _values(
        objective="concept", task="", holdout_fraction=0.5, kl_budget=1e6, unit="strength",
        strength_min=-1.0, strength_max=-0.5, layer_min=1, layer_max=1, iterations=1,
    )
    view = _last(OptimizeActions(tiny_session, tmp_path).optimize([vector.id], *form))
    card, summary, result = view["card"], view["summary"], view["result"]
    assert not result.improved and result.best.score < 0.0, summary
    assert "No setting made the concept's held-out prompts more likely" in card
    assert "Nothing to apply" in card and "prompts" in summary
    assert view["apply"]["visible"] is False
