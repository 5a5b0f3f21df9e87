"""The held-out split and the KL guard in the Optimize tab, at the level of its
handlers (no browser): the split, objective and guard fields of the form, the
target-vs-KL plot with its Pareto front, and applying any point of the front
(by its position, not its label), refused like Apply best when the active
vectors changed."""

from __future__ import annotations

import dataclasses
import math

import pytest
from matplotlib.figure import Figure

from optimize import Evaluation, Metrics, apply_best
from optimize.guard.objective import KL
from optimize.run.settings import RunSettings
from steering.errors import InvalidInputError
from tests.support.forms import form as plain_form, last
from ui import format as fmt, plots
from ui.optimize_form import parse_request
from ui.optimize_tab import OptimizeActions
from ui.steering_tab import SteeringActions

UPDATE = {"__type__": "update"}


def form(actions, **changes):
    """The tab's inputs in order (vectors first), small, with the split and
    guard fields at the table's defaults unless changed."""
    defaults = {"limit": 8, "holdout_fraction": 0.5, "objective": "guarded"}
    return plain_form(actions, **{**defaults, **changes})


@pytest.fixture
def steering(tiny_session, tmp_path):
    actions = SteeringActions(tiny_session, tmp_path)
    for _ in actions.add_vector("I love this.", "I hate this.", 1, 2.0):
        pass
    return actions


@pytest.fixture
def actions(tiny_session, steering):
    return OptimizeActions(tiny_session, steering.save_dir)


# -- the settings ---------------------------------------------------------------


def test_run_settings_default_from_the_table_and_are_checked():
    from optimize.config.table import BY_NAME, FORM, fields

    names = {"holdout_fraction", "confirm_fraction", "finalists", "significance", "objective",
             "kl_budget", "guard_task", "max_guard_drop"}
    assert names <= {f.name for f in fields(FORM)}
    settings = RunSettings.from_values({"task": "t"})
    assert (settings["holdout_fraction"], settings.objective, settings.options.kl_budget) == (
        BY_NAME["holdout_fraction"].default, "guarded", BY_NAME["kl_budget"].default,
    )
    assert RunSettings.from_values({"task": "t", "guard_task": "  "}).guard_task is None
    assert RunSettings.from_values({"task": "t", "seed": 3}).split.seed == 3
    with pytest.raises(
        InvalidInputError, match="The objective must be one of guarded, target, concept, got 'nope'"
    ):
        RunSettings.from_values({"task": "t", "objective": "nope"})
    with pytest.raises(InvalidInputError, match="held-out fraction"):
        RunSettings.from_values({"task": "t", "holdout_fraction": 0.95})
    with pytest.raises(InvalidInputError, match="KL budget"):
        RunSettings.from_values({"task": "t", "kl_budget": 0})


def test_the_form_passes_split_objective_and_guard_into_the_request(actions):
    changes = {"holdout_fraction": 0.25, "objective": "guarded", "kl_budget": 0.2,
               "guard_task": "steer_health", "max_guard_drop": 2.0}
    settings = parse_request(*form(actions, **changes)).settings
    assert (settings["holdout_fraction"], settings.objective, settings.options.kl_budget) == (
        0.25, "guarded", 0.2
    )
    assert settings.guard_task.task == "steer_health"
    assert settings.options.max_guard_drop == 2.0
    assert parse_request(*form(actions, guard_task="")).settings.guard_task is None
    # the target alone reads no KL budget or guard task: the form hides them
    target = parse_request(*form(actions, **{**changes, "objective": "target"})).settings
    assert target.objective == "target" and target.guard_task is None
    assert "kl_budget" not in target.given


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"kl_budget": None}, "Enter a value for KL budget"),
        ({"holdout_fraction": None}, "Enter a value for Held-out share"),
        (
            {"objective": "nope"},
            "The objective must be one of guarded, target, concept, got 'nope'",
        ),
        ({"max_guard_drop": -1, "guard_task": "steer_health"}, "maximum guard drop"),
        ({"guard_task": "steer_sentiment"}, "The guard task is the search task"),
    ],
)
def test_bad_guard_fields_are_refused_before_the_model_runs(actions, tiny_session, changes, needle):
    before = tiny_session.current().steerer.vectors
    (view,) = list(actions.optimize(*form(actions, **changes)))
    assert view[-1].startswith("⚠ Could not start the optimization") and needle in view[-1], view
    assert tiny_session.current().steerer.vectors == before


