"""The Optimize tab's concept-strength objective and strength bounds on the
tiny model: the form's checks, the plan line, and a whole run through the
tab's handler class (no task, no browser)."""

from __future__ import annotations

import pytest

from optimize.config.table import BY_NAME
from optimize.scoring.concept import CONCEPT_TASK
from steering.errors import InvalidInputError
from ui.optimize_form import NAMES, parse_request
from ui.optimize_layout import plan_line
from ui.optimize_tab import TASKS_DIR, OptimizeActions
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
    values = list(gen)
    assert values and all(len(v) == 8 for v in values), [len(v) for v in values]
    return values[-1]


def test_the_form_defaults_to_strength_bounds():
    space = parse_request(["a"], *_values()).settings.space(4)
    assert (space.unit, space.low, space.high) == ("strength", -0.4, 0.4)
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
        (["a"], {"guard_task": "steer_health"}, "no held-out task, guard task or Ray"),
        (["a"], {"workers": 2}, "no held-out task, guard task or Ray"),
    ]
    for chosen, changes, needle in refused:
        with pytest.raises(InvalidInputError, match=needle):
            parse_request(chosen, *_values(objective="concept", task="", **changes))
    # a held-out task left in the form (say by "Use example settings") is a task
    # field: not read, not in the way
    kept = parse_request(["a"], *_values(objective="concept", heldout_task="sentiment_heldout"))
    assert kept.settings.heldout is None


def test_the_plan_line_says_what_concept_strength_scores():
    line = plan_line(4, 3, 40, "concept")
    assert "scores 12 settings" in line and "40 documents" not in line
    assert "held-out concept and contrast prompts" in line and "KL budget" in line
    assert "task fields are not used" in line
    assert "held-out concept" in plan_line(None, 3, 40, "concept")  # a bad size: still said
    assert "on the search documents (of at most 40)" in plan_line(4, 3, 40, "guarded")


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
    _progress, rows, _conv, _particles, summary, result, result_file, status = view
    assert status.startswith("✓ Done."), status
    assert "nats per token" in status and "points" not in status
    assert result.objective == "concept" and result.fitness.task == CONCEPT_TASK
    assert len(result.history) == 5 and rows[-1][0] == "baseline"
    assert result.baseline.score == 0.0  # unsteered: no gain, by construction
    assert "4 held-out concept and contrast prompts" in summary
    assert "on the vector's held-out prompts" in summary
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
    summary, result = view[4], view[5]
    assert not result.improved and result.best.score < 0.0, summary
    assert "No setting made the concept's held-out prompts more likely" in summary
    assert "Nothing to apply" in summary