# -- a default run: split, guard, front ---------------------------------------------


def test_a_default_run_holds_out_guards_with_kl_and_plots_the_front(actions, tiny_session):
    before = tiny_session.current().steerer.vectors
    *_, final = list(actions.optimize(*form(actions)))
    result, summary = final[5], final[4]
    assert result.split is not None and (result.split.fraction, result.split.confirm) == (0.5, 0.5)
    assert result.objective == "guarded" and result.objective_options.kl_budget == 0.5
    from optimize.guard.objective import KL_SKIPPED

    # every setting has its KL, but those the baseline dominates (no pass: marked)
    assert all(
        not math.isnan(e.metrics.get(KL, math.nan)) or e.metrics.get(KL_SKIPPED) == 1.0
        for e in result.history
    )
    assert result.heldout is not None and result.heldout.paired is not None
    assert "**Objective:** guarded (KL budget 0.5)" in summary
    assert "paired: gain" in summary and "sign test, two-sided p" in summary
    card = final[7]
    assert fmt.md(result.verdict.headline) in card
    plot, point, apply_point, apply = actions.front.offer(result)
    measured = any(not math.isnan(e.metrics.get(KL, math.nan)) for e in result.evaluations)
    assert isinstance(plot, Figure) if measured else plot is None  # no KL measured: no plot
    if measured:
        assert plot.patch.get_alpha() == 0.0  # transparent: reads on the webui's dark theme
    if result.improved:
        assert point["visible"] is True and len(point["choices"]) == len(result.front)
    else:  # nothing to apply, said plainly; the trade-off is still drawn
        assert point["visible"] is False and apply_point["visible"] is False
        assert apply["visible"] is False
    assert tiny_session.current().steerer.vectors == before


# -- the front on a result with a known trade-off ------------------------------------


def _with_front(result):
    """`result` with a search history of known metrics: three settings on the
    front (KL 0.01 / 0.1 / 0.3, score 0.6 / 0.7 / 0.8), one dominated, the
    baseline at 0.5; the guarded objective (budget 0.2) ranks the 0.7 best, and
    its gain held on the confirmation documents, so it is recommended."""

    def scored(particle, layer, alpha, score, kl):
        return Evaluation(0, particle, (layer,), (alpha,), score, 0.05, 0.1,
                          metrics=Metrics({KL: kl}))

    baseline = dataclasses.replace(result.baseline, score=0.5, metrics=Metrics({KL: 0.0}))
    history = [
        baseline,
        scored(0, 1, 0.5, 0.6, 0.01),
        scored(1, 2, 1.5, 0.7, 0.1),
        scored(2, 3, 3.0, 0.8, 0.3),
        scored(3, 3, -2.0, 0.55, 0.2),  # dominated by the 0.7 at KL 0.1
    ]
    from optimize.guard.objective import ObjectiveOptions
    from optimize.guard.split import paired_test
    from optimize.guard.verdict import Confirmation

    confirmed = paired_test([0.0] * 13, [1.0] * 12 + [-1.0])
    confirmation = Confirmation(13, "13", baseline, (history[2],), (confirmed,), 0.05)
    return dataclasses.replace(
        result, baseline=baseline, history=history, best=history[2], objective="guarded",
        objective_options=ObjectiveOptions(kl_budget=0.2), confirmation=confirmation,
        confirm_planned=True, cancelled=False,
    )


@pytest.fixture
def known(actions):
    *_, final = list(actions.optimize(*form(actions, holdout_fraction=0.0, particles=1,
                                            iterations=1)))
    return _with_front(final[5])


def test_the_front_is_offered_by_position_with_the_recommendation_selected(actions, known):
    assert [e.score for e in known.front] == [0.6, 0.7, 0.8] and known.improved
    plot, point, apply_point, apply = actions.front.offer(known)
    assert isinstance(plot, Figure) and apply_point["visible"] is True and apply["visible"]
    assert [value for _label, value in point["choices"]] == [1, 2, 3]  # numbers, not labels
    assert point["value"] == 2 and "(recommended)" in point["choices"][1][0]
    assert point["choices"][2][0].startswith("3 · score 0.8 · KL 0.300 · layer 3 × 3")
    axes = plot.axes[0]
    assert axes.get_xlabel().startswith("mean KL") and axes.get_ylabel() == "target (acc)"
    labels = [t.get_text() for t in axes.get_legend().get_texts()]
    assert {"Pareto front", "recommended", "best by target alone", "KL budget"} <= set(labels)
    assert actions.front.offer(None)[0] is None


def test_any_point_of_the_front_can_be_applied(actions, known, tiny_session):
    steerer = tiny_session.current().steerer
    (before,) = steerer.vectors
    table, _remove, steering_status, status, vector_box = last(actions.front.apply_point(known, 3))
    assert status == steering_status and status.startswith("✓ Applied point 3 of the front")
    (applied,) = steerer.vectors
    assert (applied.layer, applied.alpha, applied.id) == (3, 3.0, before.id)
    assert table[0][1:3] == [3, 3.0]
    assert vector_box["choices"] == [(fmt.vector_label(1, applied), applied.id)]
    # the recommended one is still there to apply, and applying it moves the vector again
    *_, status, _box = last(actions.apply(known))
    assert status.startswith("✓ Applied the best setting") and steerer.vectors[0].layer == 2


def test_a_bad_point_is_refused(actions, known, tiny_session):
    before = tiny_session.current().steerer.vectors
    for index, needle in (
        (None, "Choose a point of the front first."),
        (4, "There is no point 4 on this run's front; choose one of its points."),
        (0, "There is no point 0 on this run's front; choose one of its points."),
        (-1, "There is no point -1 on this run's front; choose one of its points."),
        ("1", "There is no point '1' on this run's front; choose one of its points."),
        (True, "There is no point True on this run's front; choose one of its points."),
    ):  # one optimization for all (each case would run its own)
        *_, status, box = last(actions.front.apply_point(known, index))
        assert status == fmt.failed("apply the point of the front", needle) and box == UPDATE
        assert tiny_session.current().steerer.vectors == before
    for index in (
        math.nan,
        math.inf,
        1.5,
        "x" * 100_000,
        "\u202e😀 שלום",
    ):  # the bad-input sweep's values
        *_, status, box = last(actions.front.apply_point(known, index))
        assert status.startswith("⚠") and "There is no point" in status and len(status) < 600
        assert tiny_session.current().steerer.vectors == before


def test_a_point_is_refused_when_the_vectors_changed_or_nothing_gained(
    actions, known, steering, tiny_session
):
    steerer = tiny_session.current().steerer
    *_, status, _box = last(actions.front.apply_point(None, 1))
    assert status == fmt.failed("apply the point of the front", "Run an optimization first.")
    worse = dataclasses.replace(known, baseline=dataclasses.replace(known.baseline, score=0.9))
    assert not worse.improved
    assert actions.front.offer(worse)[1]["visible"] is False
    *_, status, _box = last(actions.front.apply_point(worse, 1))
    assert "No setting beat the unsteered model" in status
    # another vector set: refused like Apply best, nothing changed
    for _ in steering.add_vector("Calm and quiet.", "Loud and angry.", 2, 1.0):
        pass
    steerer.set_vectors(steerer.vectors[1:])
    before = steerer.vectors
    *_, status, _box = last(actions.front.apply_point(known, 1))
    assert status.startswith("⚠ Could not apply the point of the front: The active vectors changed")
    assert steerer.vectors == before


def test_apply_best_takes_only_a_setting_of_its_result(known, tiny_session):
    steerer = tiny_session.current().steerer
    stranger = dataclasses.replace(known.front[0], alphas=(1.25,))
    with pytest.raises(InvalidInputError, match="not one this optimization scored"):
        apply_best(steerer, known, stranger)
    with pytest.raises(InvalidInputError, match="not one this optimization scored"):
        apply_best(steerer, known, known.baseline)
    (applied,) = apply_best(steerer, known, known.front[0])
    assert (applied.layer, applied.alpha) == (1, 0.5)


def test_a_run_without_kl_has_no_front_plot(known):
    plain = dataclasses.replace(
        known, history=[dataclasses.replace(e, metrics=Metrics()) for e in known.history]
    )
    assert plots.front(plain) is None
